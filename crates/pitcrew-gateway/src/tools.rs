//! Tool (function) calling over text chat: the router speaks text only, and many free or
//! local models have no native tool calling, yet agents (the OpenHands CLI first of all)
//! send `tools` and expect `tool_calls` back. As OpenHands' own `fn_call_converter` does for
//! such models, the functions are described in the system message with a text calling
//! convention, earlier calls and results are written into the history as text, and the
//! model's reply is read back into a tool call:
//!
//! ```text
//! <function=NAME>
//! <parameter=PARAM>value</parameter>
//! <parameter=OTHER>
//! a value over
//! several lines
//! </parameter>
//! </function>
//! ```
//!
//! A tool result goes to the model as a user message `EXECUTION RESULT of [NAME]:\n…`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

/// The most characters of an agent-given name repeated in an error or a placeholder.
const NAME_CHARS: usize = 80;

const OPEN_FUNCTION: &str = "<function=";
const CLOSE_FUNCTION: &str = "</function>";
const OPEN_PARAMETER: &str = "<parameter=";
const CLOSE_PARAMETER: &str = "</parameter>";

/// Left out of the required-parameter check, as OpenHands' converter leaves it out: the
/// OpenHands CLI always adds it as required (its LLM security analyzer), weak models often
/// omit it, and the agent checks it itself and tells the model, whereas a reply turned into
/// plain content would end the agent's run.
const AGENT_CHECKED_PARAMETER: &str = "security_risk";

/// Why a request's tools, tool choice or tool history cannot be translated (answered 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum BadTools {
    #[error("`{field}` must be an array of function definitions")]
    NotList { field: &'static str },
    #[error("{field}[{index}]: {what}")]
    Definition {
        field: &'static str,
        index: usize,
        what: String,
    },
    #[error("{field}[{index}]: a tool of type `{kind}`: this gateway relays function tools only")]
    Kind {
        field: &'static str,
        index: usize,
        kind: String,
    },
    #[error("the function `{0}` is defined twice")]
    Duplicate(String),
    #[error("`{field}` must be \"auto\", \"none\", \"required\" or a function by name; got {got}")]
    Choice { field: &'static str, got: String },
    #[error("`{field}` names the function `{name}`, which is not among the tools")]
    ChoiceUnknown { field: &'static str, name: String },
    #[error("messages[{index}]: {what}")]
    History { index: usize, what: String },
}

impl BadTools {
    /// The OpenAI `param` the error is about.
    pub(crate) fn param(&self) -> String {
        match self {
            BadTools::NotList { field } => (*field).into(),
            BadTools::Definition { field, index, .. } | BadTools::Kind { field, index, .. } => {
                format!("{field}[{index}]")
            }
            BadTools::Duplicate(_) => "tools".into(),
            BadTools::Choice { field, .. } | BadTools::ChoiceUnknown { field, .. } => {
                (*field).into()
            }
            BadTools::History { index, .. } => format!("messages[{index}]"),
        }
    }
}

/// One function the agent offers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON schema of type object; `Null` when the function takes no parameters.
    pub parameters: Value,
}

impl Tool {
    fn properties(&self) -> Option<&Map<String, Value>> {
        self.parameters.get("properties").and_then(Value::as_object)
    }

    fn required(&self) -> impl Iterator<Item = &str> {
        self.parameters
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
    }
}

/// What `tool_choice` (or legacy `function_call`) asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Choice {
    Auto,
    Required,
    Function(String),
}

/// The functions a request offers, when it offers any and allows calling them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Toolbox {
    pub tools: Vec<Tool>,
    pub choice: Choice,
}

/// A call read from the model's reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    /// `call_` and 24 random hex digits.
    pub id: String,
    pub name: String,
    /// A JSON object, as OpenAI sends `arguments`: a string.
    pub arguments: String,
}

/// A reply that is a call: the text before it, and the call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Called {
    /// The model's words before the call, trimmed; `None` when there are none.
    pub content: Option<String>,
    pub call: ToolCall,
}

