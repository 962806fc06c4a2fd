//! What a `[runtimes.NAME]` table of `pitcrew.toml` says: [`RuntimeSpec`] and its checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pitcrew_core::is_secret_name;
use serde::{Deserialize, Serialize};

/// One configured external runtime, as written under `[runtimes.NAME]` in `pitcrew.toml`.
///
/// ```toml
/// [runtimes.oh]
/// type = "openhands-cli"
/// timeout_secs = 900
/// read = ["/opt/openhands-venv"]
///
/// [runtimes.aider]
/// type = "command"
/// argv = ["aider", "--yes-always", "--model", "openai/{model}", "--message-file", "{prompt_file}", "{targets}"]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RuntimeSpec {
    OpenhandsCli(OpenhandsCli),
    OpenhandsDocker(OpenhandsDocker),
    Command(CommandAgent),
}

/// The settings every runtime has.
///
/// Each variant holds them as `common`; in TOML they sit beside the variant's own fields.
/// (Serde cannot deny unknown fields of a struct that flattens another, so each variant is
/// read through a private struct that lists all its fields and denies the rest; a typo such
/// as `timeout = 60` is an error, not a silent default.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Common {
    /// Wall-clock limit of one attempt, in seconds (default 1800).
    pub timeout_secs: u64,
    /// The agent's step limit (default 30), passed where the agent has such a setting
    /// (`MAX_ITERATIONS` for OpenHands, `{max_iterations}` in a command's argv).
    pub max_iterations: u32,
    /// What the agent may reach on the network (default: the gateway's port only).
    pub network: Network,
    /// Names of variables passed through from pitcrew's environment. Secret-looking names
    /// are refused: the agent's only credential is the gateway's session token.
    pub env: Vec<String>,
    /// Variables set to literal values.
    pub set: BTreeMap<String, String>,
    /// Extra paths the agent may read and execute (its virtualenv, its tools). The
    /// directory of the resolved program is added automatically.
    pub read: Vec<PathBuf>,
    /// How many consecutive condensations, or identical consecutive actions, count as
    /// stuck (default 3); the run is stopped then.
    pub stuck_after: u32,
}

impl Default for Common {
    fn default() -> Self {
        Self {
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            max_iterations: DEFAULT_MAX_ITERATIONS,
            network: Network::default(),
            env: Vec::new(),
            set: BTreeMap::new(),
            read: Vec::new(),
            stuck_after: DEFAULT_STUCK_AFTER,
        }
    }
}

const DEFAULT_TIMEOUT_SECS: u64 = 1800;
const DEFAULT_MAX_ITERATIONS: u32 = 30;
const DEFAULT_STUCK_AFTER: u32 = 3;

/// The network an agent gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// TCP connect only to the gateway's port (any address: Landlock filters ports, not
    /// addresses), no TCP listening. UDP is not filtered.
    #[default]
    Gateway,
    /// The machine's network.
    Full,
}

/// `type = "openhands-cli"`: the OpenHands CLI (`pip install openhands`) run headless in
/// the worktree, confined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawOpenhandsCli")]
pub struct OpenhandsCli {
    /// The program, looked up on `PATH` (default `openhands`).
    pub program: String,
    #[serde(flatten)]
    pub common: Common,
}

/// `type = "openhands-docker"`: OpenHands' Docker headless mode (`python -m
/// openhands.core.main` in the OpenHands image), started with the `docker` CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawOpenhandsDocker")]
pub struct OpenhandsDocker {
    /// The OpenHands image (default `docker.all-hands.dev/all-hands-ai/openhands:0.59`).
    pub image: String,
    /// The image of the sandbox container OpenHands starts for the agent's commands
    /// (`SANDBOX_RUNTIME_CONTAINER_IMAGE`); OpenHands' own default when unset.
    pub runtime_image: Option<String>,
    /// The Docker CLI (default `docker`).
    pub docker: String,
    #[serde(flatten)]
    pub common: Common,
}

