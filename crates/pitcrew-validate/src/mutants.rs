//! Mutants of a source file: copies with one small, plausible bug each (`n > 0` → `n >= 0`,
//! `and` → `or`, a removed call…), for checking that tests notice when the code is wrong.
//! Coverage shows that tests run a line; a mutant of that line the tests still pass on shows
//! that they do not check it.
//!
//! [`mutants`] mutates only what starts on the given lines (the lines the tests under
//! judgement cover), and only code in function bodies: importing a module runs the rest, so
//! its coverage says nothing about the tests. It returns at most `max` mutants; each still
//! parses (by the syntax gate's tree-sitter grammar) and differs from the original and from
//! the others.
//!
//! **Operators** (Python): comparisons (`<` → `<=`, then `<` → `>`; `==` ↔ `!=`, `is` ↔
//! `is not`, `in` ↔ `not in`), `and` ↔ `or`, negated conditions of `if`/`elif`/`while` and
//! conditional expressions (`c` → `not (c)`, `not c` → `c`), arithmetic (`+` ↔ `-`, `*` ↔ `/`,
//! `//` → `/`, `%` → `*`, the same for augmented assignments, unary minus removed), constants
//! (`0` → `1`, `1` → `0`, other numbers `n` → `n + 1`, `True` ↔ `False`, a non-empty string →
//! an empty one), `return x` → `return None`, a call statement → `pass`, `raise …` → `pass`.
//! Never mutated: docstrings and other string statements, strings inside f-string
//! replacement fields (an empty `""` there does not parse before Python 3.12), decorators,
//! imports, type annotations, parameter lists (defaults are evaluated once, at definition),
//! and assignments to dunder names (`__all__`, `__slots__`).
//!
//! Some mutants are skipped because they tell nothing: `x + 0` → `x - 0` and `x * 1` → `x / 1`
//! (equivalent), and arithmetic on a literal string, list, tuple, set or dictionary (`"-" * 40`,
//! `"%s" % x`), which raises `TypeError` whenever the line runs, so any test that covers it
//! kills it.
//!
//! **Determinism**: the same source, lines and seed always give the same mutants in the same
//! (document) order, and the ids (`L42:C9:cmp`: line, column and operator of the change) do
//! not depend on the seed or `max`. Candidates are drawn round-robin over lines, so a long
//! line cannot eat the budget; within a round the lines are visited in a spreading order
//! (0, n/2, n/4, 3n/4, …) so that any budget is spread across the file. Within a line, first
//! choices come before second ones (the `<` → `>` swap, string constants), and the seed
//! shuffles the candidates of equal rank.
//!
//! Languages plug in through [`Rules`]; Python is the only one so far.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::ops::Range;

use tree_sitter::{Node, Point};

use crate::ast::{line, named_children, text};
use crate::syntax::{Language, parse};

/// One mutant of a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mutant {
    /// Unique within the file and independent of the seed and budget: `L{line}:C{column}:
    /// {operator}` of the change (1-based, columns in characters), with `:2`, `:3`… appended
    /// when one place has several mutants of the same operator.
    pub id: String,
    /// The 1-based line the mutant counts for, always one of the requested lines: the line of
    /// the change or, when only that is requested, the first line of the statement holding it
    /// (coverage.py reports a multi-line statement by its first line).
    pub line: u32,
    pub operator: Operator,
    /// The changed code as people read it, e.g. `n > 0`: the smallest node around the change
    /// that reads well; when that is long, the line of the change cut around it (`…`) or the
    /// node abbreviated. For reports only: `source` is the truth.
    pub original: String,
    /// `original` as mutated, e.g. `n >= 0`.
    pub replacement: String,
    /// The whole mutated file.
    pub source: String,
}

/// A kind of mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Operator {
    /// `<` → `<=`, `==` → `!=`, `in` → `not in`, …
    Comparison,
    /// `and` ↔ `or`.
    Boolean,
    /// The condition of an `if`, `elif`, `while` or conditional expression negated.
    Condition,
    /// `+` ↔ `-`, `*` ↔ `/`, …, also in augmented assignments; unary minus removed.
    Arithmetic,
    /// Numbers, booleans and strings changed.
    Constant,
    /// `return x` → `return None`.
    Return,
    /// A call statement replaced by `pass`.
    RemoveCall,
    /// A `raise` statement replaced by `pass`.
    RemoveRaise,
}

impl Operator {
    /// Stable short name, used in ids.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operator::Comparison => "cmp",
            Operator::Boolean => "bool",
            Operator::Condition => "cond",
            Operator::Arithmetic => "arith",
            Operator::Constant => "const",
            Operator::Return => "return",
            Operator::RemoveCall => "call",
            Operator::RemoveRaise => "raise",
        }
    }
}

/// Mutants of the Python `source`, of what starts on `lines`; at most `max`, chosen and
/// ordered as the module documentation describes. Empty when `source` does not parse.
pub(crate) fn mutants(source: &str, lines: &BTreeSet<u32>, seed: u64, max: usize) -> Vec<Mutant> {
    generate(&Python, source, lines, seed, max)
}

/// What a language contributes: where not to look and what to change.
trait Rules {
    fn language(&self) -> Language;
    /// Whether `node` and everything below it is left alone.
    fn off_limits(&self, node: Node, source: &str) -> bool;
    /// Whether `node` is a statement (or a clause such as `elif`) that coverage tools report
    /// by its first line.
    fn is_statement(&self, node: Node) -> bool;
    /// Whether `node` is a function, whose body runs when it is called. Only code in function
    /// bodies is mutated: importing a module runs the rest, so its coverage says nothing about
    /// what the tests exercise, and a test could not be blamed for missing its mutants.
    fn is_function(&self, node: Node) -> bool;
    /// The edits of `node` itself; its descendants are asked separately.
    fn edits(&self, node: Node, source: &str, out: &mut Vec<Edit>);
}