impl Toolbox {
    /// Reads `tools` (and legacy `functions`) and `tool_choice` (legacy `function_call`).
    /// `None` when no function is offered or the choice is `"none"`: then nothing is
    /// described and replies are not read for calls, as a model told not to call any would
    /// answer in text.
    pub(crate) fn read(body: &Map<String, Value>) -> Result<Option<Toolbox>, BadTools> {
        let mut tools = Vec::new();
        for field in ["tools", "functions"] {
            match body.get(field) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for (index, item) in items.iter().enumerate() {
                        tools.push(read_tool(field, index, item)?);
                    }
                }
                Some(_) => return Err(BadTools::NotList { field }),
            }
        }
        let mut names = BTreeSet::new();
        for tool in &tools {
            if !names.insert(tool.name.as_str()) {
                return Err(BadTools::Duplicate(tool.name.clone()));
            }
        }
        let choice = match (body.get("tool_choice"), body.get("function_call")) {
            (Some(choice), _) if !choice.is_null() => read_choice("tool_choice", choice)?,
            (_, Some(choice)) if !choice.is_null() => read_choice("function_call", choice)?,
            _ => Some(Choice::Auto),
        };
        let Some(choice) = choice else {
            return Ok(None);
        };
        if let Choice::Function(name) = &choice
            && !names.contains(name.as_str())
        {
            let field = if body.get("tool_choice").is_some_and(|c| !c.is_null()) {
                "tool_choice"
            } else {
                "function_call"
            };
            return Err(BadTools::ChoiceUnknown {
                field,
                name: shown(name),
            });
        }
        if tools.is_empty() {
            // A choice without tools is what SDKs send by default: nothing to describe.
            return Ok(None);
        }
        Ok(Some(Toolbox { tools, choice }))
    }

    /// What is appended to the system message: the convention, the rules, and every
    /// function with its parameters.
    pub(crate) fn instructions(&self) -> String {
        let mut text = String::from(
            "# Calling functions\n\n\
             You can call the functions described below. To call one, write the call at the \
             end of your reply, exactly in this format:\n\n\
             <function=FUNCTION_NAME>\n\
             <parameter=PARAMETER_NAME>value</parameter>\n\
             <parameter=OTHER_PARAMETER_NAME>\n\
             a value that spans\n\
             several lines\n\
             </parameter>\n\
             </function>\n\n\
             Rules:\n\
             - Call at most one function per reply, and write nothing after </function>.\n\
             - Give every required parameter. Write values as they are, without quotes or \
             escapes; write arrays and objects as JSON.\n\
             - You may explain your reasoning before the call, never after it.\n",
        );
        match &self.choice {
            Choice::Auto => text.push_str(
                "- When no function is needed, answer in plain text, without this format.\n",
            ),
            Choice::Required => {
                text.push_str("- You MUST call one of the functions in this reply.\n");
            }
            Choice::Function(name) => {
                text.push_str(&format!(
                    "- You MUST call the function `{name}` in this reply.\n"
                ));
            }
        }
        text.push_str("\nThe functions:\n");
        for tool in &self.tools {
            text.push('\n');
            describe(tool, &mut text);
        }
        text
    }

    /// Reads the model's reply for the first call. `None` (the reply goes to the agent as
    /// plain content) when there is none, when it names a function not offered, lacks a
    /// required parameter, or was cut off inside a parameter: the agent sees the model's
    /// text as it is rather than a call pitcrew made up or completed.
    pub(crate) fn read_reply(&self, text: &str) -> Option<Called> {
        let found = find_call(text)?;
        let tool = self.tools.iter().find(|tool| tool.name == found.name)?;
        let properties = tool.properties();
        let mut arguments = Map::new();
        for (name, raw) in found.parameters {
            let schema = properties.and_then(|p| p.get(name));
            arguments.insert(name.to_string(), convert(schema, raw));
        }
        let missing = tool
            .required()
            .any(|name| name != AGENT_CHECKED_PARAMETER && !arguments.contains_key(name));
        if missing {
            return None;
        }
        let content = text[..found.start].trim();
        // Wrappers some models put around a call (`<tool_call>`) are not words to the user.
        let content = content
            .strip_suffix("<tool_call>")
            .unwrap_or(content)
            .trim();
        Some(Called {
            content: (!content.is_empty()).then(|| content.to_string()),
            call: ToolCall {
                id: call_id(),
                name: tool.name.clone(),
                arguments: Value::Object(arguments).to_string(),
            },
        })
    }
}

/// An earlier call as the model would have written it. `arguments` that are not a JSON
/// object (a client's own mistake) are written inside the call as they are, so that the
/// history still says what was called.
pub(crate) fn render_call(name: &str, arguments: &str) -> String {
    let mut text = format!("{OPEN_FUNCTION}{name}>\n");
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(arguments)) => {
            for (parameter, value) in arguments {
                text.push_str(&format!("{OPEN_PARAMETER}{parameter}>"));
                match value {
                    // Multi-line values on lines of their own, as the convention shows and
                    // as reading trims.
                    Value::String(value) if value.contains('\n') => {
                        text.push_str(&format!("\n{value}\n"));
                    }
                    Value::String(value) => text.push_str(&value),
                    other => text.push_str(&other.to_string()),
                }
                text.push_str(CLOSE_PARAMETER);
                text.push('\n');
            }
        }
        // Some clients send "" for a call without arguments.
        _ if arguments.trim().is_empty() => {}
        _ => {
            text.push_str(arguments);
            text.push('\n');
        }
    }
    text.push_str(CLOSE_FUNCTION);
    text
}

