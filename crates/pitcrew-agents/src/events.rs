//! Reading OpenHands' events: the CLI's stdout stream ([`StreamParser`]), one event's
//! meaning ([`classify`]), and what a sequence of them adds up to ([`Tracker`]).
//!
//! Two event shapes exist, and both are read:
//!
//! - **OpenHands V1** (the `openhands` CLI on the `openhands-sdk`): every event is a
//!   pydantic model dumped with a `kind` discriminator: `ActionEvent` (with `action.kind`,
//!   e.g. `TerminalAction`, `FileEditorAction`, `FinishAction` with `action.message`),
//!   `ObservationEvent`, `UserRejectObservation`, `AgentErrorEvent` (`error`; a tool-level
//!   error the agent may recover from), `ConversationErrorEvent` (`code`, `detail`; the run
//!   loop stopped), `ConversationIterationLimitEvent`, `MessageEvent` (`source`,
//!   `llm_message.content[].text`; an agent message without a tool call ends the run as
//!   finished), `Condensation`, `CondensationRequest`, `CondensationSummaryEvent`,
//!   `ConversationStateUpdateEvent` (`key` = `execution_status` with values such as
//!   `finished`, `error`, `stuck`, or `full_state`). Sources: `openhands-sdk/openhands/sdk/
//!   event/*.py` and `conversation/state.py` in `OpenHands/software-agent-sdk`.
//! - **OpenHands V0** (`python -m openhands.core.main`, the Docker image up to 0.59): the
//!   trajectory saved at `SAVE_TRAJECTORY_PATH` is a JSON array of `event_to_trajectory`
//!   dicts: actions `{"action": "run" | "edit" | "finish" | "condensation" | ..., "args":
//!   {...}}` and observations `{"observation": "run" | "error" | "agent_state_changed" |
//!   ..., "content": "...", "extras": {...}}` (`extras.agent_state` is the agent's state,
//!   e.g. `finished`, `error`). Source: `openhands/events/serialization/event.py` and
//!   `openhands/core/main.py` in `All-Hands-AI/OpenHands`.
//!
//! How the CLI prints events with `--headless --json` is not settled: the CLI's
//! `json_callback.py` (`OpenHands/OpenHands-CLI`) prints a line `--JSON Event--` followed by
//! the event as indented, multi-line JSON, while its documentation
//! (docs.openhands.dev, "Headless Mode") describes JSON Lines. [`StreamParser`] reads both,
//! and keeps any other line as text. Anything unrecognised is kept in the transcript as it
//! is; nothing here fails on an unexpected shape.

use serde_json::Value;

/// The marker line the CLI prints before each event.
pub(crate) const EVENT_MARKER: &str = "--JSON Event--";

/// The most an event printed over several lines may hold before it is given up on.
const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024;

/// One item of the CLI's stdout: an event, or a line of text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Event(Value),
    Text(String),
}

/// Turns stdout lines into events and text.
#[derive(Debug, Default)]
pub(crate) struct StreamParser {
    /// Lines of an event printed after [`EVENT_MARKER`], not yet complete.
    block: Option<Vec<String>>,
    block_bytes: usize,
}

impl StreamParser {
    /// What `line` completes, if anything.
    pub(crate) fn push(&mut self, line: &str) -> Vec<Item> {
        let mut out = Vec::new();
        if line.trim() == EVENT_MARKER {
            out.extend(self.flush());
            self.block = Some(Vec::new());
            self.block_bytes = 0;
            return out;
        }
        if let Some(block) = &mut self.block {
            if block.is_empty() {
                // A marker followed by a one-line event.
                if let Some(event) = json_object(line) {
                    self.block = None;
                    out.push(Item::Event(event));
                    return out;
                }
                if line.trim().is_empty() {
                    return out;
                }
                if !line.trim_start().starts_with('{') {
                    self.block = None;
                    out.push(Item::Text(line.to_owned()));
                    return out;
                }
            }
            block.push(line.to_owned());
            self.block_bytes += line.len() + 1;
            // `json.dumps(indent=2)` closes the top-level object with `}` alone at column 0;
            // a `}` inside a string is escaped onto the same line, never alone.
            if line == "}" {
                let text = block.join("\n");
                if let Some(event) = json_object(&text) {
                    self.block = None;
                    out.push(Item::Event(event));
                    return out;
                }
            }
            if self.block_bytes > MAX_BLOCK_BYTES {
                out.extend(self.flush());
            }
            return out;
        }
        match json_object(line) {
            Some(event) => out.push(Item::Event(event)),
            None => out.push(Item::Text(line.to_owned())),
        }
        out
    }

