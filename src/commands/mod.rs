//! One file per subcommand.

pub mod graph;
pub mod validate;
