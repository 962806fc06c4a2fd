//! The agent's chat request, read leniently (agents and their SDKs disagree on the details)
//! but never silently changed in meaning: tools and tool calls are translated into text (see
//! [`crate::tools`]); anything else the router cannot relay (images, several choices) is
//! refused with a message saying what to turn off.

use pitcrew_llm::{Message, Role};
use serde_json::Value;

use crate::tools::{self, BadTools, CallNames, Toolbox};

/// The most characters of the asked-for model name kept for logs.
const MODEL_NAME_CHARS: usize = 200;

/// A chat request the gateway can relay.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChatCall {
    pub messages: Vec<Message>,
    /// The model the agent asked for: logged, never used for routing (pitcrew chooses).
    pub model: Option<String>,
    pub temperature: Option<f64>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u32>,
    pub stream: bool,
    /// The functions offered, already described in the system message; the reply is read
    /// for a call to one of them. `None` when none are offered or `tool_choice` is "none".
    pub tools: Option<Toolbox>,
}

/// Why a request cannot be relayed (answered 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body must be a JSON object")]
    NotObject,
    #[error("`messages` must be a non-empty array of messages")]
    NoMessages,
    #[error(transparent)]
    Tools(#[from] BadTools),
    #[error(
        "messages[{index}]: unknown role `{role}` (system, developer, user, assistant, tool \
         and function are relayed)"
    )]
    Role { index: usize, role: String },
    #[error(
        "messages[{index}]: content part of type `{kind}`: this gateway relays text parts only"
    )]
    Part { index: usize, kind: String },
    #[error("messages[{index}]: `content` must be a string or an array of text parts")]
    Content { index: usize },
    #[error("`{field}` must be {what}")]
    Field {
        field: &'static str,
        what: &'static str,
    },
    #[error("`n` = {0}: this gateway returns exactly one choice")]
    Choices(String),
}

impl Invalid {
    /// The OpenAI `param` the error is about, when there is one.
    pub(crate) fn param(&self) -> Option<String> {
        match self {
            Invalid::NotJson(_) | Invalid::NotObject => None,
            Invalid::NoMessages => Some("messages".into()),
            Invalid::Tools(bad) => Some(bad.param()),
            Invalid::Role { index, .. } => Some(format!("messages[{index}].role")),
            Invalid::Part { index, .. } | Invalid::Content { index } => {
                Some(format!("messages[{index}].content"))
            }
            Invalid::Field { field, .. } => Some((*field).into()),
            Invalid::Choices(_) => Some("n".into()),
        }
    }
}

/// Reads a `/chat/completions` body. `stop`, `response_format`, `stream_options`, `user`,
/// `seed` and other fields the router has no use for are accepted and ignored: the router
/// sends no stop sequences, so a reply may run past one (agents cut their own stop markers).
pub(crate) fn parse(body: &[u8]) -> Result<ChatCall, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Invalid::NotJson(e.to_string()))?;
    let Value::Object(body) = value else {
        return Err(Invalid::NotObject);
    };
    let tools = Toolbox::read(&body)?;
    let messages = match body.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        _ => return Err(Invalid::NoMessages),
    };
    // Tool calls and results in the history are written as text whether or not tools are
    // offered now: they are part of what happened.
    let mut names = CallNames::default();
    let mut messages = messages
        .iter()
        .enumerate()
        .map(|(index, message)| read_message(index, message, &mut names))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(tools) = &tools {
        describe_tools(&mut messages, tools);
    }

    let temperature = match body.get("temperature") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => Some(t),
            _ => return Err(field("temperature", "a number from 0 to 2")),
        },
        Some(_) => return Err(field("temperature", "a number from 0 to 2")),
    };
    let max_tokens = match read_tokens(&body, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => read_tokens(&body, "max_tokens")?,
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err(field("stream", "true or false")),
    };
    match body.get("n") {
        None | Some(Value::Null) => {}
        Some(n) if n.as_f64() == Some(1.0) => {}
        Some(n) => return Err(Invalid::Choices(n.to_string())),
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .map(|m| shown(m, MODEL_NAME_CHARS));
    Ok(ChatCall {
        messages,
        model,
        temperature,
        max_tokens,
        stream,
        tools,
    })
}

/// Appends the functions' description to the first system message, or adds one.
fn describe_tools(messages: &mut Vec<Message>, tools: &Toolbox) {
    let instructions = tools.instructions();
    match messages.iter_mut().find(|m| m.role == Role::System) {
        Some(system) if system.content.trim().is_empty() => system.content = instructions,
        Some(system) => {
            system.content.push_str("\n\n");
            system.content.push_str(&instructions);
        }
        None => messages.insert(0, Message::system(instructions)),
    }
}