    /// Whatever is left at the end of the stream: an unfinished event is kept as text.
    pub(crate) fn flush(&mut self) -> Vec<Item> {
        match self.block.take() {
            Some(lines) if !lines.is_empty() => vec![Item::Text(lines.join("\n"))],
            _ => Vec::new(),
        }
    }
}

fn json_object(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    serde_json::from_str::<Value>(trimmed)
        .ok()
        .filter(Value::is_object)
}

/// What one event means for the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Informational.
    None,
    /// The agent acted; the fingerprint (the action without ids, timestamps or thoughts)
    /// tells identical actions apart from different ones.
    Action(String),
    /// The conversation's history was condensed.
    Condensation,
    /// The agent said it is done, with its final message if any.
    Finish(Option<String>),
    /// A message of the agent's own (V1 ends a run on one without a tool call).
    AgentMessage(String),
    /// An error the agent may still recover from.
    Error(String),
    /// The run loop stopped on an error.
    Fatal(String),
    /// OpenHands itself judged the agent stuck.
    Stuck(String),
}

/// One event, classified: the transcript kind, a readable text, and its signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Classified {
    pub(crate) kind: &'static str,
    pub(crate) text: String,
    pub(crate) signal: Signal,
}

impl Classified {
    fn new(kind: &'static str, text: impl Into<String>, signal: Signal) -> Self {
        Self {
            kind,
            text: text.into(),
            signal,
        }
    }
}

/// Classifies one event of either shape (see the module documentation).
pub(crate) fn classify(event: &Value) -> Classified {
    if let Some(kind) = event.get("kind").and_then(Value::as_str) {
        return classify_v1(kind, event);
    }
    if let Some(action) = event.get("action").and_then(Value::as_str) {
        return classify_v0_action(action, event);
    }
    if let Some(observation) = event.get("observation").and_then(Value::as_str) {
        return classify_v0_observation(observation, event);
    }
    Classified::new("event", compact(event), Signal::None)
}

fn classify_v1(kind: &str, event: &Value) -> Classified {
    let text_of = |key: &str| str_at(event, key).unwrap_or_default().to_owned();
    match kind {
        "ActionEvent" => {
            let action = event.get("action").unwrap_or(&Value::Null);
            let action_kind = str_at(action, "kind").unwrap_or_default();
            let tool = str_at(event, "tool_name").unwrap_or(action_kind);
            if action_kind == "FinishAction" || tool == "finish" {
                let message = str_at(action, "message").map(str::to_owned);
                return Classified::new(
                    "finish",
                    message.clone().unwrap_or_default(),
                    Signal::Finish(message),
                );
            }
            let detail = ["command", "path", "code"]
                .iter()
                .find_map(|k| str_at(action, k))
                .map_or_else(|| compact(action), str::to_owned);
            Classified::new(
                "action",
                format!("{tool}: {detail}"),
                Signal::Action(format!("{tool} {}", compact(action))),
            )
        }
        "ObservationEvent" => {
            let observation = event.get("observation").unwrap_or(&Value::Null);
            let text = content_text(observation.get("content"))
                .or_else(|| str_at(observation, "output").map(str::to_owned))
                .unwrap_or_else(|| compact(observation));
            Classified::new("observation", text, Signal::None)
        }
        "UserRejectObservation" => {
            Classified::new("observation", text_of("rejection_reason"), Signal::None)
        }
        "AgentErrorEvent" => {
            let error = text_of("error");
            Classified::new("error", error.clone(), Signal::Error(error))
        }
        "ConversationErrorEvent" => {
            let text = format!("{}: {}", text_of("code"), text_of("detail"));
            Classified::new("error", text.clone(), Signal::Fatal(text))
        }
        "ConversationIterationLimitEvent" => {
            let text = format!("iteration limit reached: {}", text_of("detail"));
            Classified::new("error", text.clone(), Signal::Fatal(text))
        }
        "Condensation" => Classified::new(
            "condensation",
            str_at(event, "summary").unwrap_or("condensed the history"),
            Signal::Condensation,
        ),
        "CondensationRequest" | "CondensationSummaryEvent" => Classified::new(
            "condensation",
            str_at(event, "summary").unwrap_or(kind),
            Signal::None,
        ),
        "MessageEvent" => {
            let text = content_text(event.pointer("/llm_message/content")).unwrap_or_default();
            if str_at(event, "source") == Some("agent") {
                Classified::new("message", text.clone(), Signal::AgentMessage(text))
            } else {
                Classified::new("message", text, Signal::None)
            }
        }
        "ConversationStateUpdateEvent" => {
            let status = match str_at(event, "key") {
                Some("execution_status") => event.get("value").and_then(Value::as_str),
                Some("full_state") => event
                    .pointer("/value/execution_status")
                    .and_then(Value::as_str),
                _ => None,
            };
            let text = format!(
                "state {}",
                compact(event.get("value").unwrap_or(&Value::Null))
            );
            let signal = match status {
                Some("finished") => Signal::Finish(None),
                Some("error") => Signal::Fatal("the conversation ended in state `error`".into()),
                Some("stuck") => Signal::Stuck("OpenHands found the agent stuck".into()),
                _ => Signal::None,
            };
            Classified::new("state", text, signal)
        }
        _ => Classified::new("event", format!("{kind}: {}", compact(event)), Signal::None),
    }
}