/// One candidate change: `range` of the source replaced by `text`.
#[derive(Debug)]
struct Edit {
    operator: Operator,
    range: Range<usize>,
    text: String,
    /// Where `range` starts.
    at: Point,
    /// The node around the change shown as original → replacement; contains `range`.
    context: Range<usize>,
    /// 0 for first choices, 1 for those tried only after every first choice on their line.
    rank: u8,
}

impl Edit {
    /// An edit of the whole of `node`.
    fn of(operator: Operator, node: Node, text: impl Into<String>) -> Edit {
        Edit {
            operator,
            range: node.byte_range(),
            text: text.into(),
            at: node.start_position(),
            context: node.byte_range(),
            rank: 0,
        }
    }

    fn shown_in(mut self, context: Node) -> Edit {
        self.context = context.byte_range();
        self
    }

    fn ranked(mut self, rank: u8) -> Edit {
        self.rank = rank;
        self
    }
}

/// An edit on a requested line, with its id.
#[derive(Debug)]
struct Candidate {
    edit: Edit,
    line: u32,
    id: String,
}

fn generate(
    rules: &dyn Rules,
    source: &str,
    lines: &BTreeSet<u32>,
    seed: u64,
    max: usize,
) -> Vec<Mutant> {
    if max == 0 || lines.is_empty() {
        return Vec::new();
    }
    let tree = parse(rules.language(), source);
    // A mutant of a broken file cannot be told apart from a broken mutant.
    if tree.root_node().has_error() {
        return Vec::new();
    }
    let candidates = candidates(rules, tree.root_node(), source, lines);
    let mut accepted: Vec<(usize, Mutant)> = Vec::new();
    // Fingerprint of each accepted source → its place in `accepted`.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for i in priority(&candidates, seed) {
        if accepted.len() == max {
            break;
        }
        let candidate = &candidates[i];
        let edit = &candidate.edit;
        let mut mutated = String::with_capacity(source.len() + edit.text.len());
        mutated.push_str(&source[..edit.range.start]);
        mutated.push_str(&edit.text);
        mutated.push_str(&source[edit.range.end..]);
        if mutated == source {
            continue;
        }
        let fingerprint = fingerprint(&mutated);
        let duplicate = seen.get(&fingerprint).copied();
        // Of two edits with the same result, the first in the document stays, whatever the
        // order they were tried in.
        if duplicate.is_some_and(|at| accepted[at].0 < i) {
            continue;
        }
        if parse(rules.language(), &mutated).root_node().has_error() {
            continue;
        }
        let (original, replacement) = shown(source, edit);
        if original == replacement {
            continue;
        }
        let mutant = Mutant {
            id: candidate.id.clone(),
            line: candidate.line,
            operator: edit.operator,
            original,
            replacement,
            source: mutated,
        };
        match duplicate {
            Some(at) => accepted[at] = (i, mutant),
            None => {
                seen.insert(fingerprint, accepted.len());
                accepted.push((i, mutant));
            }
        }
    }
    accepted.sort_by_key(|&(i, _)| i);
    accepted.into_iter().map(|(_, m)| m).collect()
}

/// Every edit on a requested line, in document order, with ids.
fn candidates(
    rules: &dyn Rules,
    root: Node,
    source: &str,
    lines: &BTreeSet<u32>,
) -> Vec<Candidate> {
    let mut found = Vec::new();
    // (node, first line of the innermost statement holding it, whether in a function body)
    let mut stack = vec![(root, None::<u32>, false)];
    let mut edits = Vec::new();
    while let Some((node, statement, in_function)) = stack.pop() {
        if rules.off_limits(node, source) {
            continue;
        }
        let statement = if rules.is_statement(node) {
            Some(line(node))
        } else {
            statement
        };
        if in_function {
            rules.edits(node, source, &mut edits);
        }
        let in_function = in_function || rules.is_function(node);
        for edit in edits.drain(..) {
            let own = u32::try_from(edit.at.row + 1).unwrap_or(u32::MAX);
            let line = if lines.contains(&own) {
                own
            } else if let Some(first) = statement.filter(|l| lines.contains(l)) {
                first
            } else {
                continue;
            };
            found.push((edit, line));
        }
        stack.extend(
            named_children(node)
                .into_iter()
                .rev()
                .map(|c| (c, statement, in_function)),
        );
    }
    // A node's own edits come before its children's; sorting by position (stably) puts
    // everything in document order.
    found.sort_by_key(|(edit, _)| edit.range.start);
    let mut taken: HashMap<String, usize> = HashMap::new();
    found
        .into_iter()
        .map(|(edit, line)| {
            let row_start = edit.range.start - edit.at.column;
            let column = source[row_start..edit.range.start].chars().count() + 1;
            let base = format!("L{}:C{column}:{}", edit.at.row + 1, edit.operator.as_str());
            let n = taken.entry(base.clone()).or_default();
            *n += 1;
            let id = if *n == 1 { base } else { format!("{base}:{n}") };
            Candidate { edit, line, id }
        })
        .collect()
}

