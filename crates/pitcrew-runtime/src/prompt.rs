//! The prompts the built-in agent sends, rendered from the templates in `prompts/`.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Value, context};
use pitcrew_core::Task;
use serde::Serialize;

const SYSTEM: &str = include_str!("../prompts/system.j2");
const TASK: &str = include_str!("../prompts/task.j2");
/// Bigger target files are cut, with a note, so one huge file cannot crowd out the task.
const MAX_FILE_BYTES: usize = 200 * 1024;

/// A target file as shown to the model.
#[derive(Debug, Clone, Serialize)]
pub struct PromptFile {
    pub path: String,
    pub language: String,
    pub content: String,
}

impl PromptFile {
    pub fn new(path: &str, mut content: String) -> Self {
        if content.len() > MAX_FILE_BYTES {
            let mut cut = MAX_FILE_BYTES;
            while !content.is_char_boundary(cut) {
                cut -= 1;
            }
            content.truncate(cut);
            content.push_str("\n[… file cut here: it is longer than pitcrew shows …]");
        }
        let language = pitcrew_validate::Language::from_path(path)
            .map_or("", |l| l.name())
            .to_ascii_lowercase();
        PromptFile {
            path: path.to_string(),
            language,
            content: content.trim_end().to_string(),
        }
    }
}

/// The system and user messages for `task`; `files` are the targets that exist, `missing`
/// the ones that do not (yet).
pub fn render(task: &Task, files: &[PromptFile], missing: &[String]) -> (String, String) {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .build()
            .expect("plain syntax settings are valid"),
    );
    env.add_template("system", SYSTEM)
        .expect("system template parses");
    env.add_template("task", TASK)
        .expect("task template parses");
    let system = env
        .get_template("system")
        .and_then(|t| t.render(context! {}))
        .expect("system template renders");
    let user = env
        .get_template("task")
        .and_then(|t| {
            t.render(context! {
                kind => task.kind.as_str(),
                description => &task.description,
                targets => Value::from(minijinja::value::Serde(&task.targets)),
                files => Value::from(minijinja::value::Serde(files)),
                missing => Value::from(minijinja::value::Serde(missing)),
            })
        })
        .expect("task template renders");
    (system.trim().to_string(), user.trim().to_string())
}
