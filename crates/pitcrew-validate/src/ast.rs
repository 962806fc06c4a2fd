//! Small helpers over tree-sitter trees shared by the static rules.

use tree_sitter::Node;

/// The source text of `node`.
pub(crate) fn text<'s>(node: Node, source: &'s str) -> &'s str {
    source.get(node.byte_range()).unwrap_or("")
}

/// The 1-based line `node` starts on.
pub(crate) fn line(node: Node) -> u32 {
    u32::try_from(node.start_position().row + 1).unwrap_or(u32::MAX)
}

/// `node` and everything below it, in document order.
pub(crate) fn descendants(node: Node) -> impl Iterator<Item = Node> {
    let mut stack = vec![node];
    std::iter::from_fn(move || {
        let next = stack.pop()?;
        let mut cursor = next.walk();
        let children: Vec<Node> = next.named_children(&mut cursor).collect();
        stack.extend(children.into_iter().rev());
        Some(next)
    })
}

/// The named children of `node`.
pub(crate) fn named_children(node: Node) -> Vec<Node> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor).collect()
}

/// Whether any identifier below `node` is spelled `name`.
pub(crate) fn mentions(node: Node, source: &str, name: &str) -> bool {
    descendants(node).any(|n| n.kind() == "identifier" && text(n, source) == name)
}