/// Indices of `candidates` in the order they are tried: round-robin over lines, lines in a
/// spreading order, and within a line by rank, the seed shuffling equal ranks.
fn priority(candidates: &[Candidate], seed: u64) -> Vec<usize> {
    let mut by_line: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, c) in candidates.iter().enumerate() {
        by_line.entry(c.line).or_default().push(i);
    }
    let mut queues: Vec<Vec<usize>> = Vec::with_capacity(by_line.len());
    for (line, mut indices) in by_line {
        // Seeded per line, so that the order on one line does not depend on the others.
        let mut rng = fastrand::Rng::with_seed(mix(seed ^ mix(u64::from(line))));
        indices.sort_by_key(|&i| candidates[i].edit.rank);
        for group in
            indices.chunk_by_mut(|&a, &b| candidates[a].edit.rank == candidates[b].edit.rank)
        {
            rng.shuffle(group);
        }
        queues.push(indices);
    }
    let mut order = Vec::with_capacity(candidates.len());
    let rounds = queues.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..rounds {
        let active: Vec<usize> = queues
            .iter()
            .filter_map(|q| q.get(round).copied())
            .collect();
        order.extend(spread(active.len()).map(|k| active[k]));
    }
    order
}

/// A permutation of `0..n` any prefix of which is spread evenly over the range: bit-reversed
/// counting (the van der Corput sequence), e.g. 0, 8, 4, 2, 6, 1, 9, 5, 3, 7 for 10.
fn spread(n: usize) -> impl Iterator<Item = usize> {
    let size = n.next_power_of_two();
    let bits = size.trailing_zeros();
    (0..size)
        .map(move |k| {
            if bits == 0 {
                k
            } else {
                k.reverse_bits() >> (usize::BITS - bits)
            }
        })
        .filter(move |&i| i < n)
}

/// SplitMix64's finaliser: decorrelates nearby seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A hash of a mutated source, to drop mutants identical to one already taken.
fn fingerprint(source: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    source.hash(&mut hasher);
    hasher.finish()
}

/// Longest `original`/`replacement` shown whole.
const MAX_SHOWN: usize = 80;

