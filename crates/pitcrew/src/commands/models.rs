//! `pitcrew models` (the registry with live health), `models sync` and `select-model`.

use std::process::ExitCode;

use pitcrew_config::{SYNCED_MODELS, SyncedModels};
use pitcrew_core::TaskKind;
use pitcrew_engine::models::{RankError, Selection, model_rows, rank_models};
use pitcrew_llm::{ChatClient, Complexity, sync};

use crate::cli::ModelsAction;
use crate::context::Context;
use crate::output::{self, usage};

/// The context window of a model a keyless server lists without one: a preset's default.
const ASSUMED_CONTEXT: u64 = 32_768;

pub async fn models(
    ctx: &Context,
    action: Option<ModelsAction>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(ModelsAction::Sync {
        file,
        provider,
        format,
    }) = action
    {
        return sync_models(ctx, file, &provider, format.json).await;
    }
    let rows = model_rows(&*ctx.store().await?, &ctx.config.registry).await?;
    if json {
        output::json(&rows);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = output::table(&[
        "model",
        "provider",
        "presets",
        "context",
        "$/Mtok in/out",
        "circuit",
        "cooldown",
        "success",
        "p50 latency",
    ]);
    for r in &rows {
        let name = if r.in_fallback {
            format!("{} *", r.name)
        } else {
            r.name.clone()
        };
        table.add_row(vec![
            name,
            r.provider.clone(),
            r.presets.join(", "),
            r.context.to_string(),
            if r.free {
                "free".to_string()
            } else {
                format!("{:.2}/{:.2}", r.price_in_per_mtok, r.price_out_per_mtok)
            },
            r.circuit.clone(),
            match (&r.cooldown_until, &r.cooldown_reason) {
                (Some(until), reason) => format!(
                    "until {} {}",
                    until.format("%H:%M:%S"),
                    reason.clone().unwrap_or_default()
                ),
                (None, _) => String::new(),
            },
            r.success_rate.map_or_else(
                || "-".into(),
                |s| format!("{:.0}% of {}", s * 100.0, r.calls_seen),
            ),
            r.p50_latency_ms
                .map_or_else(|| "-".into(), |l| format!("{:.1}s", l as f64 / 1000.0)),
        ]);
    }
    // Model names and numbers stay whole; presets, circuit and cooldown wrap.
    output::keep_whole(&mut table, &[0, 1, 3, 4, 7, 8]);
    output::print_table(&table);
    output::message("* in the fallback chain (the routing pool); default preset: `models.default`");
    Ok(ExitCode::SUCCESS)
}

async fn sync_models(
    ctx: &Context,
    file: Option<std::path::PathBuf>,
    provider: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !ctx.config.config.providers.contains_key(provider) {
        return Err(usage(format!(
            "unknown provider `{provider}`; valid values: {}",
            ctx.config
                .config
                .providers
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    // A server of the user's own (no key) charges nothing; its list rarely states a
    // context window, so a model's is taken to be a preset's default.
    let keyless = ctx.config.config.providers[provider].api_key_env.is_empty();
    let defaults = sync::SyncDefaults {
        unpriced_are_free: keyless,
        context: keyless.then_some(ASSUMED_CONTEXT),
    };
    let listing = match &file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
            sync::read_listing(&text, provider, &defaults)
                .map_err(|e| usage(format!("{}: {e}", path.display())))?
        }
        None => {
            let (_, endpoint) = ctx
                .config
                .endpoints()
                .into_iter()
                .find(|(name, _)| name == provider)
                .expect("the provider exists");
            let client = ChatClient::new(std::time::Duration::from_secs(
                ctx.config.config.models.request_timeout_secs,
            ))?;
            sync::fetch_listing(&client, &endpoint, provider, &defaults).await?
        }
    };
    let specs = listing.models.clone();
    let (_, report) = ctx.config.registry.merge_synced(specs.clone());
    let path = ctx.repo.root().join(SYNCED_MODELS);
    let mut kept: SyncedModels = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default();
    kept.models.retain(|m| m.provider != provider);
    kept.models.extend(specs);
    ctx.repo.state_dir()?;
    std::fs::write(&path, toml::to_string(&kept)?)?;
    let skipped: Vec<serde_json::Value> = listing
        .skipped
        .iter()
        .map(|(id, why)| serde_json::json!({"id": id, "why": why}))
        .collect();
    if json {
        output::json(&serde_json::json!({
            "listed": listing.listed,
            "added": report.added,
            "updated": report.updated,
            "skipped": skipped,
            "file": path,
        }));
    } else {
        output::line(&format!(
            "{} model(s) listed by {provider}: {} new, {} with new prices or context windows; kept in {}",
            listing.listed,
            report.added.len(),
            report.updated.len(),
            path.display()
        ));
        if !listing.skipped.is_empty() {
            output::line(&format!(
                "{} left out (add them under [[registry.models]] with a context window and \
                 prices to use them):",
                listing.skipped.len()
            ));
            for (id, why) in &listing.skipped {
                output::line(&format!("  {id}: {why}"));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn select_model(
    ctx: &Context,
    kind: TaskKind,
    complexity: Complexity,
    min_quality: Option<f64>,
    free_only: bool,
    model: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let selection = Selection {
        kind,
        complexity,
        min_quality,
        free_only,
        prefer: model,
    };
    let candidates = match rank_models(&ctx.config, &*ctx.store().await?, selection).await {
        Err(RankError::UnknownModel(e)) => return Err(usage(e.to_string())),
        ranked => ranked?,
    };
    if json {
        output::json(&candidates);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = output::table(&[
        "#",
        "model",
        "score",
        "quality ×0.4",
        "success ×0.3",
        "latency ×0.2",
        "special. ×0.1",
        "worst-case $",
        "left out because",
    ]);
    let mut rank = 0;
    for c in &candidates {
        let position = if c.is_eligible() {
            rank += 1;
            rank.to_string()
        } else {
            "-".into()
        };
        table.add_row(vec![
            position,
            c.model.clone(),
            format!("{:.3}", c.score),
            format!("{:.2}", c.components.quality),
            format!("{:.2}", c.components.success),
            format!("{:.2}", c.components.latency),
            format!("{:.2}", c.components.specialization),
            format!("{:.4}", c.estimated_cost_usd),
            c.excluded
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ]);
    }
    // Everything but the reasons stays whole: they wrap.
    output::keep_whole(&mut table, &[0, 1, 2, 3, 4, 5, 6, 7]);
    output::print_table(&table);
    Ok(ExitCode::SUCCESS)
}
