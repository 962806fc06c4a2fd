use super::*;

fn env(pairs: &[(&str, &str)]) -> Environment {
    Environment::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn load(toml: &str, pairs: &[(&str, &str)]) -> Result<LoadedConfig, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), toml).unwrap();
    LoadedConfig::load(dir.path(), None, env(pairs))
}

#[test]
fn the_shipped_file_states_the_built_in_defaults() {
    let builtin = Config::builtin();
    assert_eq!(builtin.store, StoreConfig::default());
    assert_eq!(builtin.workers, WorkersConfig::default());
    assert_eq!(builtin.models, ModelsConfig::default());
    assert_eq!(builtin.budget, BudgetConfig::default());
    assert_eq!(builtin.context, ContextConfig::default());
    assert_eq!(builtin.server, ServerConfig::default());
    assert_eq!(builtin.validation, ValidationSettings::default());
    let empty = load("", &[]).unwrap();
    assert_eq!(empty.config, builtin);
    assert_eq!(
        empty.resolve(None).unwrap().id,
        "deepseek/deepseek-chat-v3.1:free"
    );
    // Every model the shipped registry knows is served by a shipped provider.
    for model in empty.registry.models() {
        assert!(
            builtin.providers.contains_key(&model.provider),
            "{}",
            model.name
        );
    }
}

#[test]
fn the_project_file_merges_over_the_defaults() {
    let loaded = load(
        "[workers]\ncount = 7\n[providers.local]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         [presets.mine]\nprovider = \"local\"\nmodel = \"m/1\"\n[models]\ndefault = \"mine\"\n",
        &[],
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.workers.count, 7);
    assert_eq!(c.workers.lease_ttl_secs, 60);
    let mine = loaded.resolve(None).unwrap();
    assert_eq!(
        (mine.provider.as_str(), mine.id.as_str(), mine.context),
        ("local", "m/1", 32_768)
    );
    assert_eq!(
        loaded.resolve(Some("deepseek-v3")).unwrap().id,
        "deepseek/deepseek-chat-v3.1:free"
    );
    let err = loaded.resolve(Some("gpt-9")).unwrap_err().to_string();
    assert!(
        err.contains("unknown model preset `gpt-9`; valid values: deepseek-r1"),
        "{err}"
    );
    assert_eq!(loaded.api_key("local").unwrap(), None);
}

#[test]
fn registry_changes_apply_and_are_checked() {
    let loaded = load(
        "[[registry.models]]\nname = \"deepseek/deepseek-chat-v3.1:free\"\nrpm = 7\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded
            .registry
            .get("deepseek/deepseek-chat-v3.1:free")
            .unwrap()
            .rpm,
        Some(7)
    );
    let err = load(
        "[[registry.models]]\nname = \"x\"\nprovider = \"nowhere\"\nid = \"x\"\ncontext = 1000\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown provider `nowhere`; valid values: ollama, openai, openrouter"),
        "{err}"
    );
    let err = load("[models]\ndefault = \"gpt-9\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("models.default") && err.contains("unknown model preset `gpt-9`"),
        "{err}"
    );
}