fn classify_v0_action(action: &str, event: &Value) -> Classified {
    let args = event.get("args").unwrap_or(&Value::Null);
    match action {
        "finish" => {
            let message = ["final_thought", "thought"]
                .iter()
                .find_map(|k| str_at(args, k))
                .or_else(|| str_at(event, "message"))
                .filter(|m| !m.is_empty())
                .map(str::to_owned);
            Classified::new(
                "finish",
                message.clone().unwrap_or_default(),
                Signal::Finish(message),
            )
        }
        "condensation" => Classified::new(
            "condensation",
            str_at(args, "summary").unwrap_or("condensed the history"),
            Signal::Condensation,
        ),
        "condensation_request" => Classified::new("condensation", action, Signal::None),
        "message" => Classified::new(
            "message",
            str_at(args, "content").unwrap_or_default(),
            Signal::None,
        ),
        _ => {
            let mut stable = args.clone();
            if let Some(map) = stable.as_object_mut() {
                for volatile in [
                    "thought",
                    "security_risk",
                    "is_confirmed",
                    "confirmation_state",
                ] {
                    map.remove(volatile);
                }
            }
            let detail = ["command", "path", "code", "url"]
                .iter()
                .find_map(|k| str_at(args, k))
                .map_or_else(|| compact(&stable), str::to_owned);
            Classified::new(
                "action",
                format!("{action}: {detail}"),
                Signal::Action(format!("{action} {}", compact(&stable))),
            )
        }
    }
}

fn classify_v0_observation(observation: &str, event: &Value) -> Classified {
    let content = str_at(event, "content").unwrap_or_default().to_owned();
    match observation {
        "error" => Classified::new("error", content.clone(), Signal::Error(content)),
        "agent_state_changed" => {
            let state = event
                .pointer("/extras/agent_state")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let reason = event
                .pointer("/extras/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty());
            let text = match reason {
                Some(reason) => format!("agent state {state}: {reason}"),
                None => format!("agent state {state}"),
            };
            let signal = match state {
                "finished" => Signal::Finish(None),
                "error" | "stopped" | "rejected" => Signal::Fatal(text.clone()),
                _ => Signal::None,
            };
            Classified::new("state", text, signal)
        }
        _ => Classified::new("observation", content, Signal::None),
    }
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// The text of a V1 content list (`[{"type": "text", "text": ...}, ...]`) or string.
fn content_text(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let texts: Vec<&str> = items
                .iter()
                .filter_map(|item| item.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.join("\n"))
        }
        _ => None,
    }
}

/// One line of JSON with keys in order (`serde_json`'s map is sorted), so equal actions
/// print equally.
fn compact(value: &Value) -> String {
    value.to_string()
}

