//! `pitcrew prompts` and `prompts show NAME`: the templates and their sources.

use std::process::ExitCode;

use pitcrew_runtime::{PromptLibrary, PromptSource};

use crate::cli::PromptsAction;
use crate::context::Context;
use crate::output::{self, usage};

pub fn prompts(
    ctx: &Context,
    action: Option<PromptsAction>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let library = PromptLibrary::new(Some(&ctx.repo));
    if let Some(PromptsAction::Show { name, format }) = action {
        let source = library.source(&name).map_err(|e| usage(e.to_string()))?;
        // `--json` before or after `show`.
        if json || format.json {
            output::json(&serde_json::json!({"name": name, "source": source}));
        } else {
            output::line(source.trim_end());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let prompts = library.list();
    if json {
        output::json(&prompts);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = output::table(&["name", "description", "source"]);
    for p in &prompts {
        let source = match &p.source {
            PromptSource::Builtin => "built-in".to_string(),
            PromptSource::Project(path) => path.display().to_string(),
        };
        table.add_row(vec![p.name.clone(), p.description.clone(), source]);
    }
    output::keep_whole(&mut table, &[0]);
    output::print_table(&table);
    Ok(ExitCode::SUCCESS)
}