#[test]
fn environment_variables_override_single_values() {
    let loaded = load(
        "",
        &[
            ("PITCREW_WORKERS_COUNT", "5"),
            ("PITCREW_STORE_URL", "sqlite:///tmp/q.db"),
            ("PITCREW_MODELS_TEMPERATURE", "0.7"),
            ("PITCREW_BUDGET_PER_RUN_USD", "2.5"),
            ("PITCREW_VALIDATION_RERUNS", "5"),
            ("PITCREW_TEST_POSTGRES_URL", "postgres://ignored"),
            ("PITCREW_LOG", "debug"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
        ],
    )
    .unwrap();
    assert_eq!(loaded.config.workers.count, 5);
    assert_eq!(loaded.config.store.url, "sqlite:///tmp/q.db");
    assert_eq!(loaded.config.models.temperature, 0.7);
    assert_eq!(loaded.config.budget.per_run(), Some(2.5));
    assert_eq!(loaded.router_settings().run_budget_usd, Some(2.5));
    assert_eq!(loaded.config.validation.reruns, 5);
    assert_eq!(
        loaded.config.providers["openai"].base_url,
        "http://127.0.0.1:8000/v1"
    );

    let err = load("", &[("PITCREW_WORKERS_COUNT", "0")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("environment variable PITCREW_WORKERS_COUNT"),
        "{err}"
    );
    assert!(err.contains("workers.count"), "{err}");
    let err = load("", &[("PITCREW_WORKERZ", "1")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PITCREW_WORKERZ: not a pitcrew setting"),
        "{err}"
    );
}

#[test]
fn keys_come_from_the_environment_and_are_never_printed() {
    let loaded = load("", &[("OPENROUTER_API_KEY", "sk-or-secret")]).unwrap();
    let key = loaded.api_key("openrouter").unwrap().unwrap();
    assert_eq!(key.expose(), "sk-or-secret");
    assert!(!format!("{key:?} {loaded:?}").contains("sk-or-secret"));
    let endpoints = loaded.endpoints();
    let (_, openrouter) = endpoints
        .iter()
        .find(|(name, _)| name == "openrouter")
        .unwrap();
    assert!(openrouter.api_key.is_some());
    let missing = load("", &[]).unwrap();
    let err = missing.api_key("openrouter").unwrap_err().to_string();
    assert!(err.contains("OPENROUTER_API_KEY: not set"), "{err}");
    let endpoints = missing.endpoints();
    assert!(
        endpoints
            .iter()
            .all(|(name, e)| e.api_key.is_none() || name.is_empty())
    );
}

#[test]
fn the_server_token_is_a_secret_from_the_file_or_the_environment() {
    let from_file = load("[server]\ntoken = \"config-test-file-token-3b9e1f\"\n", &[]).unwrap();
    let token = from_file.config.server.token.secret().unwrap();
    assert_eq!(token.expose(), "config-test-file-token-3b9e1f");
    assert!(!format!("{from_file:?}").contains("config-test-file-token"));
    assert_eq!(
        pitcrew_core::redact("Bearer config-test-file-token-3b9e1f"),
        "Bearer [REDACTED]"
    );
    let from_env = load(
        "",
        &[
            ("PITCREW_SERVER_TOKEN", "config-test-env-token-aa71c0"),
            ("PITCREW_SERVER_BIND", "0.0.0.0:9000"),
        ],
    )
    .unwrap();
    let server = &from_env.config.server;
    assert_eq!(
        server.token.secret().unwrap().expose(),
        "config-test-env-token-aa71c0"
    );
    assert_eq!(server.bind.to_string(), "0.0.0.0:9000");
    assert_eq!(load("", &[]).unwrap().config.server.token.secret(), None);
    let err = load("", &[("PITCREW_SERVER_TOKEN", "short")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("environment variable PITCREW_SERVER_TOKEN")
            && err.contains("at least 16 characters"),
        "{err}"
    );
    assert!(!err.contains("short`"), "{err}");
}

#[test]
fn provider_keys_are_registered_for_redaction_whatever_their_name() {
    // `LOCAL_MODEL` does not look secret; as a provider's key variable it is one.
    load(
        "[providers.local]\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"LOCAL_MODEL\"\n",
        &[("LOCAL_MODEL", "config-test-provider-key-81c3")],
    )
    .unwrap();
    assert_eq!(
        pitcrew_core::redact("sent config-test-provider-key-81c3"),
        "sent [REDACTED]"
    );
}

#[test]
fn secret_looking_values_of_dotenv_are_registered_for_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(
        &path,
        "CONFIG_TEST_DEPLOY_SECRET=config-test-dotenv-secret-5d0e\n\
         CONFIG_TEST_GREETING=config-test-plain-value-77aa\n",
    )
    .unwrap();
    Environment::from_process(Some(&path)).unwrap();
    assert_eq!(
        pitcrew_core::redact("config-test-dotenv-secret-5d0e config-test-plain-value-77aa"),
        "[REDACTED] config-test-plain-value-77aa"
    );
}

#[test]
fn dotenv_fills_in_what_the_process_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(
        &path,
        "PITCREW_UNIT_TEST_ONLY_VAR=\"from file\"\n# comment\n",
    )
    .unwrap();
    let env = Environment::from_process(Some(&path)).unwrap();
    assert_eq!(env.get("PITCREW_UNIT_TEST_ONLY_VAR"), Some("from file"));
    assert!(
        std::env::var("PITCREW_UNIT_TEST_ONLY_VAR").is_err(),
        ".env leaked into the process"
    );
    std::fs::write(&path, "not a valid line\n").unwrap();
    assert!(Environment::from_process(Some(&path)).is_err());
}

#[test]
fn references_between_sections_are_checked() {
    let err = load("[presets.x]\nprovider = \"nowhere\"\nmodel = \"m\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("presets.x.provider"), "{err}");
    assert!(
        err.contains("unknown provider `nowhere`; valid values: ollama, openai, openrouter"),
        "{err}"
    );
    let err = load("[providers.bad]\nbase_url = \"ftp://x\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("providers.bad.base_url"), "{err}");
    let err = load("[store]\nurl = 5\n", &[]).unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    let err = load("[validation]\nreruns = \"many\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2") && err.contains("reruns"), "{err}");
}

#[test]
fn webhooks_default_to_every_event_and_their_secrets_are_redacted() {
    let loaded = load(
        "[[webhooks]]\nurl = \"https://ci.example.com/hooks/pitcrew\"\n\
         secret_env = \"CONFIG_TEST_HOOK\"\n\n\
         [[webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\nsecret_env = \"OTHER_HOOK\"\n\
         events = [\"task.failed\", \"run.finished\"]\ntimeout_secs = 3\nmax_attempts = 2\n",
        &[
            ("CONFIG_TEST_HOOK", "config-test-webhook-secret-4e8a1b"),
            ("OTHER_HOOK", "config-test-other-hook-secret-90f2"),
        ],
    )
    .unwrap();
    let [all, some] = loaded.config.webhooks.as_slice() else {
        panic!("two webhooks expected: {:?}", loaded.config.webhooks);
    };
    assert_eq!(all.event_types(), WebhookEventType::ALL);
    assert_eq!((all.timeout_secs, all.max_attempts), (10, 12));
    assert_eq!(
        some.subscription(),
        WebhookSubscription {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec![WebhookEventType::TaskFailed, WebhookEventType::RunFinished],
        }
    );
    assert_eq!((some.timeout_secs, some.max_attempts), (3, 2));
    let secret = loaded.webhook_secret(all).unwrap();
    assert_eq!(secret.expose(), "config-test-webhook-secret-4e8a1b");
    // Registered at load, whatever the variable is called.
    assert_eq!(
        pitcrew_core::redact(
            "x config-test-webhook-secret-4e8a1b config-test-other-hook-secret-90f2"
        ),
        "x [REDACTED] [REDACTED]"
    );
    assert!(!format!("{loaded:?}").contains("config-test-webhook-secret"));
    // No webhooks: nothing in the effective configuration either.
    assert!(load("", &[]).unwrap().config.webhooks.is_empty());
}

#[test]
fn a_webhook_secret_must_be_set_and_long_enough() {
    let toml = "[[webhooks]]\nurl = \"https://h.example/x\"\nsecret_env = \"HOOK_KEY\"\n";
    let unset = load(toml, &[]).unwrap();
    let err = unset
        .webhook_secret(&unset.config.webhooks[0])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("environment variable HOOK_KEY: not set")
            && err.contains("https://h.example/x"),
        "{err}"
    );
    let short = load(toml, &[("HOOK_KEY", "tiny-secret")]).unwrap();
    let err = short
        .webhook_secret(&short.config.webhooks[0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("at least 16 characters"), "{err}");
    assert!(!err.contains("tiny-secret"), "{err}");
}

#[test]
fn webhook_mistakes_name_the_line_the_field_and_the_valid_values() {
    let cases = [
        (
            "url = \"ftp://h/x\"\nsecret_env = \"S\"\n",
            "webhooks[1].url",
            "only http and https",
        ),
        (
            "url = \"https://user:pw@h/x\"\nsecret_env = \"S\"\n",
            "webhooks[1].url",
            "credentials do not belong in the URL",
        ),
        (
            "url = \"not a url\"\nsecret_env = \"S\"\n",
            "webhooks[1].url",
            "is not a URL",
        ),
        (
            "url = \"https://h/y\"\nsecret_env = \"my secret\"\n",
            "webhooks[1].secret_env",
            "not an environment variable's name",
        ),
        (
            "url = \"https://h/y\"\nsecret_env = \"PITCREW_HOOK_SECRET\"\n",
            "webhooks[1].secret_env",
            "PITCREW_* variables are settings",
        ),
        (
            "url = \"https://h/y\"\nsecret_env = \"S\"\nevents = [\"task.complete\"]\n",
            "webhooks[1].events",
            "unknown event `task.complete`; valid values: task.completed, task.failed, \
             task.possible_bug, task.cancelled, run.finished; did you mean `task.completed`?",
        ),
        (
            "url = \"https://h/y\"\nsecret_env = \"S\"\nevents = []\n",
            "webhooks[1].events",
            "names no event",
        ),
        (
            "url = \"https://h/y\"\nsecret_env = \"S\"\ntimeout_secs = 0\n",
            "webhooks[1].timeout_secs",
            "between 1 and 300",
        ),
        (
            "url = \"https://h/y\"\nsecret_env = \"S\"\nmax_attempts = 0\n",
            "webhooks[1].max_attempts",
            "between 1 and 100",
        ),
        (
            "url = \"https://h/x\"\nsecret_env = \"S\"\n",
            "webhooks[1].url",
            "configured twice (webhooks[0] too)",
        ),
    ];
    for (second, field, message) in cases {
        let toml = format!(
            "[[webhooks]]\nurl = \"https://h/x\"\nsecret_env = \"S\"\n\n[[webhooks]]\n{second}"
        );
        let err = load(&toml, &[]).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pitcrew.toml:6: field `{field}`"))
                || err.contains(&format!("pitcrew.toml:7: field `{field}`"))
                || err.contains(&format!("pitcrew.toml:8: field `{field}`")),
            "{field}: {err}"
        );
        assert!(err.contains(message), "{field}: {err}");
    }
    let err = load(
        "[[webhooks]]\nurl = \"https://h/x\"\nsecret_env = \"S\"\nsecret = \"inline\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown field `secret`"), "{err}");
}

#[test]
fn runtimes_are_chosen_by_task_then_kind_then_default() {
    let loaded = load(
        "[runtime]\ndefault = \"aider\"\nkinds = { fix = \"builtin\" }\n\n\
         [runtimes.aider]\ntype = \"command\"\nargv = [\"aider\", \"--message\", \"{prompt}\"]\n",
        &[],
    )
    .unwrap();
    let config = &loaded.config;
    let none = serde_json::json!({});
    assert_eq!(config.runtime_of(TaskKind::UnitTest, &none), "aider");
    assert_eq!(config.runtime_of(TaskKind::Fix, &none), "builtin");
    let chosen = serde_json::json!({"runtime": "aider"});
    assert_eq!(config.runtime_of(TaskKind::Fix, &chosen), "aider");
    assert!(config.runtime_named("builtin").unwrap().is_none());
    assert_eq!(
        config.runtime_named("aider").unwrap().unwrap().kind_name(),
        "command"
    );
    let err = config.runtime_named("aidr").unwrap_err();
    assert!(
        err.contains("valid values: builtin, aider") && err.contains("did you mean"),
        "{err}"
    );
}

#[test]
fn runtime_mistakes_name_the_line_the_field_and_the_valid_values() {
    let unknown = load("[runtime]\n\ndefault = \"openhands\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains(":3: field `runtime.default`")
            && unknown.contains("unknown runtime `openhands`; valid values: builtin"),
        "{unknown}"
    );
    let kind = load("[runtime]\nkinds = { fixx = \"builtin\" }\n", &[])
        .unwrap_err()
        .to_string();
    assert!(
        kind.contains("runtime.kinds.fixx") && kind.contains("did you mean `fix`"),
        "{kind}"
    );
    let empty = load("[runtimes.aider]\ntype = \"command\"\nargv = []\n", &[])
        .unwrap_err()
        .to_string();
    assert!(empty.contains("runtimes.aider.argv"), "{empty}");
    let reserved = load(
        "[runtimes.builtin]\ntype = \"command\"\nargv = [\"x\"]\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(reserved.contains("pitcrew's own runtime"), "{reserved}");
    let typo = load(
        "[runtimes.oh]\ntype = \"openhands-cli\"\ntimeout = 60\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(typo.contains("timeout"), "{typo}");
}