/// What a run's events add up to, and whether it is stuck.
#[derive(Debug)]
pub(crate) struct Tracker {
    stuck_after: u32,
    pub(crate) events: usize,
    last_action: Option<String>,
    same_actions: u32,
    condensations: u32,
    state: State,
    /// The agent's latest message or finish text.
    summary: Option<String>,
    stuck: Option<String>,
}

/// Where the run stands, from the events so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    Running,
    Finished,
    /// An error no finish has followed yet.
    Errored(String),
    /// The run loop stopped on an error; nothing undoes this.
    Fatal(String),
}

impl Tracker {
    pub(crate) fn new(stuck_after: u32) -> Self {
        Self {
            stuck_after: stuck_after.max(2),
            events: 0,
            last_action: None,
            same_actions: 0,
            condensations: 0,
            state: State::Running,
            summary: None,
            stuck: None,
        }
    }

    /// Takes one event into account; returns why the run is stuck once it is.
    pub(crate) fn observe(&mut self, signal: &Signal) -> Option<&str> {
        self.events += 1;
        match signal {
            Signal::None => {}
            Signal::Action(fingerprint) => {
                self.condensations = 0;
                if self.last_action.as_deref() == Some(fingerprint) {
                    self.same_actions += 1;
                } else {
                    self.last_action = Some(fingerprint.clone());
                    self.same_actions = 1;
                }
                if self.same_actions >= self.stuck_after && self.stuck.is_none() {
                    self.stuck = Some(format!(
                        "the same action {} times in a row: {}",
                        self.same_actions,
                        cut(fingerprint, 300)
                    ));
                }
            }
            Signal::Condensation => {
                self.condensations += 1;
                if self.condensations >= self.stuck_after && self.stuck.is_none() {
                    self.stuck = Some(format!(
                        "{} condensations of its history in a row without an action",
                        self.condensations
                    ));
                }
            }
            Signal::Finish(message) => {
                if let Some(message) = message.as_ref().filter(|m| !m.trim().is_empty()) {
                    self.summary = Some(message.clone());
                }
                if !matches!(self.state, State::Fatal(_)) {
                    self.state = State::Finished;
                }
            }
            Signal::AgentMessage(text) => {
                self.condensations = 0;
                if !text.trim().is_empty() {
                    self.summary = Some(text.clone());
                }
                // V1 ends a run on a message without a tool call; after an error that no
                // finish followed, the error stands.
                if self.state == State::Running {
                    self.state = State::Finished;
                }
            }
            Signal::Error(message) => {
                if !matches!(self.state, State::Fatal(_)) {
                    self.state = State::Errored(message.clone());
                }
            }
            Signal::Fatal(message) => {
                if is_stuck_message(message) && self.stuck.is_none() {
                    self.stuck = Some(message.clone());
                }
                if !matches!(self.state, State::Fatal(_)) {
                    self.state = State::Fatal(message.clone());
                }
            }
            Signal::Stuck(message) => {
                if self.stuck.is_none() {
                    self.stuck = Some(message.clone());
                }
            }
        }
        self.stuck.as_deref()
    }

    pub(crate) fn stuck(&self) -> Option<&str> {
        self.stuck.as_deref()
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    pub(crate) fn summary(&self) -> Option<&str> {
        self.summary.as_deref()
    }
}

/// V0's controller reports its own loop detection as an error (`AgentStuckInLoopError`).
fn is_stuck_message(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("stuck in a loop") || lower.contains("agentstuckinlooperror")
}

/// `text` cut to at most `max` bytes (on a character boundary), marked when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &text[..end], text.len() - end)
}