/// `type = "command"`: any command-line agent, run confined in the worktree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawCommandAgent")]
pub struct CommandAgent {
    /// The program and its arguments, each element a template (see [`PLACEHOLDERS`]);
    /// never passed through a shell.
    pub argv: Vec<String>,
    /// A file (relative to the attempt's scratch directory, also given to the agent as
    /// `PITCREW_OUTCOME_FILE`) where the agent writes
    /// `{"status": "finished" | "error", "message": "..."}`; without it the exit status
    /// decides.
    pub outcome_file: Option<String>,
    #[serde(flatten)]
    pub common: Common,
}

/// The placeholders a [`CommandAgent`] argv element may hold, each replaced by:
///
/// - `{prompt}`: the prompt text, as (part of) one argument;
/// - `{prompt_file}`: a file in the scratch directory holding the prompt (use it for long
///   prompts: one argument is limited to 128 KiB by Linux);
/// - `{targets}`: the target files; an element that is exactly `{targets}` becomes one
///   argument per target (none if there are none), inside a larger element they are joined
///   by spaces;
/// - `{model}`: the gateway's model name, without provider prefix (write
///   `openai/{model}` for litellm-based agents);
/// - `{base_url}`: the gateway's OpenAI-compatible base URL (`http://127.0.0.1:PORT/v1`);
/// - `{worktree}`: the worktree's path;
/// - `{max_iterations}`: the configured step limit.
///
/// Substitution is one pass: text that came from a placeholder (a prompt mentioning
/// `{worktree}`) is never substituted again.
pub const PLACEHOLDERS: &[&str] = &[
    "prompt",
    "prompt_file",
    "targets",
    "model",
    "base_url",
    "worktree",
    "max_iterations",
];

/// Variables pitcrew sets for the agent itself; `env` and `set` may not name them, so a
/// config can never swap the gateway for a provider, or the token for a key.
pub const RESERVED_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "LLM_MODEL",
    "LLM_API_KEY",
    "LLM_BASE_URL",
    "LLM_NATIVE_TOOL_CALLING",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "MAX_ITERATIONS",
    "OPENHANDS_WORK_DIR",
    "PITCREW_OUTCOME_FILE",
];

/// A field of a runtime's configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The field's full name, e.g. `runtimes.aider.argv`.
    pub field: String,
    /// What is wrong and what is valid.
    pub message: String,
}

