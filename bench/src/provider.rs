//! A provider for the router benchmarks: the testkit's scripted server enforcing a
//! requests-per-minute quota over a sliding minute, as providers do, and the registry and
//! router that call it (or any other OpenAI-compatible server, such as `pitcrew sim`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pitcrew_llm::{
    ChatClient, Endpoint, Expect, Message, Registry, Requirements, RouteRequest, Router,
    RouterSettings,
};
use pitcrew_testkit::{Reply, ScriptedServer};
use serde_json::json;

/// The provider name every benchmark model has.
const PROVIDER: &str = "bench";

/// A quota of `rpm` requests over any sliding minute.
#[derive(Debug)]
pub struct MinuteQuota {
    rpm: u32,
    /// When the requests of the last minute were accepted, oldest first.
    accepted: VecDeque<Instant>,
}

impl MinuteQuota {
    pub fn new(rpm: u32) -> MinuteQuota {
        MinuteQuota {
            rpm,
            accepted: VecDeque::new(),
        }
    }

    /// Counts a request arriving at `now` if the last minute has room for it; else
    /// `Err(seconds)`: the `Retry-After` until the oldest request leaves the minute, in whole
    /// seconds rounded up (at least 1), as most providers send it.
    pub fn admit(&mut self, now: Instant) -> Result<(), u64> {
        while self
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.accepted.pop_front();
        }
        if self.accepted.len() >= self.rpm as usize {
            // A quota of 0 never frees up; say a minute.
            let frees_at = self.accepted.front().copied().unwrap_or(now) + Duration::from_secs(60);
            let wait = frees_at.duration_since(now).as_secs_f64().ceil().max(1.0);
            return Err(wait as u64);
        }
        self.accepted.push_back(now);
        Ok(())
    }
}

/// HTTP 429 asking the client to wait `seconds`.
pub fn rate_limited(seconds: u64) -> Reply {
    let body = json!({"error": {"message": "Rate limit exceeded", "code": 429}});
    Reply::status(429, body).header("retry-after", &seconds.to_string())
}

/// A registry of free `balanced` models (name, requests per minute) of one provider, the
/// fallback chain in the order given; each model's `rpm` is in it only if `limits_known`.
pub fn registry(models: &[(&str, u32)], limits_known: bool) -> Registry {
    let chain: Vec<String> = models.iter().map(|(m, _)| format!("\"{m}\"")).collect();
    let mut toml = format!("fallback = [{}]\n", chain.join(", "));
    for (model, rpm) in models {
        toml += &format!(
            "[[models]]\nprovider = \"{PROVIDER}\"\nid = \"{model}\"\ncontext = 32000\nfree = true\nspecializations = [\"balanced\"]\nquality = 0.7\nlatency_ms = 250\n"
        );
        if limits_known {
            toml += &format!("rpm = {rpm}\n");
        }
    }
    Registry::from_toml(&toml, "benchmark registry").expect("benchmark registry is valid")
}

/// A router over `registry` whose provider is `server`, calling it through `client`.
pub fn router(
    server: &ScriptedServer,
    registry: Registry,
    client: ChatClient,
    settings: RouterSettings,
) -> Router {
    router_at(server.base_url(), registry, client, settings)
}

/// A router over `registry` whose provider is the OpenAI-compatible server at `base_url`
/// (e.g. a `pitcrew sim` process), calling it through `client`.
pub fn router_at(
    base_url: String,
    registry: Registry,
    client: ChatClient,
    settings: RouterSettings,
) -> Router {
    let endpoint = Endpoint {
        base_url,
        api_key: None,
        api_key_env: String::new(),
    };
    Router::new(
        registry,
        [(PROVIDER.to_string(), endpoint)],
        client,
        settings,
    )
}

/// The call a router benchmark's worker makes for `task`: a test-writing prompt naming the
/// task, so every reply the server scripts can be told apart.
pub fn task_request(task: u64) -> RouteRequest {
    RouteRequest {
        messages: vec![
            Message::system("Write pytest tests."),
            Message::user(format!("task {task}: tests for calc.add")),
        ],
        temperature: 0.2,
        expect: Expect::Code,
        requirements: Requirements {
            max_output_tokens: 1024,
            ..Requirements::default()
        },
        task_budget: None,
        wait_until: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_counts_a_sliding_minute_and_names_the_wait_in_whole_seconds() {
        let start = Instant::now();
        let mut quota = MinuteQuota::new(2);
        assert_eq!(quota.admit(start), Ok(()));
        assert_eq!(quota.admit(start + Duration::from_millis(30_500)), Ok(()));
        // The first leaves the minute at 60 s: 28.5 s away, rounded up.
        assert_eq!(quota.admit(start + Duration::from_millis(31_500)), Err(29));
        assert_eq!(quota.admit(start + Duration::from_millis(59_900)), Err(1));
        assert_eq!(quota.admit(start + Duration::from_secs(60)), Ok(()));
    }
}