/// A tool's result as the model reads it.
pub(crate) fn render_result(name: &str, content: &str) -> String {
    format!("EXECUTION RESULT of [{name}]:\n{content}")
}

/// The names of the calls in a history so far, by call id, to name their results.
#[derive(Debug, Default)]
pub(crate) struct CallNames(HashMap<String, String>);

impl CallNames {
    pub(crate) fn insert(&mut self, id: &str, name: &str) {
        self.0.insert(id.to_string(), name.to_string());
    }

    /// The name of call `id`; else the result's own `name`; else a placeholder that still
    /// says which call it was.
    pub(crate) fn name_of(&self, id: Option<&str>, name: Option<&str>) -> String {
        if let Some(known) = id.and_then(|id| self.0.get(id)) {
            return known.clone();
        }
        match (name, id) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(id)) => format!("unknown call {}", shown(id)),
            _ => "unknown call".into(),
        }
    }
}

/// Reads an assistant message's `tool_calls` (or legacy `function_call`) into text,
/// remembering their names for the results that follow.
pub(crate) fn render_history_calls(
    index: usize,
    message: &Value,
    names: &mut CallNames,
) -> Result<Vec<String>, BadTools> {
    let bad = |what: &str| BadTools::History {
        index,
        what: what.to_string(),
    };
    let mut rendered = Vec::new();
    if let Some(Value::Array(calls)) = message.get("tool_calls") {
        for call in calls {
            let function = call
                .get("function")
                .ok_or_else(|| bad("a tool call without `function`"))?;
            let (name, arguments) = read_function(function)
                .ok_or_else(|| bad("a tool call's function needs a `name`"))?;
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                names.insert(id, name);
            }
            rendered.push(render_call(name, arguments));
        }
    } else if message.get("tool_calls").is_some_and(|c| !c.is_null()) {
        return Err(bad("`tool_calls` must be an array"));
    }
    match message.get("function_call") {
        None | Some(Value::Null) => {}
        Some(function) => {
            let (name, arguments) =
                read_function(function).ok_or_else(|| bad("`function_call` needs a `name`"))?;
            rendered.push(render_call(name, arguments));
        }
    }
    Ok(rendered)
}

/// `{"name", "arguments"}`; arguments may be missing (none) or, leniently, an object.
fn read_function(function: &Value) -> Option<(&str, &str)> {
    let name = function.get("name")?.as_str().filter(|n| !n.is_empty())?;
    let arguments = function
        .get("arguments")
        .and_then(Value::as_str)
        .unwrap_or("");
    Some((name, arguments))
}

fn read_tool(field: &'static str, index: usize, item: &Value) -> Result<Tool, BadTools> {
    let definition = |what: &str| BadTools::Definition {
        field,
        index,
        what: what.to_string(),
    };
    let function = if field == "functions" {
        item
    } else {
        match item.get("type").and_then(Value::as_str) {
            // An untyped tool with a `function` is one.
            None | Some("function") => {}
            Some(kind) => {
                return Err(BadTools::Kind {
                    field,
                    index,
                    kind: shown(kind),
                });
            }
        }
        item.get("function")
            .ok_or_else(|| definition("a function tool needs a `function` object"))?
    };
    let Value::Object(function) = function else {
        return Err(definition("a function definition must be an object"));
    };
    let name = match function.get("name") {
        Some(Value::String(name)) if writable(name) => name.clone(),
        Some(Value::String(name)) => {
            return Err(definition(&format!(
                "the function name `{}` cannot be written in a call: no spaces, `<` or `>`",
                shown(name)
            )));
        }
        _ => return Err(definition("a function needs a `name`")),
    };
    let description = function
        .get("description")
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
        .map(str::to_string);
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Object(schema)) => {
            if let Some(Value::Object(properties)) = schema.get("properties")
                && let Some(bad) = properties.keys().find(|name| !writable(name))
            {
                return Err(definition(&format!(
                    "the parameter name `{}` cannot be written in a call: no spaces, `<` or `>`",
                    shown(bad)
                )));
            }
            Value::Object(schema.clone())
        }
        Some(_) => return Err(definition("`parameters` must be a JSON schema object")),
    };
    Ok(Tool {
        name,
        description,
        parameters,
    })
}

/// Whether a name can stand in `<function=NAME>` / `<parameter=NAME>` and be read back.
fn writable(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '<' || c == '>' || c.is_whitespace() || c.is_control())
}