impl RuntimeSpec {
    /// Checks what deserializing cannot: values in range, no secret or reserved variable
    /// names, known placeholders. `name` is the runtime's name in the config, for messages
    /// such as `runtimes.aider.argv: must not be empty`.
    pub fn check(&self, name: &str) -> Result<(), SpecError> {
        let field = |f: &str| format!("runtimes.{name}.{f}");
        let fail = |f: &str, message: String| {
            Err(SpecError {
                field: field(f),
                message,
            })
        };
        let common = self.common();
        if common.timeout_secs == 0 {
            return fail("timeout_secs", "must be at least 1 (seconds)".into());
        }
        if common.max_iterations == 0 {
            return fail("max_iterations", "must be at least 1".into());
        }
        if common.stuck_after < 2 {
            return fail(
                "stuck_after",
                "must be at least 2 (one action or condensation is never a loop)".into(),
            );
        }
        for var in &common.env {
            check_var_name(var).or_else(|m| fail("env", m))?;
            if is_secret_name(var) {
                return fail(
                    "env",
                    format!(
                        "`{var}` looks like a secret; agents get no provider keys, only the \
                         gateway's session token (as LLM_API_KEY / OPENAI_API_KEY)"
                    ),
                );
            }
        }
        for var in common.set.keys() {
            check_var_name(var).or_else(|m| fail("set", m))?;
            if is_secret_name(var) {
                return fail(
                    "set",
                    format!(
                        "`{var}` looks like a secret; secrets do not belong in pitcrew.toml, \
                         and agents get no provider keys"
                    ),
                );
            }
        }
        for path in &common.read {
            if !path.is_absolute() {
                return fail(
                    "read",
                    format!("`{}` must be an absolute path", path.display()),
                );
            }
        }
        match self {
            Self::OpenhandsCli(cli) => {
                if cli.program.trim().is_empty() {
                    return fail("program", "must not be empty (e.g. \"openhands\")".into());
                }
            }
            Self::OpenhandsDocker(docker) => {
                if docker.docker.trim().is_empty() {
                    return fail("docker", "must not be empty (e.g. \"docker\")".into());
                }
                if docker.image.trim().is_empty() {
                    return fail("image", "must not be empty".into());
                }
                if docker
                    .runtime_image
                    .as_deref()
                    .is_some_and(|i| i.trim().is_empty())
                {
                    return fail("runtime_image", "must not be empty when given".into());
                }
            }
            Self::Command(command) => {
                let Some(program) = command.argv.first() else {
                    return fail("argv", "must not be empty".into());
                };
                if program.trim().is_empty() {
                    return fail(
                        "argv",
                        "the program (first element) must not be empty".into(),
                    );
                }
                for element in &command.argv {
                    for piece in parse_template(element) {
                        if let Piece::Placeholder(p) = piece
                            && !PLACEHOLDERS.contains(&p)
                        {
                            return fail(
                                "argv",
                                format!(
                                    "unknown placeholder `{{{p}}}` in `{element}`; valid: {}",
                                    PLACEHOLDERS
                                        .iter()
                                        .map(|p| format!("{{{p}}}"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            );
                        }
                    }
                }
                if let Some(file) = &command.outcome_file {
                    let path = std::path::Path::new(file);
                    let inside = !file.is_empty()
                        && path
                            .components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)));
                    if !inside {
                        return fail(
                            "outcome_file",
                            format!(
                                "`{file}` must be a relative path inside the scratch directory \
                                 (no `..`, not absolute)"
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The wall-clock limit of one attempt.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.common().timeout_secs)
    }

    /// The agent's step limit.
    pub fn max_iterations(&self) -> u32 {
        self.common().max_iterations
    }

    /// The `type` as written in the config: `openhands-cli`, `openhands-docker` or
    /// `command`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::OpenhandsCli(_) => "openhands-cli",
            Self::OpenhandsDocker(_) => "openhands-docker",
            Self::Command(_) => "command",
        }
    }

    /// The settings every runtime has.
    pub fn common(&self) -> &Common {
        match self {
            Self::OpenhandsCli(s) => &s.common,
            Self::OpenhandsDocker(s) => &s.common,
            Self::Command(s) => &s.common,
        }
    }
}

fn check_var_name(var: &str) -> Result<(), String> {
    let valid = !var.is_empty()
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{var}` is not a variable name (letters, digits and `_`, not starting with a digit)"
        ));
    }
    if RESERVED_VARS.contains(&var) {
        return Err(format!(
            "`{var}` is set by pitcrew itself; reserved: {}",
            RESERVED_VARS.join(", ")
        ));
    }
    Ok(())
}

/// A piece of an argv template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// `{name}` (a lowercase identifier) is a placeholder; every other brace is text, so JSON
/// or shell-ish arguments pass unchanged.
pub(crate) fn parse_template(element: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = element;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            if open > 0 {
                pieces.push(Piece::Text(&rest[..open]));
            }
            pieces.push(Piece::Placeholder(&after[..name_len]));
            rest = &after[name_len + 1..];
        } else {
            pieces.push(Piece::Text(&rest[..=open]));
            rest = after;
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    pieces
}

// Each variant is read through a struct listing every field, so unknown ones are refused
// (see `Common`).
macro_rules! read_with_common {
    ($raw:ident => $public:ident { $($(#[$meta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $raw {
            $($(#[$meta])* $field: $ty,)*
            #[serde(default = "default_timeout_secs")]
            timeout_secs: u64,
            #[serde(default = "default_max_iterations")]
            max_iterations: u32,
            #[serde(default)]
            network: Network,
            #[serde(default)]
            env: Vec<String>,
            #[serde(default)]
            set: BTreeMap<String, String>,
            #[serde(default)]
            read: Vec<PathBuf>,
            #[serde(default = "default_stuck_after")]
            stuck_after: u32,
        }

        impl From<$raw> for $public {
            fn from(raw: $raw) -> Self {
                Self {
                    $($field: raw.$field,)*
                    common: Common {
                        timeout_secs: raw.timeout_secs,
                        max_iterations: raw.max_iterations,
                        network: raw.network,
                        env: raw.env,
                        set: raw.set,
                        read: raw.read,
                        stuck_after: raw.stuck_after,
                    },
                }
            }
        }
    };
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}
fn default_max_iterations() -> u32 {
    DEFAULT_MAX_ITERATIONS
}
fn default_stuck_after() -> u32 {
    DEFAULT_STUCK_AFTER
}
fn default_program() -> String {
    "openhands".to_owned()
}
fn default_image() -> String {
    "docker.all-hands.dev/all-hands-ai/openhands:0.59".to_owned()
}
fn default_docker() -> String {
    "docker".to_owned()
}

read_with_common!(RawOpenhandsCli => OpenhandsCli {
    #[serde(default = "default_program")] program: String,
});
read_with_common!(RawOpenhandsDocker => OpenhandsDocker {
    #[serde(default = "default_image")] image: String,
    #[serde(default)] runtime_image: Option<String>,
    #[serde(default = "default_docker")] docker: String,
});
read_with_common!(RawCommandAgent => CommandAgent {
    argv: Vec<String>,
    #[serde(default)] outcome_file: Option<String>,
});

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<RuntimeSpec, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_fill_every_common_field() {
        let spec = parse("type = \"openhands-cli\"").unwrap();
        assert_eq!(
            spec,
            RuntimeSpec::OpenhandsCli(OpenhandsCli {
                program: "openhands".into(),
                common: Common::default()
            })
        );
        assert_eq!(spec.timeout(), Duration::from_secs(1800));
        assert_eq!(spec.max_iterations(), 30);
        assert_eq!(spec.common().stuck_after, 3);
        assert_eq!(spec.common().network, Network::Gateway);
        assert_eq!(spec.kind_name(), "openhands-cli");
        let docker = parse("type = \"openhands-docker\"").unwrap();
        let RuntimeSpec::OpenhandsDocker(d) = &docker else {
            panic!("{docker:?}")
        };
        assert_eq!(d.image, "docker.all-hands.dev/all-hands-ai/openhands:0.59");
        assert_eq!(
            (d.docker.as_str(), d.runtime_image.as_deref()),
            ("docker", None)
        );
        assert_eq!(docker.kind_name(), "openhands-docker");
    }

    #[test]
    fn every_field_is_read_and_survives_a_round_trip() {
        let text = r#"
            type = "command"
            argv = ["aider", "--message-file", "{prompt_file}", "{targets}"]
            outcome_file = "outcome.json"
            timeout_secs = 60
            max_iterations = 7
            network = "full"
            env = ["GIT_AUTHOR_NAME"]
            set = { AIDER_NO_AUTO_COMMITS = "1" }
            read = ["/opt/aider"]
            stuck_after = 5
        "#;
        let spec = parse(text).unwrap();
        let RuntimeSpec::Command(c) = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(c.outcome_file.as_deref(), Some("outcome.json"));
        assert_eq!(
            c.common,
            Common {
                timeout_secs: 60,
                max_iterations: 7,
                network: Network::Full,
                env: vec!["GIT_AUTHOR_NAME".into()],
                set: [("AIDER_NO_AUTO_COMMITS".to_owned(), "1".to_owned())].into(),
                read: vec!["/opt/aider".into()],
                stuck_after: 5,
            }
        );
        assert_eq!(spec.kind_name(), "command");
        spec.check("aider").unwrap();
        let back: RuntimeSpec = toml::from_str(&toml::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn unknown_fields_and_types_are_refused() {
        let err = parse("type = \"openhands-cli\"\ntimeout = 5").unwrap_err();
        assert!(err.contains("unknown field `timeout`"), "{err}");
        let err = parse("type = \"command\"\nargv = [\"x\"]\nprogram = \"y\"").unwrap_err();
        assert!(err.contains("unknown field `program`"), "{err}");
        let err = parse("type = \"aider\"").unwrap_err();
        assert!(
            err.contains("openhands-cli") && err.contains("command"),
            "lists the valid types: {err}"
        );
        let err = parse("type = \"command\"").unwrap_err();
        assert!(err.contains("missing field `argv`"), "{err}");
        let err = parse("type = \"openhands-cli\"\nnetwork = \"none\"").unwrap_err();
        assert!(err.contains("gateway") && err.contains("full"), "{err}");
    }

    fn check(text: &str) -> String {
        parse(text).unwrap().check("x").unwrap_err().to_string()
    }

    #[test]
    fn check_names_the_field_and_what_is_valid() {
        assert_eq!(
            check("type = \"command\"\nargv = []"),
            "runtimes.x.argv: must not be empty"
        );
        let err = check("type = \"command\"\nargv = [\"a\", \"--m={modle}\"]");
        assert!(
            err.starts_with("runtimes.x.argv: unknown placeholder `{modle}`")
                && err.contains("{model}")
                && err.contains("{prompt_file}"),
            "{err}"
        );
        let err = check("type = \"openhands-cli\"\nenv = [\"OPENROUTER_API_KEY\"]");
        assert!(
            err.starts_with("runtimes.x.env: `OPENROUTER_API_KEY` looks like a secret"),
            "{err}"
        );
        let err = check("type = \"openhands-cli\"\nenv = [\"LLM_BASE_URL\"]");
        assert!(err.contains("set by pitcrew itself"), "{err}");
        let err = check("type = \"openhands-cli\"\nset = { LLM_API_KEY = \"x\" }");
        assert!(err.starts_with("runtimes.x.set:"), "{err}");
        let err = check("type = \"openhands-cli\"\nset = { GITHUB_TOKEN = \"x\" }");
        assert!(err.contains("looks like a secret"), "{err}");
        let err = check("type = \"openhands-cli\"\nset = { \"A=B\" = \"x\" }");
        assert!(err.contains("not a variable name"), "{err}");
        let err = check("type = \"openhands-cli\"\nread = [\"venv\"]");
        assert!(err.starts_with("runtimes.x.read:"), "{err}");
        let err = check("type = \"openhands-cli\"\ntimeout_secs = 0");
        assert!(err.starts_with("runtimes.x.timeout_secs:"), "{err}");
        let err = check("type = \"openhands-cli\"\nstuck_after = 1");
        assert!(err.starts_with("runtimes.x.stuck_after:"), "{err}");
        let err = check("type = \"openhands-cli\"\nmax_iterations = 0");
        assert!(err.starts_with("runtimes.x.max_iterations:"), "{err}");
        let err = check("type = \"openhands-cli\"\nprogram = \" \"");
        assert!(err.starts_with("runtimes.x.program:"), "{err}");
        let err = check("type = \"openhands-docker\"\nimage = \"\"");
        assert!(err.starts_with("runtimes.x.image:"), "{err}");
        for bad in ["../out.json", "/tmp/out.json", ""] {
            let err = check(&format!(
                "type = \"command\"\nargv = [\"a\"]\noutcome_file = \"{bad}\""
            ));
            assert!(err.starts_with("runtimes.x.outcome_file:"), "{err}");
        }
    }

    #[test]
    fn templates_split_into_text_and_placeholders() {
        use Piece::{Placeholder as P, Text as T};
        assert_eq!(
            parse_template("--file={prompt_file}"),
            [T("--file="), P("prompt_file")]
        );
        assert_eq!(parse_template("{targets}"), [P("targets")]);
        assert_eq!(
            parse_template("{\"a\": {model}}"),
            [T("{"), T("\"a\": "), P("model"), T("}")]
        );
        assert_eq!(
            parse_template("{} {Model} {"),
            [T("{"), T("} {"), T("Model} {")],
            "not identifiers: text"
        );
        assert_eq!(parse_template(""), []);
    }
}
