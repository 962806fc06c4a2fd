//! Mistakes in sim.toml are reported with the file, the line, the field and the valid values.

use pitcrew_sim::{ConfigError, Fault, Latency, SimConfig, Step};
use std::time::Duration;

/// Loads `toml` written to `sim.toml` in a fresh directory (with `files` beside it).
fn load(toml: &str, files: &[(&str, &str)]) -> Result<SimConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, toml).unwrap();
    SimConfig::load(&path).map_err(|e| {
        let text = e.to_string();
        assert!(text.contains("sim.toml"), "the file is named: {text}");
        text
    })
}

#[test]
fn a_full_configuration_loads() {
    let toml = r#"
seed = 9
script = [{ status = 503, message = "down" }]

[models."sim/a"]
context_length = 8000
pricing = { prompt = 1.0, completion = 3.0 }
latency = { median_ms = 300, p95_ms = 900 }
tokens_per_second = 80
rpm = 60
tpm = 40000
rpd = 1000
errors = { 500 = 0.02, 429 = 0.01 }
faults = { disconnect = 0.01, stall = 0.02, stall_ms = 5000 }
script = [{ reply_file = "good.md", fault = "malformed" }]
"#;
    let config = load(toml, &[("good.md", "good")]).unwrap();
    assert_eq!(config.seed, 9);
    assert_eq!(
        config.script,
        [Step::Error {
            status: 503,
            retry_after: None,
            message: Some("down".into())
        }]
    );
    let model = &config.models[0];
    assert_eq!(model.id, "sim/a");
    assert_eq!(
        model.latency,
        Latency::LogNormal {
            median: Duration::from_millis(300),
            p95: Duration::from_millis(900)
        }
    );
    assert_eq!(model.limits.rpd, Some(1000));
    assert_eq!(model.errors, [(429, 0.01), (500, 0.02)]);
    assert_eq!(model.stall, Duration::from_secs(5));
    assert_eq!(
        model.script,
        [Step::Reply {
            text: Some("good".into()),
            fault: Some(Fault::Malformed)
        }]
    );
}

#[test]
fn an_unknown_field_is_named_with_its_line_and_the_valid_fields() {
    let error = load("[models.m]\nrpm = 5\nrpn = 5\n", &[]).unwrap_err();
    assert!(error.contains("line 3"), "{error}");
    assert!(error.contains("unknown field `rpn`"), "{error}");
    assert!(
        error.contains("`rpm`") && error.contains("`tpm`"),
        "{error}"
    );
}

#[test]
fn an_unknown_fault_lists_the_valid_ones() {
    let error = load("script = [{ fault = \"explode\" }]\n", &[]).unwrap_err();
    assert!(error.contains("explode"), "{error}");
    for fault in ["disconnect", "truncate", "stall", "malformed"] {
        assert!(error.contains(fault), "{error}");
    }
}

#[test]
fn checked_fields_are_blamed_on_their_line() {
    let cases = [
        (
            "[models.m]\nlatency = { fixed_ms = 5, min_ms = 1 }\n",
            ":2: field `models.m.latency`",
            "{ min_ms = A, max_ms = B }",
        ),
        (
            "[models.m]\nlatency = { min_ms = 9, max_ms = 1 }\n",
            ":2: field `models.m.latency`",
            "above max_ms",
        ),
        (
            "[models.\"sim/x\"]\n\n[models.\"sim/x\".errors]\n503 = 0.5\n5O3 = 0.1\n",
            ":5: field `models.\"sim/x\".errors.5O3`",
            "use a code from 400 to 599",
        ),
        (
            "[models.m]\nerrors = { 500 = 0.7, 503 = 0.7 }\n",
            ":2: field `models.m.errors`",
            "more than 1",
        ),
        (
            "[models.m]\nfaults = { stall = 1.5 }\n",
            ":2: field `models.m.faults.stall`",
            "from 0 to 1",
        ),
        (
            "[models.m]\nrpm = 0\n",
            ":2: field `models.m.rpm`",
            "leave it out for no limit",
        ),
        (
            "[models.m]\ntokens_per_second = 0\n",
            ":2: field `models.m.tokens_per_second`",
            "above 0",
        ),
        (
            "script = [\n  { reply = \"ok\" },\n  { status = 200 },\n]\n",
            ":3: field `script[1]`",
            "400 to 599",
        ),
        (
            "script = [{ status = 500, reply = \"x\" }]\n",
            ":1: field `script[0]`",
            "takes only `retry_after` and `message`",
        ),
        (
            "script = [{ retry_after = 3 }]\n",
            "field `script[0]`",
            "add `status`",
        ),
        (
            "[models.m]\nscript = [{ reply_file = \"missing.md\" }]\n",
            ":2: field `models.m.script[0]`",
            "missing.md",
        ),
        (
            "replies_dir = \"nowhere\"\n",
            ":1: field `replies_dir`",
            "nowhere",
        ),
        ("[models]\n", ":1: field `models`", "no model is configured"),
    ];
    for (toml, place, hint) in cases {
        let error = load(toml, &[]).unwrap_err();
        assert!(error.contains(place), "{toml}\n=> {error}");
        assert!(error.contains(hint), "{toml}\n=> {error}");
    }
}

#[test]
fn an_empty_replies_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("replies")).unwrap();
    let path = dir.path().join("sim.toml");
    std::fs::write(&path, "replies_dir = \"replies\"\n").unwrap();
    let error = SimConfig::load(&path).unwrap_err().to_string();
    assert!(error.contains("has no reply files"), "{error}");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let error = SimConfig::load("/nonexistent/sim.toml".as_ref()).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }), "{error}");
    assert!(error.to_string().contains("/nonexistent/sim.toml"));
}

#[test]
fn the_documented_example_loads() {
    let doc = include_str!("../../../docs/sim.md");
    let example = doc
        .split("```toml\n")
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("seed = 42"))
        .expect("docs/sim.md has the full example");
    let files = [
        ("replies/01.md", "one"),
        ("demo/good_tests.md", "good"),
        ("demo/wrong_expectation.md", "wrong"),
    ];
    let config = load(example, &files).unwrap();
    assert_eq!(config.seed, 42);
    assert_eq!(config.script.len(), 6);
    let ids: Vec<&str> = config.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["sim/coder", "sim/fast"]);
    assert_eq!(config.models[0].replies, ["one"]);
}