/// `None` for "none".
fn read_choice(field: &'static str, choice: &Value) -> Result<Option<Choice>, BadTools> {
    let named = |name: Option<&Value>| {
        name.and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(|n| Some(Choice::Function(n.to_string())))
    };
    let read = match choice {
        Value::String(choice) => match choice.as_str() {
            "auto" => Some(Some(Choice::Auto)),
            "none" => Some(None),
            // Legacy `function_call` has no "required"; accepted all the same.
            "required" | "any" => Some(Some(Choice::Required)),
            _ => None,
        },
        // {"type": "function", "function": {"name"}}; legacy {"name"}.
        Value::Object(object) => match object.get("function") {
            Some(function) => named(function.get("name")),
            None => named(object.get("name")),
        },
        _ => None,
    };
    read.ok_or_else(|| BadTools::Choice {
        field,
        got: shown(&choice.to_string()),
    })
}

/// One function, for the model.
fn describe(tool: &Tool, text: &mut String) {
    text.push_str(&format!("---- function {} ----\n", tool.name));
    if let Some(description) = &tool.description {
        text.push_str(&format!("Description: {}\n", description.trim_end()));
    }
    match tool.properties().filter(|p| !p.is_empty()) {
        None => text.push_str("Parameters: none\n"),
        Some(properties) => {
            let required: BTreeSet<&str> = tool.required().collect();
            text.push_str("Parameters:\n");
            for (name, schema) in properties {
                let status = if required.contains(name.as_str()) {
                    "required"
                } else {
                    "optional"
                };
                let description = schema
                    .get("description")
                    .and_then(Value::as_str)
                    .filter(|d| !d.trim().is_empty())
                    .unwrap_or("no description");
                text.push_str(&format!(
                    "- {name} ({}, {status}): {}\n",
                    type_name(schema),
                    description.trim_end()
                ));
                if let Some(Value::Array(values)) = schema.get("enum") {
                    let values: Vec<String> = values
                        .iter()
                        .map(|v| match v {
                            Value::String(s) => format!("`{s}`"),
                            other => format!("`{other}`"),
                        })
                        .collect();
                    text.push_str(&format!("  Allowed values: {}\n", values.join(", ")));
                }
                // Objects and arrays of objects: their shape matters to write them as JSON.
                if has_structure(schema) {
                    text.push_str(&format!("  JSON schema: {schema}\n"));
                }
            }
        }
    }
    text.push_str(&format!("---- end of {} ----\n", tool.name));
}

/// `string`, `integer or null`, `array of string`, … for the description.
fn type_name(schema: &Value) -> String {
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = schema.get(key) {
            let names: Vec<String> = options.iter().map(type_name).collect();
            return names.join(" or ");
        }
    }
    match schema.get("type") {
        Some(Value::String(kind)) if kind == "array" => match schema.get("items") {
            Some(items) if items.is_object() => format!("array of {}", type_name(items)),
            _ => "array".into(),
        },
        Some(Value::String(kind)) => kind.clone(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ if schema.get("enum").is_some() => "enum".into(),
        _ => "any".into(),
    }
}

fn has_structure(schema: &Value) -> bool {
    let kinds = json_types(Some(schema));
    kinds.contains("object")
        || (kinds.contains("array")
            && schema
                .get("items")
                .is_some_and(|items| json_types(Some(items)).contains("object")))
}

/// The JSON types a schema allows: from `type` (a name or a list) and `anyOf`/`oneOf`.
/// Empty when it says none (any value, or only an `enum`).
fn json_types(schema: Option<&Value>) -> BTreeSet<&str> {
    let mut kinds = BTreeSet::new();
    let Some(schema) = schema else {
        return kinds;
    };
    match schema.get("type") {
        Some(Value::String(kind)) => {
            kinds.insert(kind.as_str());
        }
        Some(Value::Array(list)) => kinds.extend(list.iter().filter_map(Value::as_str)),
        _ => {}
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = schema.get(key) {
            for option in options {
                kinds.extend(json_types(Some(option)));
            }
        }
    }
    kinds
}

/// A parameter's text as the JSON value its schema asks for. A string parameter (or one
/// whose schema names no type) stays the text as written; any other type is parsed as JSON
/// and kept when it is of an allowed type, else the text is passed on as it is, for the
/// agent's own validation to report to the model.
fn convert(schema: Option<&Value>, raw: &str) -> Value {
    let kinds = json_types(schema);
    if kinds.is_empty() || kinds.iter().all(|kind| *kind == "string") {
        return Value::String(raw.to_string());
    }
    let trimmed = raw.trim();
    // Python-minded models write booleans capitalised.
    let parsed = match trimmed {
        "True" => Some(Value::Bool(true)),
        "False" => Some(Value::Bool(false)),
        _ => serde_json::from_str::<Value>(trimmed).ok(),
    };
    match parsed {
        Some(value) if kinds.iter().any(|kind| is_of(&value, kind)) => value,
        _ => Value::String(raw.to_string()),
    }
}

