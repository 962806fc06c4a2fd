//! `sim.toml`: what the simulator serves. The file is read with `deny_unknown_fields` and then
//! checked, so every mistake is reported with the file, the line, the field and the valid
//! values, in the style of `pitcrew.toml`'s errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::locate::FieldPath;

/// The model served when the configuration names none.
pub const DEFAULT_MODEL: &str = "sim/coder";

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: field `{field}`: {message}")]
    Invalid {
        /// The file, with `:LINE` when the field's line is known.
        origin: String,
        field: String,
        message: String,
    },
}

/// A checked configuration, ready to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seeds every random draw, so a run with the same requests in the same order is repeated.
    pub seed: u64,
    /// Steps any model takes once its own script is used up.
    pub script: Vec<Step>,
    /// By id, in name order.
    pub models: Vec<ModelConfig>,
}

/// One simulated model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub id: String,
    pub context_length: u64,
    /// USD per million prompt tokens.
    pub prompt_price: f64,
    /// USD per million completion tokens.
    pub completion_price: f64,
    /// Time to the first token.
    pub latency: Latency,
    pub tokens_per_second: f64,
    /// Tokens per streamed chunk.
    pub chunk_tokens: u32,
    pub limits: Limits,
    /// Status and the share of requests answered with it, in the file's order.
    pub errors: Vec<(u16, f64)>,
    pub faults: FaultRates,
    /// How long a `stall` fault holds its chunk back.
    pub stall: Duration,
    /// Scripted answers served in turn; empty means filler text.
    pub replies: Vec<String>,
    /// Length of filler replies.
    pub filler_tokens: u32,
    pub script: Vec<Step>,
}

/// Quotas over sliding windows; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub rpd: Option<u64>,
}

/// How long a model takes to its first token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    Fixed(Duration),
    Uniform {
        min: Duration,
        max: Duration,
    },
    /// Log-normal with this median and 95th percentile.
    LogNormal {
        median: Duration,
        p95: Duration,
    },
}

/// The share of streamed replies that suffer each fault.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates {
    pub disconnect: f64,
    pub truncate: f64,
    pub stall: f64,
    pub malformed: f64,
}

/// Something that goes wrong with a reply's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// The connection breaks mid-body: the chunked body never completes.
    Disconnect,
    /// The body just ends half way: no finish reason, no `[DONE]`.
    Truncate,
    /// One chunk is held back for the model's `stall_ms`.
    Stall,
    /// One chunk's JSON is cut in half.
    Malformed,
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A normal reply: this text (else the model's next reply), possibly with a fault.
    Reply {
        text: Option<String>,
        fault: Option<Fault>,
    },
    /// An HTTP error.
    Error {
        status: u16,
        retry_after: Option<u64>,
        message: Option<String>,
    },
}

impl Default for SimConfig {
    /// One model, [`DEFAULT_MODEL`], with the defaults of every field.
    fn default() -> SimConfig {
        let origin = Origin {
            path: Path::new("(defaults)"),
            text: "",
        };
        let model = RawModel::default()
            .check(DEFAULT_MODEL, None, Path::new("."), &origin)
            .expect("the default model is valid");
        SimConfig {
            seed: 0,
            script: Vec::new(),
            models: vec![model],
        }
    }
}

impl SimConfig {
    /// Reads and checks `path`; relative paths inside it are relative to its directory.
    pub fn load(path: &Path) -> Result<SimConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        SimConfig::from_toml(&text, path)
    }

    /// Checks `text`, the contents of the file at `path` (named in errors; its directory is
    /// where relative paths start).
    pub fn from_toml(text: &str, path: &Path) -> Result<SimConfig, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        raw.check(base, &Origin { path, text })
    }
}

