//! One simulated model's state, and what it answers to a request: a quota refusal, a
//! scripted or random error, or a reply (possibly with a fault), with its timing.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{Fault, FaultRates, Latency, ModelConfig, Step};
use crate::quota::{Quotas, Refusal};
use crate::text::{estimate_tokens, filler, first_tokens};

/// A draw from a log-normal tail is capped at this many times the p95, so one unlucky draw
/// cannot hold a request for minutes.
const LOGNORMAL_CAP: f64 = 4.0;

/// The z-score of the 95th percentile of a standard normal distribution.
const Z_P95: f64 = 1.644_853_6;

/// What a request is answered with.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A quota is exhausted: HTTP 429 at once.
    Refused(Refusal),
    /// An HTTP error after `latency`.
    Error {
        status: u16,
        retry_after: Option<u64>,
        message: String,
        latency: Duration,
    },
    Reply(Reply),
}

/// A successful reply and how it is delivered.
#[derive(Debug)]
pub(crate) struct Reply {
    pub text: String,
    /// `stop`, or `length` when the request's `max_tokens` cut the text.
    pub finish_reason: &'static str,
    pub fault: Option<Fault>,
    /// Time to the first token.
    pub latency: Duration,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// What one request is answered with, and the rate-limit headers that go with it.
#[derive(Debug)]
pub(crate) struct Decision {
    pub answer: Answer,
    pub headers: Vec<(&'static str, String)>,
}

/// What the request asks for, as far as the model's choice goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked {
    pub prompt_tokens: u64,
    pub max_tokens: Option<u64>,
    pub stream: bool,
}

#[derive(Debug)]
struct State {
    rng: fastrand::Rng,
    quotas: Quotas,
    script: VecDeque<Step>,
    /// Index of the next scripted reply file.
    next_reply: usize,
}

#[derive(Debug)]
pub(crate) struct Model {
    pub config: ModelConfig,
    state: Mutex<State>,
}

impl Model {
    /// The model's random draws start from `seed`, so each model's answers depend only on the
    /// requests it gets, not on those other models get.
    pub(crate) fn new(config: ModelConfig, seed: u64) -> Model {
        let state = State {
            rng: fastrand::Rng::with_seed(seed),
            quotas: Quotas::new(config.limits),
            script: config.script.iter().cloned().collect(),
            next_reply: 0,
        };
        Model {
            config,
            state: Mutex::new(state),
        }
    }

    /// Decides the answer to a request arriving at `now`: the quotas first (a refused request
    /// consumes no script step), then the model's script, then `shared_script`, then the
    /// configured error rates and faults.
    pub(crate) fn decide(
        &self,
        asked: Asked,
        shared_script: &Mutex<VecDeque<Step>>,
        now: Instant,
    ) -> Decision {
        let mut state = lock(&self.state);
        if let Err(refusal) = state.quotas.admit(now, asked.prompt_tokens) {
            return Decision {
                answer: Answer::Refused(refusal),
                headers: state.quotas.headers(now),
            };
        }
        // Lock order: a model's state, then the shared script (and never the other way).
        let step = state
            .script
            .pop_front()
            .or_else(|| lock(shared_script).pop_front());
        let latency = draw_latency(self.config.latency, &mut state.rng);
        let (text, fault) = match step {
            Some(Step::Error {
                status,
                retry_after,
                message,
            }) => {
                let message =
                    message.unwrap_or_else(|| format!("scripted HTTP {status} from pitcrew-sim"));
                return error_decision(&mut state, now, status, retry_after, message, latency);
            }
            Some(Step::Reply { text, fault }) => {
                let text = text.unwrap_or_else(|| self.next_text(&mut state));
                (text, fault)
            }
            None => {
                if let Some(status) = draw_error(&self.config.errors, &mut state.rng) {
                    let message = random_error_message(status);
                    // A client told to wait after a 429 needs to hear how long.
                    let retry_after = (status == 429).then_some(1);
                    return error_decision(&mut state, now, status, retry_after, message, latency);
                }
                let fault = if asked.stream {
                    draw_fault(self.config.faults, &mut state.rng)
                } else {
                    None
                };
                (self.next_text(&mut state), fault)
            }
        };
        let (text, cut) = match asked.max_tokens {
            Some(max) => first_tokens(&text, max),
            None => (text.as_str(), false),
        };
        let completion_tokens = estimate_tokens(text);
        state.quotas.add_completion(now, completion_tokens);
        let reply = Reply {
            text: text.to_string(),
            finish_reason: if cut { "length" } else { "stop" },
            fault,
            latency,
            prompt_tokens: asked.prompt_tokens,
            completion_tokens,
        };
        Decision {
            answer: Answer::Reply(reply),
            headers: state.quotas.headers(now),
        }
    }