fn is_of(value: &Value, kind: &str) -> bool {
    match kind {
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => false,
    }
}

/// A call found in a reply, its parameters as written.
#[derive(Debug, PartialEq)]
struct Found<'a> {
    /// Where `<function=` starts.
    start: usize,
    name: &'a str,
    parameters: Vec<(&'a str, &'a str)>,
}

/// The first call in `text`. Tolerated, as OpenHands' parser tolerates them: no newline
/// after `<function=NAME>`; a missing `</function>` (a stop word cut it, or the model
/// forgot it), the call then running to the next `<function=` or the end of the text, with
/// a cut-off `</function` or `</` dropped; the malformed `<parameter=NAME=value</parameter>`.
/// A parameter without `</parameter>` runs to the end of a closed call; in a call that is
/// not closed it may have been cut off mid-value, so there is no call.
fn find_call(text: &str) -> Option<Found<'_>> {
    let start = text.find(OPEN_FUNCTION)?;
    let after = &text[start + OPEN_FUNCTION.len()..];
    let name_end = after.find('>')?;
    let name = after[..name_end].trim();
    if !writable(name) {
        return None;
    }
    let body = &after[name_end + 1..];
    let body = body
        .strip_prefix("\r\n")
        .or_else(|| body.strip_prefix('\n'))
        .unwrap_or(body);
    let (body, closed) = match body.find(CLOSE_FUNCTION) {
        Some(end) if body.find(OPEN_FUNCTION).is_none_or(|next| end < next) => (&body[..end], true),
        _ => {
            let body = &body[..body.find(OPEN_FUNCTION).unwrap_or(body.len())];
            (cut_partial_close(body), false)
        }
    };
    let parameters = read_parameters(body, closed)?;
    Some(Found {
        start,
        name,
        parameters,
    })
}

/// `body` without a trailing prefix of `</function>` (`</`, `</func`, `</function`).
fn cut_partial_close(body: &str) -> &str {
    let trimmed = body.trim_end();
    for len in (2..CLOSE_FUNCTION.len()).rev() {
        if let Some(cut) = trimmed.strip_suffix(&CLOSE_FUNCTION[..len]) {
            return cut;
        }
    }
    body
}

/// The parameters in a call's body; `None` when one is not closed and `closed` is false.
fn read_parameters(body: &str, closed: bool) -> Option<Vec<(&str, &str)>> {
    let mut parameters: Vec<(&str, &str)> = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find(OPEN_PARAMETER) {
        let after = &rest[open + OPEN_PARAMETER.len()..];
        let Some(gt) = after.find('>') else {
            // `<parameter=` with nothing after it: cut off.
            return closed.then_some(parameters);
        };
        let head = &after[..gt];
        let (name, value, next) = if let Some((name, value)) = malformed(head) {
            (name, value, &after[gt + 1..])
        } else {
            let name = head.trim();
            let value_start = &after[gt + 1..];
            match value_start.find(CLOSE_PARAMETER) {
                Some(end) => (
                    name,
                    &value_start[..end],
                    &value_start[end + CLOSE_PARAMETER.len()..],
                ),
                None if closed => (name, value_start, ""),
                None => return None,
            }
        };
        if writable(name) {
            // A parameter given twice: the last one counts, as in OpenHands' parser.
            parameters.retain(|(known, _)| *known != name);
            parameters.push((name, trim_one_newline(value)));
        }
        rest = next;
    }
    Some(parameters)
}

/// `NAME=value</parameter` (the head of `<parameter=NAME=value</parameter>`), which some
/// models write for `<parameter=NAME>value</parameter>`.
fn malformed(head: &str) -> Option<(&str, &str)> {
    let inner = head.strip_suffix("</parameter")?;
    let (name, value) = inner.split_once('=')?;
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (plain && !value.contains('<')).then_some((name, value))
}

/// One newline either side removed (the convention puts multi-line values on lines of their
/// own); anything else, inner newlines and indentation included, is the value.
fn trim_one_newline(value: &str) -> &str {
    let value = value
        .strip_prefix("\r\n")
        .or_else(|| value.strip_prefix('\n'))
        .unwrap_or(value);
    value
        .strip_suffix("\r\n")
        .or_else(|| value.strip_suffix('\n'))
        .unwrap_or(value)
}