/// An agent's string as pitcrew may repeat it: registered secrets redacted (before it is
/// cut, so no prefix of one survives) and at most `chars` characters.
fn shown(text: &str, chars: usize) -> String {
    pitcrew_core::redact(text).chars().take(chars).collect()
}

fn field(field: &'static str, what: &'static str) -> Invalid {
    Invalid::Field { field, what }
}

fn read_tokens(
    body: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<u32>, Invalid> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t >= 1.0 && t.fract() == 0.0 => {
                Ok(Some(u32::try_from(t as u64).unwrap_or(u32::MAX)))
            }
            _ => Err(field(name, "a whole number of at least 1")),
        },
        Some(_) => Err(field(name, "a whole number of at least 1")),
    }
}

/// One message as text. An assistant's `tool_calls` (legacy `function_call`) are written
/// after its words in the calling convention; a `tool` (legacy `function`) result becomes a
/// user message naming the function it answers.
fn read_message(index: usize, message: &Value, names: &mut CallNames) -> Result<Message, Invalid> {
    let role = message.get("role").and_then(Value::as_str).unwrap_or("");
    let role = match role {
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" | "function" => {
            let name = names.name_of(
                message.get("tool_call_id").and_then(Value::as_str),
                message.get("name").and_then(Value::as_str),
            );
            let content = read_content(index, message)?;
            return Ok(Message::user(tools::render_result(&name, &content)));
        }
        other => {
            return Err(Invalid::Role {
                index,
                role: shown(other, 40),
            });
        }
    };
    let mut content = read_content(index, message)?;
    if role == Role::Assistant {
        if content.trim().is_empty() {
            content.clear();
        }
        for call in tools::render_history_calls(index, message, names)? {
            if !content.trim().is_empty() {
                content.push_str("\n\n");
            }
            content.push_str(&call);
        }
    }
    Ok(Message { role, content })
}

fn read_content(index: usize, message: &Value) -> Result<String, Invalid> {
    match message.get("content") {
        // An assistant turn may carry no content at all.
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => join_parts(index, parts),
        Some(_) => Err(Invalid::Content { index }),
    }
}

