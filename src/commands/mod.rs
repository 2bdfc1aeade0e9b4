//! One file per subcommand.

pub mod build;
pub mod cache;
pub mod explain;
pub mod findings;
pub mod graph;
pub mod picks;
pub mod plan;
pub mod remote;
pub mod review;
pub mod sim;
pub mod spend;
pub mod status;
pub mod validate;