/// Original and replacement as shown: the edit's context when it fits on a short line,
/// otherwise the line of the change cut around it, otherwise the context abbreviated.
fn shown(source: &str, edit: &Edit) -> (String, String) {
    let fits = |s: &str| !s.contains('\n') && s.chars().count() <= MAX_SHOWN;
    let removed = &source[edit.range.clone()];
    let context = &edit.context;
    let before = &source[context.start..edit.range.start];
    let after = &source[edit.range.end..context.end];
    let original = &source[context.clone()];
    let replacement = format!("{before}{}{after}", edit.text);
    if fits(original) && fits(&replacement) {
        return (original.to_string(), replacement);
    }
    if fits(removed) && fits(&edit.text) {
        let line_start = source[..edit.range.start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[edit.range.end..]
            .find('\n')
            .map_or(source.len(), |i| edit.range.end + i);
        let before = source[line_start..edit.range.start].trim_start();
        let after = source[edit.range.end..line_end].trim_end();
        if let Some(shown) = window(before, removed, &edit.text, after) {
            return shown;
        }
    }
    (abbreviate(original), abbreviate(&replacement))
}

/// `before` + `removed` + `after`, and the same with `inserted`, cut at the same places to at
/// most [`MAX_SHOWN`] characters, keeping as much either side of the change as fits. `None`
/// when the change leaves no room for anything around it.
fn window(before: &str, removed: &str, inserted: &str, after: &str) -> Option<(String, String)> {
    let changed = removed.chars().count().max(inserted.chars().count());
    // Two characters for the ellipses; the change needs some code around it to read well.
    let room = MAX_SHOWN.checked_sub(changed + 2)?;
    if room < 8 {
        return None;
    }
    let (before_len, after_len) = (before.chars().count(), after.chars().count());
    // Half the room each side; what one side does not need goes to the other.
    let keep_after = after_len.min(room - before_len.min(room / 2));
    let keep_before = before_len.min(room - keep_after);
    let mut head: String = before.chars().skip(before_len - keep_before).collect();
    if keep_before < before_len {
        head.insert(0, '…');
    }
    let mut tail: String = after.chars().take(keep_after).collect();
    if keep_after < after_len {
        tail.push('…');
    }
    Some((
        format!("{head}{removed}{tail}"),
        format!("{head}{inserted}{tail}"),
    ))
}

/// `text` on one line: whitespace runs collapsed, cut to [`MAX_SHOWN`] characters.
fn abbreviate(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= MAX_SHOWN {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(MAX_SHOWN - 1).collect();
    cut.push('…');
    cut
}

/// Python, by the tree-sitter-python grammar's node kinds.
struct Python;

/// Comparison operators and their replacements, the boundary one first.
const PY_COMPARISONS: &[(&str, &[&str])] = &[
    ("<", &["<=", ">"]),
    ("<=", &["<", ">="]),
    (">", &[">=", "<"]),
    (">=", &[">", "<="]),
    ("==", &["!="]),
    ("!=", &["=="]),
    ("is", &["is not"]),
    ("is not", &["is"]),
    ("in", &["not in"]),
    ("not in", &["in"]),
];

/// Arithmetic operators and their replacement; augmented assignments use the same with `=`.
const PY_ARITHMETIC: &[(&str, &str)] = &[
    ("+", "-"),
    ("-", "+"),
    ("*", "/"),
    ("/", "*"),
    ("//", "/"),
    ("%", "*"),
];

impl Rules for Python {
    fn language(&self) -> Language {
        Language::Python
    }

    fn off_limits(&self, node: Node, source: &str) -> bool {
        match node.kind() {
            "comment"
            | "decorator"
            | "import_statement"
            | "import_from_statement"
            | "future_import_statement"
            | "global_statement"
            | "nonlocal_statement"
            | "type"
            | "type_parameter"
            | "type_alias_statement"
            | "parameters"
            | "lambda_parameters" => true,
            "expression_statement" => match expressions(node).as_slice() {
                // Docstrings, and strings standing alone anywhere: changing them changes nothing.
                [only] if matches!(only.kind(), "string" | "concatenated_string") => true,
                [only] if matches!(only.kind(), "assignment" | "augmented_assignment") => only
                    .child_by_field_name("left")
                    .is_some_and(|left| is_dunder(text(left, source))),
                _ => false,
            },
            _ => false,
        }
    }

    fn is_statement(&self, node: Node) -> bool {
        let kind = node.kind();
        kind.ends_with("_statement")
            || matches!(
                kind,
                "function_definition"
                    | "class_definition"
                    | "decorated_definition"
                    | "elif_clause"
                    | "else_clause"
                    | "except_clause"
                    | "except_group_clause"
                    | "finally_clause"
                    | "case_clause"
            )
    }

    fn is_function(&self, node: Node) -> bool {
        node.kind() == "function_definition"
    }

    fn edits(&self, node: Node, source: &str, out: &mut Vec<Edit>) {
        match node.kind() {
            "comparison_operator" => {
                let mut cursor = node.walk();
                for token in node.children(&mut cursor).filter(|c| !c.is_named()) {
                    let Some((_, replacements)) =
                        PY_COMPARISONS.iter().find(|(op, _)| *op == token.kind())
                    else {
                        continue;
                    };
                    for (rank, replacement) in (0u8..).zip(replacements.iter()) {
                        out.push(
                            Edit::of(Operator::Comparison, token, *replacement)
                                .shown_in(node)
                                .ranked(rank),
                        );
                    }
                }
            }
            "boolean_operator" => {
                if let Some(token) = node.child_by_field_name("operator") {
                    let replacement = if token.kind() == "and" { "or" } else { "and" };
                    out.push(Edit::of(Operator::Boolean, token, replacement).shown_in(node));
                }
            }
            "binary_operator" => {
                let (Some(left), Some(token), Some(right)) = (
                    node.child_by_field_name("left"),
                    node.child_by_field_name("operator"),
                    node.child_by_field_name("right"),
                ) else {
                    return;
                };
                if let Some(replacement) = arithmetic(token.kind(), Some(left), right, source) {
                    out.push(Edit::of(Operator::Arithmetic, token, replacement).shown_in(node));
                }
            }
            "augmented_assignment" => {
                let (Some(token), Some(right)) = (
                    node.child_by_field_name("operator"),
                    node.child_by_field_name("right"),
                ) else {
                    return;
                };
                let Some(op) = token.kind().strip_suffix('=') else {
                    return;
                };
                if let Some(replacement) = arithmetic(op, None, right, source) {
                    let replacement = format!("{replacement}=");
                    out.push(Edit::of(Operator::Arithmetic, token, replacement).shown_in(node));
                }
            }
            "unary_operator" => {
                let (Some(token), Some(argument)) = (
                    node.child_by_field_name("operator"),
                    node.child_by_field_name("argument"),
                ) else {
                    return;
                };
                // `-0` is `0`.
                if token.kind() == "-" && !is_number(argument, source, 0) {
                    let edit = Edit::of(Operator::Arithmetic, node, text(argument, source));
                    out.push(edit.shown_in(readable(node)));
                }
            }
            "if_statement" | "elif_clause" | "while_statement" => {
                if let Some(condition) = node.child_by_field_name("condition") {
                    negate(condition, source, out);
                }
            }
            "conditional_expression" => {
                if let [_, condition, _] = expressions(node).as_slice() {
                    negate(*condition, source, out);
                }
            }
            "integer" | "float" => {
                if let Some(replacement) = number(node.kind(), text(node, source)) {
                    let edit = Edit::of(Operator::Constant, node, replacement);
                    out.push(edit.shown_in(readable(node)));
                }
            }
            "true" | "false" => {
                let replacement = if node.kind() == "true" {
                    "False"
                } else {
                    "True"
                };
                out.push(Edit::of(Operator::Constant, node, replacement).shown_in(readable(node)));
            }
            "string" => {
                if let Some(replacement) = empty_string(node, source) {
                    // Strings are often messages and keys: weaker mutants than the rest.
                    let edit = Edit::of(Operator::Constant, node, replacement);
                    out.push(edit.shown_in(readable(node)).ranked(1));
                }
            }
            "return_statement" => {
                let values = expressions(node);
                let (Some(first), Some(last)) = (values.first(), values.last()) else {
                    return;
                };
                if values.len() == 1 && first.kind() == "none" {
                    return;
                }
                out.push(Edit {
                    operator: Operator::Return,
                    range: first.start_byte()..last.end_byte(),
                    text: "None".into(),
                    at: first.start_position(),
                    context: node.byte_range(),
                    rank: 0,
                });
            }
            "expression_statement" => {
                if let [only] = expressions(node).as_slice() {
                    let call = if only.kind() == "await" {
                        named_children(*only).into_iter().next()
                    } else {
                        Some(*only)
                    };
                    if call.is_some_and(|c| c.kind() == "call") {
                        out.push(Edit::of(Operator::RemoveCall, node, "pass"));
                    }
                }
            }
            "raise_statement" => out.push(Edit::of(Operator::RemoveRaise, node, "pass")),
            _ => {}
        }
    }
}

/// The named children of `node` that are code, not comments.
fn expressions(node: Node) -> Vec<Node> {
    named_children(node)
        .into_iter()
        .filter(|c| c.kind() != "comment")
        .collect()
}

fn is_dunder(name: &str) -> bool {
    name.len() > 4 && name.starts_with("__") && name.ends_with("__")
}

/// The replacement of arithmetic operator `op` with operands `left` (absent in augmented
/// assignments) and `right`, unless the mutant would tell nothing.
fn arithmetic(op: &str, left: Option<Node>, right: Node, source: &str) -> Option<&'static str> {
    let (_, replacement) = PY_ARITHMETIC.iter().find(|(o, _)| *o == op)?;
    // Arithmetic on a literal sequence or mapping is a `TypeError` after the swap.
    let literal = |n: Node| {
        matches!(
            n.kind(),
            "string"
                | "concatenated_string"
                | "list"
                | "list_comprehension"
                | "tuple"
                | "set"
                | "set_comprehension"
                | "dictionary"
                | "dictionary_comprehension"
        )
    };
    if literal(right) || left.is_some_and(literal) {
        return None;
    }
    // `x + 0` is `x - 0`; `x * 1` is `x / 1` but for the type.
    let neutral = match op {
        "+" | "-" => is_number(right, source, 0),
        "*" | "/" => is_number(right, source, 1),
        _ => false,
    };
    (!neutral).then_some(*replacement)
}

/// Whether `node` is a number literal equal to `value`.
fn is_number(node: Node, source: &str, value: u8) -> bool {
    if !matches!(node.kind(), "integer" | "float") {
        return false;
    }
    let digits = text(node, source).replace('_', "");
    let digits = digits.to_ascii_lowercase();
    if digits.ends_with('j') || digits.ends_with('l') {
        return false;
    }
    let parsed = match digits.get(..2) {
        Some("0x") => u128::from_str_radix(&digits[2..], 16)
            .ok()
            .map(|n| n as f64),
        Some("0o") => u128::from_str_radix(&digits[2..], 8).ok().map(|n| n as f64),
        Some("0b") => u128::from_str_radix(&digits[2..], 2).ok().map(|n| n as f64),
        _ => digits.parse::<f64>().ok(),
    };
    parsed == Some(f64::from(value))
}

/// The mutated literal: `0` → `1`, `1` → `0`, otherwise one more, written in the same base.
/// `None` for complex and Python 2 long literals and for values where one more is the same.
fn number(kind: &str, literal: &str) -> Option<String> {
    let digits = literal.replace('_', "");
    if digits.ends_with(['j', 'J', 'l', 'L']) {
        return None;
    }
    if kind == "float" {
        let value: f64 = digits.parse().ok()?;
        let mutated = if value == 0.0 {
            1.0
        } else if value == 1.0 {
            0.0
        } else {
            value + 1.0
        };
        // Too large for one more to change anything.
        return (mutated.is_finite() && mutated != value).then(|| format!("{mutated:?}"));
    }
    let (prefix, radix) = match digits.get(..2).map(str::to_ascii_lowercase).as_deref() {
        Some("0x") => (&digits[..2], 16),
        Some("0o") => (&digits[..2], 8),
        Some("0b") => (&digits[..2], 2),
        _ => ("", 10),
    };
    let value = u128::from_str_radix(&digits[prefix.len()..], radix).ok()?;
    let mutated = match value {
        0 => 1,
        1 => 0,
        v => v.checked_add(1)?,
    };
    Some(match radix {
        16 if digits[2..].bytes().any(|b| b.is_ascii_uppercase()) => {
            format!("{prefix}{mutated:X}")
        }
        16 => format!("{prefix}{mutated:x}"),
        8 => format!("{prefix}{mutated:o}"),
        2 => format!("{prefix}{mutated:b}"),
        _ => mutated.to_string(),
    })
}

/// An empty string literal with the same prefix (`b`, `r`; `f` dropped) and quote, for a
/// non-empty string outside f-string replacement fields.
fn empty_string(node: Node, source: &str) -> Option<String> {
    let mut cursor = node.walk();
    let children: Vec<Node> = node.children(&mut cursor).collect();
    let (start, end) = (children.first()?, children.last()?);
    if start.kind() != "string_start" || end.kind() != "string_end" {
        return None;
    }
    if start.end_byte() >= end.start_byte() {
        return None;
    }
    // `"" % args` raises `TypeError` whenever it runs.
    if let Some(parent) = node.parent()
        && parent.kind() == "binary_operator"
        && parent
            .child_by_field_name("operator")
            .is_some_and(|o| o.kind() == "%")
        && parent.child_by_field_name("left") == Some(node)
    {
        return None;
    }
    let mut ancestor = node.parent();
    while let Some(a) = ancestor {
        if matches!(a.kind(), "interpolation" | "format_specifier") {
            return None;
        }
        ancestor = a.parent();
    }
    let opening = text(*start, source);
    let quote = opening.chars().find(|c| matches!(c, '"' | '\''))?;
    let prefix: String = opening
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .filter(|c| !matches!(c, 'f' | 'F' | 't' | 'T'))
        .collect();
    Some(format!("{prefix}{quote}{quote}"))
}

/// `not (c)` for condition `c`, or `c` for `not c`; constant conditions are left to the
/// constant operator.
fn negate(condition: Node, source: &str, out: &mut Vec<Edit>) {
    let replacement = match condition.kind() {
        "true" | "false" => return,
        "not_operator" => match condition.child_by_field_name("argument") {
            Some(argument) => text(argument, source).to_string(),
            None => return,
        },
        "parenthesized_expression" => format!("not {}", text(condition, source)),
        _ => format!("not ({})", text(condition, source)),
    };
    out.push(Edit::of(Operator::Condition, condition, replacement));
}

/// The node to show around a small `node` (a literal, `-x`): its parent expression or
/// statement when that is short, e.g. `x[0]`, `n + 1`, `return 0`, `retries = 3`.
fn readable(node: Node) -> Node {
    // Nodes that do not read well alone: keep going up through them.
    const CONNECTORS: &[&str] = &[
        "argument_list",
        "keyword_argument",
        "unary_operator",
        "parenthesized_expression",
        "expression_list",
        "pair",
        "list",
        "tuple",
        "set",
        "dictionary",
        "slice",
        "concatenated_string",
    ];
    let fits = |n: Node| {
        n.start_position().row == n.end_position().row && n.byte_range().len() <= MAX_SHOWN / 2
    };
    let mut shown = node;
    // The last node that reads well alone: `("no data")` does not, `f("no data")` does.
    let mut whole = node;
    while let Some(parent) = shown.parent() {
        if !fits(parent) || matches!(parent.kind(), "block" | "module" | "expression_statement") {
            break;
        }
        shown = parent;
        if !matches!(
            parent.kind(),
            "argument_list" | "parenthesized_expression" | "expression_list"
        ) {
            whole = parent;
        }
        if !CONNECTORS.contains(&parent.kind()) {
            break;
        }
    }
    whole
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const SAMPLE: &str = r#""""Inventory helpers."""

import math
from typing import Optional

__all__ = ["restock", "price"]

LIMIT = 10


def cached(func):
    return func


@cached
def restock(items: list[int], threshold: int = 5, label: str = "x") -> Optional[int]:
    """Top up low items."""
    total = 0
    for i, n in enumerate(items):
        if n < threshold and n != 0:
            items[i] = n + threshold * 2
            total += 1
        elif n is None:
            raise ValueError("missing count")
    log("restocked")
    while total > LIMIT:
        total -= 1
    ready = not math.isnan(total / 2.5)
    return total if ready else -1


class Shop:
    retries = 3

    def total(self, prices):
        return sum(prices) * self.retries


def price(amount, rate=0.5):
    if not amount:
        return None
    return f"{amount * rate:.2f} {'EUR'}"
"#;

    fn all_lines(source: &str) -> BTreeSet<u32> {
        (1..=u32::try_from(source.lines().count()).unwrap()).collect()
    }

    /// The 1-based number of the first line containing `needle`.
    fn line_of(source: &str, needle: &str) -> u32 {
        let i = source
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line contains {needle:?}"));
        u32::try_from(i + 1).unwrap()
    }

    fn parses(source: &str) -> bool {
        !parse(Language::Python, source).root_node().has_error()
    }

    fn check_invariants(source: &str, lines: &BTreeSet<u32>, found: &[Mutant]) {
        let mut ids = HashSet::new();
        for m in found {
            assert!(ids.insert(m.id.clone()), "duplicate id {}", m.id);
            assert!(lines.contains(&m.line), "{} outside the lines", m.id);
            assert_ne!(m.source, source, "{} changes nothing", m.id);
            assert_ne!(m.original, m.replacement, "{}", m.id);
            assert!(parses(&m.source), "{} does not parse:\n{}", m.id, m.source);
            let operator = format!(":{}", m.operator.as_str());
            assert!(m.id.contains(&operator), "{} is not {operator}", m.id);
        }
    }

    #[test]
    fn every_operator_makes_the_expected_change() {
        use Operator::*;
        let lines = all_lines(SAMPLE);
        let found = mutants(SAMPLE, &lines, 7, usize::MAX);
        check_invariants(SAMPLE, &lines, &found);
        // (a text on the line, operator, original, replacement); an empty original: no
        // mutant of the operator on that line.
        let expected: &[(&str, Operator, &str, &str)] = &[
            ("total = 0", Constant, "total = 0", "total = 1"),
            ("if n <", Comparison, "n < threshold", "n <= threshold"),
            ("if n <", Comparison, "n < threshold", "n > threshold"),
            ("if n <", Comparison, "n != 0", "n == 0"),
            (
                "if n <",
                Boolean,
                "n < threshold and n != 0",
                "n < threshold or n != 0",
            ),
            (
                "if n <",
                Condition,
                "n < threshold and n != 0",
                "not (n < threshold and n != 0)",
            ),
            (
                "items[i] =",
                Arithmetic,
                "n + threshold * 2",
                "n - threshold * 2",
            ),
            ("items[i] =", Arithmetic, "threshold * 2", "threshold / 2"),
            ("items[i] =", Constant, "threshold * 2", "threshold * 3"),
            ("total += 1", Arithmetic, "total += 1", "total -= 1"),
            ("total += 1", Constant, "total += 1", "total += 0"),
            ("elif n is None", Comparison, "n is None", "n is not None"),
            ("elif n is None", Condition, "n is None", "not (n is None)"),
            (
                "raise ValueError",
                RemoveRaise,
                r#"raise ValueError("missing count")"#,
                "pass",
            ),
            (
                "raise ValueError",
                Constant,
                r#"ValueError("missing count")"#,
                r#"ValueError("")"#,
            ),
            ("log(", RemoveCall, r#"log("restocked")"#, "pass"),
            ("log(", Constant, r#"log("restocked")"#, r#"log("")"#),
            ("while total", Comparison, "total > LIMIT", "total >= LIMIT"),
            (
                "while total",
                Condition,
                "total > LIMIT",
                "not (total > LIMIT)",
            ),
            ("total -= 1", Arithmetic, "total -= 1", "total += 1"),
            ("ready = not", RemoveCall, "", ""),
            ("ready = not", Arithmetic, "total / 2.5", "total * 2.5"),
            ("ready = not", Constant, "total / 2.5", "total / 3.5"),
            (
                "return total if",
                Return,
                "return total if ready else -1",
                "return None",
            ),
            ("return total if", Condition, "ready", "not (ready)"),
            (
                "return total if",
                Arithmetic,
                "total if ready else -1",
                "total if ready else 1",
            ),
            (
                "return total if",
                Constant,
                "total if ready else -1",
                "total if ready else -0",
            ),
            ("if not amount", Condition, "not amount", "amount"),
            ("return None", Return, "", ""),
            (
                "return f\"",
                Return,
                r#"return f"{amount * rate:.2f} {'EUR'}""#,
                "return None",
            ),
            ("return f\"", Arithmetic, "amount * rate", "amount / rate"),
            (
                "return sum",
                Arithmetic,
                "sum(prices) * self.retries",
                "sum(prices) / self.retries",
            ),
            (
                "return f\"",
                Constant,
                r#"return f"{amount * rate:.2f} {'EUR'}""#,
                r#"return """#,
            ),
        ];
        for &(needle, operator, original, replacement) in expected {
            let line = line_of(SAMPLE, needle);
            let on_line: Vec<_> = found
                .iter()
                .filter(|m| m.line == line && m.operator == operator)
                .map(|m| (m.original.as_str(), m.replacement.as_str()))
                .collect();
            if original.is_empty() {
                assert!(on_line.is_empty(), "line {line}: {on_line:?}");
            } else {
                assert!(
                    on_line.contains(&(original, replacement)),
                    "no {operator:?} `{original}` → `{replacement}` on line {line}: {on_line:?}"
                );
            }
        }
        // `'EUR'` is inside a replacement field: only the f-string as a whole changes.
        let line = line_of(SAMPLE, "return f\"");
        let constants = found
            .iter()
            .filter(|m| m.line == line && m.operator == Constant);
        assert_eq!(constants.count(), 1);
        // The id names the place of the change, where the mutated source has it.
        let m = found
            .iter()
            .find(|m| m.original == "n < threshold" && m.replacement == "n <= threshold")
            .unwrap();
        let line = line_of(SAMPLE, "if n <");
        assert_eq!(m.id, format!("L{line}:C14:cmp"));
        let mutated = m.source.lines().nth(line as usize - 1).unwrap();
        assert_eq!(mutated, "        if n <= threshold and n != 0:");
        fn rest(s: &str) -> Vec<&str> {
            s.lines().filter(|l| !l.contains("threshold and")).collect()
        }
        assert_eq!(rest(&m.source), rest(SAMPLE));
    }

    #[test]
    fn never_mutated() {
        let lines = all_lines(SAMPLE);
        let found = mutants(SAMPLE, &lines, 1, usize::MAX);
        for needle in [
            "Inventory helpers",
            "import math",
            "from typing",
            "__all__",
            // Module level: run by the import.
            "LIMIT = 10",
            "retries = 3",
            "@cached",
            "def restock",
            "Top up low items",
            "def price",
        ] {
            let line = line_of(SAMPLE, needle);
            let on_line: Vec<_> = found
                .iter()
                .filter(|m| m.line == line)
                .map(|m| &m.id)
                .collect();
            assert!(on_line.is_empty(), "{needle:?} mutated: {on_line:?}");
        }
    }

    #[test]
    fn only_covered_lines_are_mutated() {
        let lines: BTreeSet<u32> = [line_of(SAMPLE, "if n <"), line_of(SAMPLE, "log(")].into();
        let found = mutants(SAMPLE, &lines, 3, usize::MAX);
        check_invariants(SAMPLE, &lines, &found);
        let seen: BTreeSet<u32> = found.iter().map(|m| m.line).collect();
        assert_eq!(seen, lines);
        assert!(mutants(SAMPLE, &BTreeSet::new(), 3, usize::MAX).is_empty());
    }

    #[test]
    fn a_multi_line_statement_counts_for_its_first_line() {
        let source = "def f(a, b):\n    total = compute(\n        a + 1,\n        b,\n    )\n";
        let found = mutants(source, &[2].into(), 0, usize::MAX);
        let plus = found
            .iter()
            .find(|m| m.original == "a + 1" && m.replacement == "a - 1");
        assert_eq!(
            plus.map(|m| (m.line, m.id.as_str())),
            Some((2, "L3:C11:arith"))
        );
        // When coverage reports line 3 itself, the mutant counts for it.
        let found = mutants(source, &[3].into(), 0, usize::MAX);
        assert!(!found.is_empty() && found.iter().all(|m| m.line == 3));
        assert!(mutants(source, &[1, 4, 5].into(), 0, usize::MAX).is_empty());
    }

    #[test]
    fn same_inputs_same_mutants() {
        let lines = all_lines(SAMPLE);
        let all = mutants(SAMPLE, &lines, 11, usize::MAX);
        // Without a budget the seed changes nothing.
        assert_eq!(all, mutants(SAMPLE, &lines, 99, usize::MAX));
        for seed in [0, 11, 12, u64::MAX] {
            let picked = mutants(SAMPLE, &lines, seed, 8);
            assert_eq!(picked, mutants(SAMPLE, &lines, seed, 8));
            assert_eq!(picked.len(), 8);
            // Drawn from the same candidates, with the same ids, in document order.
            let positions: Vec<usize> = picked
                .iter()
                .map(|m| all.iter().position(|a| a == m).expect("a candidate"))
                .collect();
            assert!(positions.is_sorted(), "{positions:?}");
        }
        let picks: BTreeSet<Vec<String>> = (0..16)
            .map(|seed| {
                mutants(SAMPLE, &lines, seed, 12)
                    .into_iter()
                    .map(|m| m.id)
                    .collect()
            })
            .collect();
        assert!(picks.len() > 1, "the seed never changes the pick");
    }

    #[test]
    fn the_budget_is_spread_across_lines() {
        let body: String = (0..10)
            .map(|i| format!("    x{i} = (a < {i} and b > {i}) + c * {i} - d // {i} % 7\n"))
            .collect();
        let source = format!("def f(a, b, c, d):\n{body}    return x0\n");
        let lines: BTreeSet<u32> = (2..=11).collect();
        for seed in 0..8 {
            let found = mutants(&source, &lines, seed, 10);
            assert_eq!(found.len(), 10);
            let distinct: BTreeSet<u32> = found.iter().map(|m| m.line).collect();
            assert!(distinct.len() >= 5, "seed {seed}: {distinct:?}");
            check_invariants(&source, &lines, &found);
        }
        // Fewer than one per line: spread over the range, not taken from the top.
        let picked: Vec<u32> = mutants(&source, &lines, 0, 3)
            .iter()
            .map(|m| m.line)
            .collect();
        assert_eq!(picked, [2, 6, 10]);
        assert!(mutants(&source, &lines, 0, 0).is_empty());
        assert_eq!(
            spread(10).collect::<Vec<_>>(),
            [0, 8, 4, 2, 6, 1, 9, 5, 3, 7]
        );
        assert_eq!(spread(1).collect::<Vec<_>>(), [0]);
        assert_eq!(spread(0).count(), 0);
    }

    #[test]
    fn equivalent_and_trivial_mutants_are_skipped() {
        let source = "\
def f(x, xs):
    a = x + 0
    b = x * 1
    c = \"-\" * 40
    d = \"%s\" % x
    xs += [1]
    e = -0
    while True:
        return None
";
        let lines = all_lines(source);
        let found = mutants(source, &lines, 0, usize::MAX);
        check_invariants(source, &lines, &found);
        let arithmetic: Vec<_> = found
            .iter()
            .filter(|m| m.operator == Operator::Arithmetic)
            .map(|m| &m.original)
            .collect();
        assert!(arithmetic.is_empty(), "{arithmetic:?}");
        assert!(!found.iter().any(|m| m.operator == Operator::Condition));
        assert!(!found.iter().any(|m| m.operator == Operator::Return));
        // The constant operator covers `while True`.
        assert!(found.iter().any(|m| m.replacement == "False"));
    }

    #[test]
    fn numbers_keep_their_base_and_strings_their_prefix() {
        assert_eq!(number("integer", "0").as_deref(), Some("1"));
        assert_eq!(number("integer", "1").as_deref(), Some("0"));
        assert_eq!(number("integer", "1_000").as_deref(), Some("1001"));
        assert_eq!(number("integer", "0xFF").as_deref(), Some("0x100"));
        assert_eq!(number("integer", "0x1f").as_deref(), Some("0x20"));
        assert_eq!(number("integer", "0o17").as_deref(), Some("0o20"));
        assert_eq!(number("integer", "0b1").as_deref(), Some("0b0"));
        assert_eq!(number("integer", "2j"), None);
        assert_eq!(number("float", "0.0").as_deref(), Some("1.0"));
        assert_eq!(number("float", "1.").as_deref(), Some("0.0"));
        assert_eq!(number("float", ".5").as_deref(), Some("1.5"));
        assert_eq!(number("float", "1e300"), None);
        let source = "def f():\n    a = rb'x'\n    b = f\"{a}!\"\n    c = '''doc'''\n    d = ''\n    e = 'x' 'y'\n";
        let found = mutants(source, &all_lines(source), 0, usize::MAX);
        let shown: Vec<(&str, &str)> = found
            .iter()
            .map(|m| (m.original.as_str(), m.replacement.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("a = rb'x'", "a = rb''"),
                ("b = f\"{a}!\"", "b = \"\""),
                ("c = '''doc'''", "c = ''"),
                ("e = 'x' 'y'", "e = '' 'y'"),
                ("e = 'x' 'y'", "e = 'x' ''"),
            ]
        );
    }

    #[test]
    fn long_changes_are_abbreviated() {
        let args: Vec<String> = (0..30).map(|i| format!("argument_{i}")).collect();
        let source = format!(
            "def f():\n    record(\n        {},\n    )\n",
            args.join(",\n        ")
        );
        let found = mutants(&source, &[2].into(), 0, usize::MAX);
        let [removed] = found.as_slice() else {
            panic!("{found:#?}")
        };
        assert_eq!(removed.replacement, "pass");
        assert!(
            removed
                .original
                .starts_with("record( argument_0, argument_1,")
        );
        assert!(removed.original.ends_with('…') && removed.original.chars().count() == MAX_SHOWN);
        // A swap in a long expression shows the line around it.
        let terms: Vec<String> = (0..20).map(|i| format!("weight_{i}")).collect();
        let source = format!("def f():\n    return {} > limit\n", terms.join(" + "));
        let found = mutants(&source, &[2].into(), 0, usize::MAX);
        let swap = found
            .iter()
            .find(|m| m.operator == Operator::Comparison)
            .unwrap();
        assert_eq!(
            swap.original,
            "…weight_14 + weight_15 + weight_16 + weight_17 + weight_18 + weight_19 > limit"
        );
        assert_eq!(
            swap.replacement,
            "…weight_14 + weight_15 + weight_16 + weight_17 + weight_18 + weight_19 >= limit"
        );
    }

    #[test]
    fn a_broken_file_has_no_mutants() {
        assert!(mutants("def f(:\n    return 1\n", &[2].into(), 0, 10).is_empty());
    }

    #[test]
    fn standard_library_mutants_parse() {
        let dir = std::path::Path::new("/root/.pyenv/versions/3.11.7/lib/python3.11");
        for name in [
            "textwrap.py",
            "fractions.py",
            "colorsys.py",
            "statistics.py",
        ] {
            let path = dir.join(name);
            let Ok(source) = std::fs::read_to_string(&path) else {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("skipped: {} is not here", path.display());
                }
                continue;
            };
            let lines = all_lines(&source);
            let found = mutants(&source, &lines, 0, usize::MAX);
            assert!(found.len() > 50, "{name}: only {} mutants", found.len());
            check_invariants(&source, &lines, &found);
        }
    }
}