/// `call_` and 24 random hex digits. The system's random source worked when the gateway
/// started; should it fail now, a process-wide count keeps ids distinct all the same.
fn call_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        let count = COUNT.fetch_add(1, Ordering::Relaxed);
        bytes[..8].copy_from_slice(&count.to_be_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("call_{hex}")
}

/// An agent's name as pitcrew may repeat it: redacted and short.
fn shown(text: &str) -> String {
    pitcrew_core::redact(text)
        .chars()
        .take(NAME_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn toolbox(body: &Value) -> Result<Option<Toolbox>, BadTools> {
        Toolbox::read(body.as_object().unwrap())
    }

    /// A terminal and a file editor, as OpenHands offers them (trimmed).
    fn agent_tools() -> Toolbox {
        toolbox(&json!({"tools": [
            {"type": "function", "function": {
                "name": "terminal",
                "description": "Run a bash command.",
                "parameters": {"type": "object", "properties": {
                    "command": {"type": "string", "description": "The command."},
                    "timeout": {"type": "number", "description": "Seconds."},
                    "is_input": {"type": "boolean"},
                    "security_risk": {"type": "string", "enum": ["LOW", "MEDIUM", "HIGH"]},
                }, "required": ["command", "security_risk"]},
            }},
            {"type": "function", "function": {
                "name": "file_editor",
                "parameters": {"type": "object", "properties": {
                    "command": {"type": "string", "enum": ["view", "create", "str_replace"]},
                    "path": {"type": "string"},
                    "old_str": {"type": "string"},
                    "view_range": {"type": "array", "items": {"type": "integer"}},
                    "options": {"type": "object", "properties": {"a": {"type": "integer"}}},
                    "limit": {"type": ["integer", "null"]},
                }, "required": ["command", "path"]},
            }},
        ]}))
        .unwrap()
        .unwrap()
    }

    fn arguments(called: &Called) -> Value {
        serde_json::from_str(&called.call.arguments).unwrap()
    }

    #[test]
    fn instructions_describe_the_convention_and_every_function() {
        let text = agent_tools().instructions();
        for expected in [
            "<function=FUNCTION_NAME>\n<parameter=PARAMETER_NAME>value</parameter>\n",
            "</parameter>\n</function>",
            "at most one function per reply",
            "---- function terminal ----\nDescription: Run a bash command.\n",
            "- command (string, required): The command.\n",
            "- timeout (number, optional): Seconds.\n",
            "- security_risk (string, required): no description\n  Allowed values: `LOW`, `MEDIUM`, `HIGH`\n",
            "---- end of terminal ----",
            "- view_range (array of integer, optional)",
            "- limit (integer or null, optional)",
            "  JSON schema: {\"properties\":{\"a\":{\"type\":\"integer\"}},\"type\":\"object\"}\n",
            "answer in plain text",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        let mut required = agent_tools();
        required.choice = Choice::Required;
        let text = required.instructions();
        assert!(
            text.contains("You MUST call one of the functions"),
            "{text}"
        );
        assert!(!text.contains("answer in plain text"), "{text}");
        required.choice = Choice::Function("file_editor".into());
        let text = required.instructions();
        assert!(
            text.contains("MUST call the function `file_editor`"),
            "{text}"
        );
    }

    #[test]
    fn tools_functions_and_choices_are_read() {
        let legacy = toolbox(&json!({
            "functions": [{"name": "f", "parameters": {"type": "object", "properties": {}}}],
            "function_call": {"name": "f"},
        }))
        .unwrap()
        .unwrap();
        assert_eq!(legacy.tools[0].name, "f");
        assert_eq!(legacy.choice, Choice::Function("f".into()));
        let tool = json!([{"type": "function", "function": {"name": "f"}}]);
        for (choice, expected) in [
            (json!("auto"), Some(Choice::Auto)),
            (json!(null), Some(Choice::Auto)),
            (json!("required"), Some(Choice::Required)),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                Some(Choice::Function("f".into())),
            ),
            (json!("none"), None),
        ] {
            let read = toolbox(&json!({"tools": tool, "tool_choice": choice})).unwrap();
            assert_eq!(read.map(|t| t.choice), expected, "{choice}");
        }
        // SDKs send these for "no tools".
        for empty in [
            json!({"tools": []}),
            json!({"tools": null, "tool_choice": "auto"}),
        ] {
            assert_eq!(toolbox(&empty).unwrap(), None, "{empty}");
        }
    }

    #[test]
    fn bad_definitions_and_choices_are_refused() {
        let f = json!({"type": "function", "function": {"name": "f"}});
        let cases = [
            (json!({"tools": {"f": 1}}), "tools"),
            (json!({"tools": [1]}), "tools[0]"),
            (json!({"tools": [{"type": "function"}]}), "tools[0]"),
            (json!({"tools": [f, {"type": "web_search"}]}), "tools[1]"),
            (
                json!({"tools": [{"type": "function", "function": {"name": "run it"}}]}),
                "tools[0]",
            ),
            (
                json!({"tools": [{"function": {"name": "f", "parameters": {"type": "object",
                    "properties": {"a<b": {"type": "string"}}}}}]}),
                "tools[0]",
            ),
            (json!({"tools": [f, f]}), "tools"),
            (
                json!({"tools": [f], "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (
                json!({"tools": [f], "tool_choice": {"type": "function", "function": {"name": "g"}}}),
                "tool_choice",
            ),
            (
                json!({"functions": [{"description": "no name"}]}),
                "functions[0]",
            ),
        ];
        for (body, param) in cases {
            let error = toolbox(&body).unwrap_err();
            assert_eq!(error.param(), param, "{body}: {error}");
        }
        let kind = toolbox(&json!({"tools": [{"type": "web_search"}]})).unwrap_err();
        assert!(kind.to_string().contains("`web_search`"), "{kind}");
    }

    #[test]
    fn a_call_is_read_with_its_arguments_converted_by_schema() {
        let reply = "I will list the files.\n\n<function=terminal>\n\
                     <parameter=command>ls -la</parameter>\n\
                     <parameter=timeout>30</parameter>\n\
                     <parameter=is_input>False</parameter>\n\
                     <parameter=security_risk>LOW</parameter>\n\
                     </function>";
        let called = agent_tools().read_reply(reply).unwrap();
        assert_eq!(called.content.as_deref(), Some("I will list the files."));
        assert_eq!(called.call.name, "terminal");
        assert!(called.call.id.starts_with("call_"), "{}", called.call.id);
        assert_eq!(called.call.id.len(), 5 + 24);
        assert_eq!(
            arguments(&called),
            json!({"command": "ls -la", "timeout": 30, "is_input": false, "security_risk": "LOW"})
        );
        let other = agent_tools().read_reply(reply).unwrap();
        assert_ne!(called.call.id, other.call.id);
    }

    #[test]
    fn schema_types_convert_and_fall_back_to_the_text() {
        let reply = "<function=file_editor>\n\
                     <parameter=command>view</parameter>\n\
                     <parameter=path>/repo/a.py</parameter>\n\
                     <parameter=view_range>[1, 20]</parameter>\n\
                     <parameter=options>{\"a\": 2}</parameter>\n\
                     <parameter=limit>null</parameter>\n\
                     </function>";
        let called = agent_tools().read_reply(reply).unwrap();
        assert_eq!(called.content, None);
        assert_eq!(
            arguments(&called),
            json!({"command": "view", "path": "/repo/a.py", "view_range": [1, 20],
                   "options": {"a": 2}, "limit": null})
        );
        // Not valid for the type: the text as written, for the agent to report.
        let reply = "<function=file_editor>\n<parameter=command>view</parameter>\n\
                     <parameter=path>/a</parameter>\n<parameter=view_range>1 to 20</parameter>\n\
                     <parameter=limit>5.5</parameter>\n</function>";
        let called = agent_tools().read_reply(reply).unwrap();
        assert_eq!(arguments(&called)["view_range"], "1 to 20");
        assert_eq!(arguments(&called)["limit"], "5.5");
        // A string stays a string even when it reads as JSON.
        let reply = "<function=terminal>\n<parameter=command>42</parameter>\n</function>";
        let called = agent_tools().read_reply(reply).unwrap();
        assert_eq!(arguments(&called)["command"], "42");
        assert_eq!(convert(None, " 7 "), json!(" 7 "), "no schema: a string");
    }

    #[test]
    fn string_values_keep_inner_newlines_and_indentation() {
        let reply = "<function=file_editor>\n<parameter=command>str_replace</parameter>\n\
                     <parameter=path>/a.py</parameter>\n<parameter=old_str>\n    if x:\n        \
                     return 1\n\n</parameter>\n</function>";
        let called = agent_tools().read_reply(reply).unwrap();
        assert_eq!(
            arguments(&called)["old_str"],
            "    if x:\n        return 1\n",
            "one newline trimmed each side, the rest kept"
        );
    }

    #[test]
    fn tolerated_shapes_are_read() {
        let tools = agent_tools();
        let expected = json!({"command": "pwd"});
        for reply in [
            // No newline after the name, nor between parameters.
            "<function=terminal><parameter=command>pwd</parameter></function>",
            // Cut by a stop word, or the closing tag forgotten.
            "<function=terminal>\n<parameter=command>pwd</parameter>\n</function",
            "<function=terminal>\n<parameter=command>pwd</parameter>\n</",
            "<function=terminal>\n<parameter=command>pwd</parameter>\n",
            "<function=terminal>\n<parameter=command>pwd</parameter>",
            // The malformed parameter some models write.
            "<function=terminal>\n<parameter=command=pwd</parameter>\n</function>",
            // A parameter left open inside a closed call.
            "<function=terminal>\n<parameter=command>pwd\n</function>",
            // Wrapped, with words after the call (ignored).
            "<tool_call>\n<function=terminal>\n<parameter=command>pwd</parameter>\n</function>\n</tool_call>",
            "<function=terminal>\n<parameter=command>pwd</parameter>\n</function>\nThen I will look.",
        ] {
            let called = tools
                .read_reply(reply)
                .unwrap_or_else(|| panic!("{reply:?}"));
            assert_eq!(arguments(&called), expected, "{reply:?}");
            assert_eq!(called.content, None, "{reply:?}");
        }
        // Two calls: the first is read; an unclosed first one stops at the second.
        let two = "<function=terminal>\n<parameter=command>pwd</parameter>\n\
                   <function=terminal>\n<parameter=command>ls</parameter>\n</function>";
        assert_eq!(arguments(&tools.read_reply(two).unwrap()), expected);
    }

    #[test]
    fn unknown_functions_missing_parameters_and_cut_values_stay_text() {
        let tools = agent_tools();
        for reply in [
            "Here is the answer, no call.",
            "<function=browser>\n<parameter=url>x</parameter>\n</function>",
            // file_editor needs `path`.
            "<function=file_editor>\n<parameter=command>view</parameter>\n</function>",
            // Cut off mid-value: the call may be incomplete.
            "<function=terminal>\n<parameter=command>cat a.py | gre",
            "<function=terminal>\n<parameter=",
            "<function=>\n</function>",
            "<function=bad name>\n</function>",
            "<function=terminal",
        ] {
            assert_eq!(tools.read_reply(reply), None, "{reply:?}");
        }
        // `security_risk` is left for the agent to check, as OpenHands' converter does.
        let called = tools
            .read_reply("<function=terminal>\n<parameter=command>ls</parameter>\n</function>")
            .unwrap();
        assert_eq!(arguments(&called), json!({"command": "ls"}));
    }

    #[test]
    fn history_calls_render_in_the_convention_and_read_back() {
        let rendered = render_call(
            "file_editor",
            &json!({"command": "create", "path": "/a.py", "file_text": "a = 1\nb = 2\n",
                    "view_range": [1, 2]})
            .to_string(),
        );
        assert_eq!(
            rendered,
            "<function=file_editor>\n<parameter=command>create</parameter>\n\
             <parameter=file_text>\na = 1\nb = 2\n\n</parameter>\n\
             <parameter=path>/a.py</parameter>\n<parameter=view_range>[1,2]</parameter>\n\
             </function>"
        );
        let found = find_call(&rendered).unwrap();
        assert_eq!(found.name, "file_editor");
        assert!(
            found.parameters.contains(&("file_text", "a = 1\nb = 2\n")),
            "{found:?}"
        );
        assert_eq!(render_call("finish", ""), "<function=finish>\n</function>");
        assert_eq!(
            render_call("f", "not json"),
            "<function=f>\nnot json\n</function>"
        );
        assert_eq!(
            render_result("terminal", "ok\n"),
            "EXECUTION RESULT of [terminal]:\nok\n"
        );
    }

    #[test]
    fn results_are_named_by_their_call() {
        let mut names = CallNames::default();
        let message = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "terminal", "arguments": "{\"command\":\"ls\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "finish", "arguments": "{}"}},
        ]});
        let rendered = render_history_calls(1, &message, &mut names).unwrap();
        assert_eq!(
            rendered,
            [
                "<function=terminal>\n<parameter=command>ls</parameter>\n</function>",
                "<function=finish>\n</function>"
            ]
        );
        assert_eq!(names.name_of(Some("c2"), None), "finish");
        assert_eq!(names.name_of(Some("c9"), Some("terminal")), "terminal");
        assert_eq!(names.name_of(Some("c9"), None), "unknown call c9");
        assert_eq!(names.name_of(None, None), "unknown call");
        let legacy =
            json!({"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}});
        assert_eq!(
            render_history_calls(0, &legacy, &mut names).unwrap(),
            ["<function=f>\n</function>"]
        );
        let nameless = json!({"tool_calls": [{"id": "c", "function": {"arguments": "{}"}}]});
        let error = render_history_calls(3, &nameless, &mut names).unwrap_err();
        assert_eq!(error.param(), "messages[3]");
    }
}
