//! The registry from the command line: `models`, `models sync`, `select-model`.

use pitcrew_testkit::Reply;

use crate::support::*;

#[test]
fn models_lists_the_registry_with_what_runs_taught_it() {
    let p = Project::new();
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    p.submit("src/calc.py", &[]);
    p.cmd().arg("run").assert().code(0);

    let models = p.json(&["models"]);
    let models = models.as_array().unwrap();
    assert!(models.len() >= 12, "{}", models.len());
    let local = models
        .iter()
        .find(|m| m["name"] == "local")
        .expect("the project's preset is a model");
    assert_eq!(local["provider"], "local");
    assert_eq!(local["id"], MODEL_ID);
    assert_eq!(local["presets"][0], "local");
    assert_eq!(local["circuit"], "closed");
    assert_eq!(local["success_rate"], 1.0);
    assert!(local["p50_latency_ms"].as_u64().is_some(), "{local}");
    let deepseek = models
        .iter()
        .find(|m| {
            m["presets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "deepseek-v3")
        })
        .unwrap();
    assert_eq!(deepseek["id"], "deepseek/deepseek-chat-v3.1:free");
    assert_eq!(deepseek["free"], true);
    assert_eq!(deepseek["in_fallback"], true);

    let table = p.cmd().arg("models").output().unwrap();
    assert!(
        stdout_of(&table).contains("deepseek/deepseek-chat-v3.1:free *"),
        "{}",
        stdout_of(&table)
    );
}

#[test]
fn select_model_ranks_with_components_and_says_why_models_are_left_out() {
    let p = Project::new();
    let ranked = p.json(&[
        "select-model",
        "--kind",
        "unit_test",
        "--complexity",
        "high",
        "--model",
        "local",
    ]);
    let ranked = ranked.as_array().unwrap();
    let first = &ranked[0];
    assert_eq!(first["model"], "local");
    assert!(first["excluded"].as_array().unwrap().is_empty());
    for component in ["quality", "success", "latency", "specialization"] {
        assert!(first["components"][component].is_number(), "{first}");
    }
    // Without OPENROUTER_API_KEY the free OpenRouter models cannot be used, and say so.
    let openrouter = ranked
        .iter()
        .find(|c| c["provider"] == "openrouter")
        .unwrap();
    assert!(
        openrouter["excluded"]
            .to_string()
            .contains("OPENROUTER_API_KEY"),
        "{openrouter}"
    );
    let text = p
        .cmd()
        .args([
            "select-model",
            "--complexity",
            "high",
            "--min-quality",
            "0.99",
        ])
        .output()
        .unwrap();
    assert!(
        stdout_of(&text).contains("quality ×0.4"),
        "{}",
        stdout_of(&text)
    );
    let out = p
        .cmd()
        .args(["select-model", "--complexity", "extreme"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("valid values: low, medium, high"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn models_sync_reads_openrouter_s_format_and_the_registry_keeps_it() {
    let p = Project::new();
    let listing = p.scratch.path().join("models.json");
    std::fs::write(
        &listing,
        r#"{"data": [
            {"id": "acme/coder-9b:free", "name": "Acme Coder", "context_length": 65536,
             "pricing": {"prompt": "0", "completion": "0"}},
            {"id": "deepseek/deepseek-chat-v3.1:free", "context_length": 131072,
             "pricing": {"prompt": "0", "completion": "0"}}
        ]}"#,
    )
    .unwrap();
    let synced = p.json(&["models", "sync", "--file", listing.to_str().unwrap()]);
    assert_eq!(synced["added"][0], "acme/coder-9b:free");
    assert_eq!(synced["updated"][0], "deepseek/deepseek-chat-v3.1:free");
    let models = p.json(&["models"]);
    let acme = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "acme/coder-9b:free")
        .expect("synced model listed");
    assert_eq!(acme["context"], 65536);
    let deepseek = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "deepseek/deepseek-chat-v3.1:free")
        .unwrap();
    assert_eq!(deepseek["context"], 131072);
    // A new model is usable by name.
    p.json(&[
        "submit",
        "--kind",
        "unit_test",
        "--target",
        "src/calc.py",
        "--model",
        "acme/coder-9b:free",
    ]);

    std::fs::write(&listing, "not json").unwrap();
    let out = p
        .cmd()
        .args(["models", "sync", "--file", listing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("not in OpenRouter's /models format"),
        "{}",
        stderr_of(&out)
    );
}