/// Text parts joined by newlines (parts are separate blocks to the agent, e.g. a system
/// prompt split for prompt caching); any other part is refused by its type.
fn join_parts(index: usize, parts: &[Value]) -> Result<String, Invalid> {
    let mut texts = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Value::String(text) => texts.push(text.as_str()),
            Value::Object(part) => {
                let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
                if kind != "text" {
                    return Err(Invalid::Part {
                        index,
                        kind: if kind.is_empty() {
                            "(none)".into()
                        } else {
                            shown(kind, 40)
                        },
                    });
                }
                match part.get("text") {
                    Some(Value::String(text)) => texts.push(text),
                    _ => return Err(Invalid::Content { index }),
                }
            }
            _ => return Err(Invalid::Content { index }),
        }
    }
    Ok(texts.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(body: &Value) -> Result<ChatCall, Invalid> {
        parse(body.to_string().as_bytes())
    }

    #[test]
    fn roles_map_and_parts_join() {
        let call = parsed(&json!({
            "model": "openai/pitcrew",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "first", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "second"},
                ]},
                {"role": "assistant", "content": null},
            ],
            "stop": ["</s>"],
            "stream": true,
        }))
        .unwrap();
        assert_eq!(
            call.messages,
            [
                Message::system("be brief"),
                Message::user("first\nsecond"),
                Message::assistant("")
            ]
        );
        assert!(call.stream);
        assert_eq!(call.model.as_deref(), Some("openai/pitcrew"));
        assert_eq!((call.temperature, call.max_tokens), (None, None));
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let call = parsed(&json!({
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 10, "max_completion_tokens": 20, "temperature": 0.5,
        }))
        .unwrap();
        assert_eq!((call.max_tokens, call.temperature), (Some(20), Some(0.5)));
    }

    #[test]
    fn empty_tool_fields_are_not_tools() {
        let call = parsed(&json!({
            "messages": [{"role": "assistant", "content": "ok", "tool_calls": []}],
            "tools": [], "functions": null,
        }));
        assert!(call.is_ok(), "{call:?}");
    }

    #[test]
    fn offered_tools_are_described_in_the_system_message() {
        let tool = json!({"type": "function", "function": {"name": "terminal",
            "parameters": {"type": "object", "properties": {"command": {"type": "string"}},
            "required": ["command"]}}});
        let call = parsed(&json!({
            "messages": [{"role": "system", "content": "You are an agent."},
                         {"role": "user", "content": "fix it"}],
            "tools": [tool], "parallel_tool_calls": false,
        }))
        .unwrap();
        let tools = call.tools.expect("tools offered");
        assert_eq!(tools.tools[0].name, "terminal");
        let system = &call.messages[0];
        assert_eq!(system.role, Role::System);
        assert!(
            system
                .content
                .starts_with("You are an agent.\n\n# Calling functions\n"),
            "{}",
            system.content
        );
        assert!(system.content.contains("---- function terminal ----"));
        assert_eq!(call.messages[1], Message::user("fix it"));

        // No system message: one is added first.
        let call = parsed(&json!({
            "messages": [{"role": "user", "content": "fix it"}], "tools": [tool],
        }))
        .unwrap();
        assert_eq!(call.messages.len(), 2);
        assert!(call.messages[0].content.starts_with("# Calling functions"));

        // "none": nothing described, nothing read back.
        let call = parsed(&json!({
            "messages": [{"role": "user", "content": "fix it"}], "tools": [tool],
            "tool_choice": "none",
        }))
        .unwrap();
        assert_eq!(call.tools, None);
        assert_eq!(call.messages, [Message::user("fix it")]);
    }

    #[test]
    fn tool_calls_and_results_in_the_history_become_text() {
        let call = parsed(&json!({"messages": [
            {"role": "user", "content": "fix it"},
            {"role": "assistant", "content": "Looking first.", "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "terminal", "arguments": "{\"command\": \"ls\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "a.py"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c2", "type": "function", "function": {"name": "finish", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c-gone", "content": "done"},
            {"role": "function", "name": "legacy", "content": "old"},
        ]}))
        .unwrap();
        assert_eq!(
            call.messages,
            [
                Message::user("fix it"),
                Message::assistant(
                    "Looking first.\n\n<function=terminal>\n<parameter=command>ls</parameter>\n\
                     </function>"
                ),
                Message::user("EXECUTION RESULT of [terminal]:\na.py"),
                Message::assistant("<function=finish>\n</function>"),
                Message::user("EXECUTION RESULT of [unknown call c-gone]:\ndone"),
                Message::user("EXECUTION RESULT of [legacy]:\nold"),
            ]
        );
        assert_eq!(call.tools, None, "no tools offered in this request");
    }

    #[test]
    fn bad_tools_and_history_calls_are_refused_with_their_param() {
        let user = json!({"role": "user", "content": "x"});
        let cases = [
            (
                json!({"messages": [user], "tools": [{"type": "function"}]}),
                "tools[0]",
            ),
            (json!({"messages": [user], "tools": [1]}), "tools[0]"),
            (
                json!({"messages": [user, {"role": "assistant", "tool_calls": [{"id": "1"}]}]}),
                "messages[1]",
            ),
            (
                json!({"messages": [{"role": "tool", "tool_call_id": "1",
                    "content": [{"type": "image_url", "image_url": {"url": "data:"}}]}]}),
                "messages[0].content",
            ),
        ];
        for (body, param) in cases {
            let error = parsed(&body).unwrap_err();
            assert_eq!(error.param().as_deref(), Some(param), "{body}: {error}");
        }
    }

    #[test]
    fn bad_shapes_are_refused() {
        let image = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:"}},
        ]}]});
        assert_eq!(
            parsed(&image).unwrap_err(),
            Invalid::Part {
                index: 0,
                kind: "image_url".into()
            }
        );
        assert_eq!(parse(b"{not json").unwrap_err().param(), None);
        assert_eq!(parsed(&json!([1])).unwrap_err(), Invalid::NotObject);
        assert_eq!(
            parsed(&json!({"messages": []})).unwrap_err(),
            Invalid::NoMessages
        );
        let user = json!({"role": "user", "content": "x"});
        for (extra, name) in [
            (json!({"temperature": 3}), "temperature"),
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"max_tokens": 1.5}), "max_tokens"),
            (json!({"stream": "yes"}), "stream"),
            (json!({"n": 2}), "n"),
        ] {
            let mut body = json!({"messages": [user]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            let error = parsed(&body).unwrap_err();
            assert_eq!(error.param().as_deref(), Some(name), "{error}");
        }
        let error = parsed(&json!({"messages": [{"role": "critic", "content": "x"}]})).unwrap_err();
        assert!(error.to_string().contains("`critic`"), "{error}");
    }
}