/// Where the text being checked came from, to name the file and line of a bad field.
struct Origin<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Origin<'_> {
    fn invalid(&self, field: &FieldPath, message: String) -> ConfigError {
        let path = self.path.display();
        let origin = match field.line_in(self.text) {
            Some(line) => format!("{path}:{line}"),
            None => path.to_string(),
        };
        ConfigError::Invalid {
            origin,
            field: field.to_string(),
            message,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    seed: u64,
    replies_dir: Option<PathBuf>,
    #[serde(default)]
    script: Vec<RawStep>,
    models: Option<BTreeMap<String, RawModel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawModel {
    context_length: u64,
    pricing: RawPricing,
    latency: RawLatency,
    tokens_per_second: f64,
    chunk_tokens: u32,
    rpm: Option<u64>,
    tpm: Option<u64>,
    rpd: Option<u64>,
    errors: BTreeMap<String, f64>,
    faults: RawFaults,
    replies_dir: Option<PathBuf>,
    filler_tokens: u32,
    script: Vec<RawStep>,
}

impl Default for RawModel {
    fn default() -> RawModel {
        RawModel {
            context_length: 128_000,
            pricing: RawPricing::default(),
            latency: RawLatency {
                fixed_ms: Some(20),
                ..RawLatency::default()
            },
            tokens_per_second: 500.0,
            chunk_tokens: 4,
            rpm: None,
            tpm: None,
            rpd: None,
            errors: BTreeMap::new(),
            faults: RawFaults::default(),
            replies_dir: None,
            filler_tokens: 60,
            script: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPricing {
    #[serde(default)]
    prompt: f64,
    #[serde(default)]
    completion: f64,
}

/// One of three shapes; which fields are set says which (checked in [`RawLatency::check`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    fixed_ms: Option<u64>,
    min_ms: Option<u64>,
    max_ms: Option<u64>,
    median_ms: Option<u64>,
    p95_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFaults {
    disconnect: f64,
    truncate: f64,
    stall: f64,
    malformed: f64,
    stall_ms: u64,
}

impl Default for RawFaults {
    fn default() -> RawFaults {
        RawFaults {
            disconnect: 0.0,
            truncate: 0.0,
            stall: 0.0,
            malformed: 0.0,
            stall_ms: 10_000,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    reply_file: Option<PathBuf>,
    reply: Option<String>,
    fault: Option<Fault>,
    status: Option<u16>,
    retry_after: Option<u64>,
    message: Option<String>,
}

const LATENCY_SHAPES: &str = "use one of { fixed_ms = N }, { min_ms = A, max_ms = B } or \
    { median_ms = M, p95_ms = P }";

impl RawFile {
    fn check(self, base: &Path, origin: &Origin<'_>) -> Result<SimConfig, ConfigError> {
        let top = FieldPath::root();
        let script = check_script(&self.script, &top.key("script"), base, origin)?;
        let models = match self.models {
            None => BTreeMap::from([(DEFAULT_MODEL.to_string(), RawModel::default())]),
            Some(models) if models.is_empty() => {
                return Err(origin.invalid(
                    &top.key("models"),
                    format!("no model is configured; add one, e.g. [models.\"{DEFAULT_MODEL}\"]"),
                ));
            }
            Some(models) => models,
        };
        let models = models
            .into_iter()
            .map(|(id, model)| model.check(&id, self.replies_dir.as_deref(), base, origin))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SimConfig {
            seed: self.seed,
            script,
            models,
        })
    }
}

impl RawModel {
    fn check(
        self,
        id: &str,
        shared_replies: Option<&Path>,
        base: &Path,
        origin: &Origin<'_>,
    ) -> Result<ModelConfig, ConfigError> {
        let at = FieldPath::root().key("models").key(id);
        if id.trim().is_empty() {
            return Err(origin.invalid(&at, "a model id cannot be empty".into()));
        }
        if self.context_length == 0 {
            return Err(
                origin.invalid(&at.key("context_length"), "must be at least 1 token".into())
            );
        }
        for (name, price) in [
            ("prompt", self.pricing.prompt),
            ("completion", self.pricing.completion),
        ] {
            if !(price.is_finite() && price >= 0.0) {
                return Err(origin.invalid(
                    &at.key("pricing").key(name),
                    format!("{price} is not a price; use USD per million tokens, 0 or more"),
                ));
            }
        }
        if !(self.tokens_per_second.is_finite() && self.tokens_per_second > 0.0) {
            return Err(origin.invalid(
                &at.key("tokens_per_second"),
                format!(
                    "{} is not a speed; use a number above 0",
                    self.tokens_per_second
                ),
            ));
        }
        if self.chunk_tokens == 0 {
            return Err(origin.invalid(&at.key("chunk_tokens"), "must be at least 1".into()));
        }
        for (name, limit) in [("rpm", self.rpm), ("tpm", self.tpm), ("rpd", self.rpd)] {
            if limit == Some(0) {
                return Err(origin.invalid(
                    &at.key(name),
                    "must be at least 1 (leave it out for no limit)".into(),
                ));
            }
        }
        let latency = self
            .latency
            .check()
            .map_err(|message| origin.invalid(&at.key("latency"), message))?;
        let errors = check_errors(&self.errors, &at.key("errors"), origin)?;
        let faults = self.faults.check(&at.key("faults"), origin)?;
        let replies_dir = self.replies_dir.as_deref().or(shared_replies);
        let replies = match replies_dir {
            Some(dir) => {
                let field = if self.replies_dir.is_some() {
                    at.key("replies_dir")
                } else {
                    FieldPath::root().key("replies_dir")
                };
                read_replies(&base.join(dir)).map_err(|message| origin.invalid(&field, message))?
            }
            None => Vec::new(),
        };
        let script = check_script(&self.script, &at.key("script"), base, origin)?;
        Ok(ModelConfig {
            id: id.to_string(),
            context_length: self.context_length,
            prompt_price: self.pricing.prompt,
            completion_price: self.pricing.completion,
            latency,
            tokens_per_second: self.tokens_per_second,
            chunk_tokens: self.chunk_tokens,
            limits: Limits {
                rpm: self.rpm,
                tpm: self.tpm,
                rpd: self.rpd,
            },
            errors,
            faults,
            stall: Duration::from_millis(self.faults.stall_ms),
            replies,
            filler_tokens: self.filler_tokens,
            script,
        })
    }
}

impl RawLatency {
    fn check(&self) -> Result<Latency, String> {
        let ms = Duration::from_millis;
        match *self {
            RawLatency {
                fixed_ms: Some(fixed),
                min_ms: None,
                max_ms: None,
                median_ms: None,
                p95_ms: None,
            } => Ok(Latency::Fixed(ms(fixed))),
            RawLatency {
                fixed_ms: None,
                min_ms: Some(min),
                max_ms: Some(max),
                median_ms: None,
                p95_ms: None,
            } if min <= max => Ok(Latency::Uniform {
                min: ms(min),
                max: ms(max),
            }),
            RawLatency {
                fixed_ms: None,
                min_ms: None,
                max_ms: None,
                median_ms: Some(median),
                p95_ms: Some(p95),
            } if median > 0 && p95 >= median => Ok(Latency::LogNormal {
                median: ms(median),
                p95: ms(p95),
            }),
            RawLatency {
                min_ms: Some(min),
                max_ms: Some(max),
                ..
            } if min > max => Err(format!(
                "min_ms ({min}) is above max_ms ({max}); {LATENCY_SHAPES}"
            )),
            RawLatency {
                median_ms: Some(median),
                p95_ms: Some(p95),
                ..
            } if median == 0 || p95 < median => Err(format!(
                "needs 0 < median_ms ({median}) <= p95_ms ({p95}); {LATENCY_SHAPES}"
            )),
            _ => Err(format!(
                "the fields set do not make one shape; {LATENCY_SHAPES}"
            )),
        }
    }
}

impl RawFaults {
    fn check(&self, at: &FieldPath, origin: &Origin<'_>) -> Result<FaultRates, ConfigError> {
        let rates = [
            ("disconnect", self.disconnect),
            ("truncate", self.truncate),
            ("stall", self.stall),
            ("malformed", self.malformed),
        ];
        for (name, rate) in rates {
            check_rate(rate).map_err(|message| origin.invalid(&at.key(name), message))?;
        }
        let total: f64 = rates.iter().map(|(_, rate)| rate).sum();
        if total > 1.0 {
            return Err(origin.invalid(
                at,
                format!("the rates add up to {total}, more than 1 (every reply)"),
            ));
        }
        Ok(FaultRates {
            disconnect: self.disconnect,
            truncate: self.truncate,
            stall: self.stall,
            malformed: self.malformed,
        })
    }
}

fn check_rate(rate: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!(
            "{rate} is not a rate; use a share of requests from 0 to 1, e.g. 0.05"
        ))
    }
}

fn check_errors(
    errors: &BTreeMap<String, f64>,
    at: &FieldPath,
    origin: &Origin<'_>,
) -> Result<Vec<(u16, f64)>, ConfigError> {
    let mut checked = Vec::new();
    for (status, rate) in errors {
        let field = at.key(status);
        let code = status
            .parse::<u16>()
            .ok()
            .filter(|code| (400..=599).contains(code))
            .ok_or_else(|| {
                origin.invalid(
                    &field,
                    format!("`{status}` is not an error status; use a code from 400 to 599, e.g. 503 = 0.05"),
                )
            })?;
        check_rate(*rate).map_err(|message| origin.invalid(&field, message))?;
        checked.push((code, *rate));
    }
    let total: f64 = checked.iter().map(|(_, rate)| rate).sum();
    if total > 1.0 {
        return Err(origin.invalid(
            at,
            format!("the rates add up to {total}, more than 1 (every request)"),
        ));
    }
    Ok(checked)
}

fn check_script(
    steps: &[RawStep],
    at: &FieldPath,
    base: &Path,
    origin: &Origin<'_>,
) -> Result<Vec<Step>, ConfigError> {
    steps
        .iter()
        .enumerate()
        .map(|(index, step)| {
            let field = at.index(index);
            step.check(base)
                .map_err(|message| origin.invalid(&field, message))
        })
        .collect()
}

impl RawStep {
    fn check(&self, base: &Path) -> Result<Step, String> {
        if let Some(status) = self.status {
            if !(400..=599).contains(&status) {
                return Err(format!(
                    "status {status} is not an error; use a code from 400 to 599 (a step \
                     without `status` is a normal reply)"
                ));
            }
            if self.reply.is_some() || self.reply_file.is_some() || self.fault.is_some() {
                return Err(
                    "a step with `status` is an error and takes only `retry_after` \
                            and `message`, not `reply`, `reply_file` or `fault`"
                        .into(),
                );
            }
            return Ok(Step::Error {
                status,
                retry_after: self.retry_after,
                message: self.message.clone(),
            });
        }
        if self.retry_after.is_some() || self.message.is_some() {
            return Err("`retry_after` and `message` belong to error steps; add `status`".into());
        }
        let text = match (&self.reply, &self.reply_file) {
            (Some(_), Some(_)) => {
                return Err("give either `reply` or `reply_file`, not both".into());
            }
            (Some(text), None) => Some(text.clone()),
            (None, Some(file)) => {
                let path = base.join(file);
                Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                )
            }
            (None, None) => None,
        };
        Ok(Step::Reply {
            text,
            fault: self.fault,
        })
    }
}

/// The files of `dir` (not its subdirectories or hidden files), in name order.
fn read_replies(dir: &Path) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.path().is_file() {
            paths.push(entry.path());
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(format!(
            "{} has no reply files; add some, or leave replies_dir out for filler text",
            dir.display()
        ));
    }
    paths
        .iter()
        .map(|path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        })
        .collect()
}
