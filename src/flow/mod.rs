//! The `.nbflow` document: parse, round-trip write, validate.

pub mod document;
pub mod finding;
pub mod validate;

pub use document::{Flow, Kind, Node, ParseError, Tab};
pub use finding::{Finding, Severity};
