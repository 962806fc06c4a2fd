//! Validation of what a runtime produced. For now the in-process syntax gate; the validation
//! rules (file exists, not empty, test naming, …) will live here too.

mod syntax;

pub use syntax::{Language, SyntaxCheck, check_syntax};