    /// The next reply file in turn (cycling), or filler text when there are none.
    fn next_text(&self, state: &mut State) -> String {
        let replies = &self.config.replies;
        if replies.is_empty() {
            return filler(&mut state.rng, self.config.filler_tokens);
        }
        let text = replies[state.next_reply % replies.len()].clone();
        state.next_reply = (state.next_reply + 1) % replies.len();
        text
    }
}

/// An HTTP error after `latency`, with the quota headers as they stand.
fn error_decision(
    state: &mut State,
    now: Instant,
    status: u16,
    retry_after: Option<u64>,
    message: String,
    latency: Duration,
) -> Decision {
    Decision {
        answer: Answer::Error {
            status,
            retry_after,
            message,
            latency,
        },
        headers: state.quotas.headers(now),
    }
}

/// A panic while a lock was held cannot leave the state half-changed in a way that matters
/// more than serving on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn draw_latency(latency: Latency, rng: &mut fastrand::Rng) -> Duration {
    match latency {
        Latency::Fixed(fixed) => fixed,
        Latency::Uniform { min, max } => min + (max - min).mul_f64(rng.f64()),
        Latency::LogNormal { median, p95 } => {
            let median = median.as_secs_f64();
            let p95 = p95.as_secs_f64();
            let sigma = (p95 / median).ln() / Z_P95;
            // Box–Muller; `1 - f64()` is in (0, 1], so the logarithm is finite.
            let z =
                (-2.0 * (1.0 - rng.f64()).ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos();
            let seconds = (median * (sigma * z).exp()).min(p95 * LOGNORMAL_CAP);
            Duration::from_secs_f64(seconds)
        }
    }
}

/// The status of a random error, if this request draws one.
fn draw_error(errors: &[(u16, f64)], rng: &mut fastrand::Rng) -> Option<u16> {
    if errors.is_empty() {
        return None;
    }
    let roll = rng.f64();
    let mut below = 0.0;
    errors.iter().find_map(|&(status, rate)| {
        below += rate;
        (roll < below).then_some(status)
    })
}

/// The fault of a streamed reply, if this request draws one.
fn draw_fault(rates: FaultRates, rng: &mut fastrand::Rng) -> Option<Fault> {
    let roll = rng.f64();
    let mut below = 0.0;
    [
        (Fault::Disconnect, rates.disconnect),
        (Fault::Truncate, rates.truncate),
        (Fault::Stall, rates.stall),
        (Fault::Malformed, rates.malformed),
    ]
    .into_iter()
    .find_map(|(fault, rate)| {
        below += rate;
        (roll < below).then_some(fault)
    })
}

/// What a random error says. Kept free of words such as "quota" or "context length", which
/// clients read as a different kind of failure.
fn random_error_message(status: u16) -> String {
    match status {
        429 => "Rate limit reached (simulated by pitcrew-sim); please try again in 1s".into(),
        500..=599 => format!("The server had an error (simulated HTTP {status} by pitcrew-sim)"),
        _ => format!("Request rejected (simulated HTTP {status} by pitcrew-sim)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_draws_stay_in_their_shape() {
        let mut rng = fastrand::Rng::with_seed(1);
        let ms = Duration::from_millis;
        assert_eq!(draw_latency(Latency::Fixed(ms(30)), &mut rng), ms(30));
        let uniform = Latency::Uniform {
            min: ms(100),
            max: ms(200),
        };
        let lognormal = Latency::LogNormal {
            median: ms(100),
            p95: ms(400),
        };
        let mut draws: Vec<Duration> = (0..2000)
            .map(|_| draw_latency(lognormal, &mut rng))
            .collect();
        draws.sort();
        let median = draws[1000];
        let p95 = draws[1900];
        assert!(ms(85) < median && median < ms(115), "median {median:?}");
        assert!(ms(320) < p95 && p95 < ms(500), "p95 {p95:?}");
        assert!(draws[1999] <= ms(1600));
        for _ in 0..100 {
            let d = draw_latency(uniform, &mut rng);
            assert!(ms(100) <= d && d <= ms(200));
        }
    }

    #[test]
    fn rates_pick_each_outcome_about_as_often_as_configured() {
        let mut rng = fastrand::Rng::with_seed(3);
        let errors = [(500, 0.2), (503, 0.1)];
        let draws: Vec<Option<u16>> = (0..10_000).map(|_| draw_error(&errors, &mut rng)).collect();
        let count = |s| draws.iter().filter(|d| **d == Some(s)).count();
        assert!((1800..2200).contains(&count(500)), "{}", count(500));
        assert!((850..1150).contains(&count(503)), "{}", count(503));
        assert_eq!(draw_fault(FaultRates::default(), &mut rng), None);
        let always = FaultRates {
            malformed: 1.0,
            ..FaultRates::default()
        };
        assert_eq!(draw_fault(always, &mut rng), Some(Fault::Malformed));
    }
}