/// The events of a V0 trajectory file: a JSON array, or an object holding one under
/// `history`, `events` or `trajectory`. `None` when the text is not such JSON.
pub(crate) fn trajectory_events(text: &str) -> Option<Vec<Value>> {
    match serde_json::from_str::<Value>(text).ok()? {
        Value::Array(events) => Some(events),
        Value::Object(mut map) => {
            ["history", "events", "trajectory"]
                .iter()
                .find_map(|k| match map.remove(*k) {
                    Some(Value::Array(events)) => Some(events),
                    _ => None,
                })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lines(parser: &mut StreamParser, text: &str) -> Vec<Item> {
        let mut items: Vec<Item> = text.lines().flat_map(|l| parser.push(l)).collect();
        items.extend(parser.flush());
        items
    }

    #[test]
    fn marker_blocks_json_lines_and_text_are_told_apart() {
        let pretty = serde_json::to_string_pretty(&json!({
            "kind": "ActionEvent",
            "action": {"kind": "TerminalAction", "command": "echo '}' {"},
            "tool_name": "terminal",
        }))
        .unwrap();
        let stream = format!(
            "Agent is working\n{EVENT_MARKER}\n{pretty}\n{{\"kind\": \"Condensation\"}}\n\
             {EVENT_MARKER}\n{{\"kind\": \"MessageEvent\"}}\nplain {{ text\n{EVENT_MARKER}\n{{\n  \"cut\": "
        );
        let items = lines(&mut StreamParser::default(), &stream);
        assert_eq!(items.len(), 6, "{items:#?}");
        assert_eq!(items[0], Item::Text("Agent is working".into()));
        assert!(matches!(&items[1], Item::Event(e) if e["action"]["command"] == "echo '}' {"));
        assert!(matches!(&items[2], Item::Event(e) if e["kind"] == "Condensation"));
        assert!(matches!(&items[3], Item::Event(e) if e["kind"] == "MessageEvent"));
        assert_eq!(items[4], Item::Text("plain { text".into()));
        assert_eq!(
            items[5],
            Item::Text("{\n  \"cut\": ".into()),
            "unfinished: text"
        );
    }

    #[test]
    fn a_marker_followed_by_text_keeps_the_text() {
        let items = lines(
            &mut StreamParser::default(),
            &format!("{EVENT_MARKER}\nGoodbye\n[1, 2]"),
        );
        assert_eq!(
            items,
            [Item::Text("Goodbye".into()), Item::Text("[1, 2]".into())]
        );
    }

    #[test]
    fn v1_events_are_classified() {
        let finish = classify(&json!({
            "kind": "ActionEvent", "tool_name": "finish",
            "action": {"kind": "FinishAction", "message": "done: added tests"}
        }));
        assert_eq!(finish.kind, "finish");
        assert_eq!(
            finish.signal,
            Signal::Finish(Some("done: added tests".into()))
        );

        let run = |id: &str| {
            classify(&json!({
                "kind": "ActionEvent", "id": id, "timestamp": id, "thought": [id],
                "tool_name": "terminal", "action": {"kind": "TerminalAction", "command": "ls"}
            }))
        };
        assert_eq!(run("a").text, "terminal: ls");
        assert_eq!(
            run("a").signal,
            run("b").signal,
            "ids do not make actions differ"
        );

        let obs = classify(&json!({
            "kind": "ObservationEvent",
            "observation": {"kind": "TerminalObservation", "content": [{"type": "text", "text": "a.py"}]}
        }));
        assert_eq!((obs.kind, obs.text.as_str()), ("observation", "a.py"));
        assert!(matches!(
            classify(&json!({"kind": "AgentErrorEvent", "error": "bad tool"})).signal,
            Signal::Error(e) if e == "bad tool"
        ));
        assert!(matches!(
            classify(&json!({"kind": "ConversationErrorEvent", "code": "LLMError", "detail": "401"})).signal,
            Signal::Fatal(e) if e == "LLMError: 401"
        ));
        assert_eq!(
            classify(&json!({"kind": "Condensation"})).signal,
            Signal::Condensation
        );
        assert_eq!(
            classify(&json!({"kind": "CondensationRequest"})).signal,
            Signal::None
        );
        assert!(matches!(
            classify(&json!({"kind": "MessageEvent", "source": "agent",
                "llm_message": {"role": "assistant", "content": [{"type": "text", "text": "all done"}]}})).signal,
            Signal::AgentMessage(t) if t == "all done"
        ));
        assert_eq!(
            classify(&json!({"kind": "ConversationStateUpdateEvent", "key": "execution_status", "value": "stuck"})).signal,
            Signal::Stuck("OpenHands found the agent stuck".into())
        );
        assert_eq!(
            classify(
                &json!({"kind": "ConversationStateUpdateEvent", "key": "full_state",
                "value": {"execution_status": "finished"}})
            )
            .signal,
            Signal::Finish(None)
        );
        let unknown = classify(&json!({"kind": "SomethingNew", "x": 1}));
        assert_eq!((unknown.kind, unknown.signal), ("event", Signal::None));
        assert!(unknown.text.contains("SomethingNew"));
        assert_eq!(classify(&json!({"what": 1})).kind, "event");
    }

    #[test]
    fn v0_events_are_classified() {
        assert_eq!(
            classify(&json!({"action": "finish", "args": {"final_thought": "ok"}})).signal,
            Signal::Finish(Some("ok".into()))
        );
        assert_eq!(
            classify(&json!({"action": "condensation", "args": {}})).signal,
            Signal::Condensation
        );
        let a = classify(&json!({"action": "run", "args": {"command": "ls", "thought": "x"}}));
        let b = classify(&json!({"action": "run", "args": {"command": "ls", "thought": "y"}}));
        assert_eq!(a.text, "run: ls");
        assert_eq!(a.signal, b.signal);
        assert!(matches!(
            classify(&json!({"observation": "error", "content": "boom"})).signal,
            Signal::Error(e) if e == "boom"
        ));
        assert!(matches!(
            classify(&json!({"observation": "agent_state_changed", "content": "",
                "extras": {"agent_state": "error", "reason": "AgentStuckInLoopError: stuck in a loop"}})).signal,
            Signal::Fatal(_)
        ));
        assert_eq!(
            classify(&json!({"observation": "agent_state_changed", "extras": {"agent_state": "finished"}})).signal,
            Signal::Finish(None)
        );
    }

    #[test]
    fn the_tracker_finds_loops_and_the_outcome() {
        let act = |c: &str| Signal::Action(c.into());
        let mut t = Tracker::new(3);
        assert_eq!(t.observe(&act("ls")), None);
        assert_eq!(
            t.observe(&Signal::None),
            None,
            "observations do not break a run"
        );
        assert_eq!(t.observe(&act("ls")), None);
        assert_eq!(
            t.observe(&act("cat")),
            None,
            "a different action restarts the count"
        );
        assert_eq!(t.observe(&act("cat")), None);
        assert!(t.observe(&act("cat")).unwrap().contains("3 times"));

        let mut t = Tracker::new(3);
        t.observe(&Signal::Condensation);
        t.observe(&Signal::Condensation);
        t.observe(&act("ls"));
        t.observe(&Signal::Condensation);
        assert_eq!(t.stuck(), None, "an action breaks a run of condensations");
        t.observe(&Signal::Condensation);
        assert!(
            t.observe(&Signal::Condensation)
                .unwrap()
                .contains("3 condensations")
        );

        let mut t = Tracker::new(3);
        t.observe(&Signal::Error("tool failed".into()));
        assert_eq!(t.state(), &State::Errored("tool failed".into()));
        t.observe(&Signal::AgentMessage("gave up".into()));
        assert_eq!(
            t.state(),
            &State::Errored("tool failed".into()),
            "a message does not undo an error"
        );
        t.observe(&Signal::Finish(Some("fixed it".into())));
        assert_eq!(
            (t.state(), t.summary()),
            (&State::Finished, Some("fixed it"))
        );
        t.observe(&Signal::Fatal("LLM down".into()));
        t.observe(&Signal::Finish(None));
        assert_eq!(
            t.state(),
            &State::Fatal("LLM down".into()),
            "fatal is final"
        );

        let mut t = Tracker::new(3);
        t.observe(&Signal::Fatal(
            "agent state error: AgentStuckInLoopError".into(),
        ));
        assert!(t.stuck().is_some());
    }

    #[test]
    fn trajectories_are_arrays_or_wrapped_arrays() {
        assert_eq!(trajectory_events("[{\"a\": 1}]").unwrap().len(), 1);
        assert_eq!(trajectory_events("{\"history\": [1, 2]}").unwrap().len(), 2);
        assert_eq!(trajectory_events("{\"x\": 1}"), None);
        assert_eq!(trajectory_events("not json"), None);
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("ééé", 3), "é… [4 bytes cut]");
    }
}
