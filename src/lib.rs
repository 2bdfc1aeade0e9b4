//! nbbuild: a make-style, content-addressed build engine for PatchWork
//! `.nbflow` workflows.
//!
//! The engine core (`flow`, `prompt`, `names`, `compile`, `key`) is pure:
//! no tokio, no network, no terminal. I/O lives at the edges.

pub mod backoff;
pub mod cli;
pub mod commands;
pub mod compile;
pub mod config;
pub mod error;
pub mod exec;
pub mod flow;
pub mod generator;
pub mod glabs;
pub mod google;
pub mod holder;
pub mod http;
pub mod key;
pub mod migrate;
pub mod mirror;
pub mod models;
pub mod names;
pub mod output;
pub mod plan;
pub mod progress;
pub mod project;
pub mod prompt;
pub mod qa;
pub mod remote;
pub mod repair;
pub mod review;
pub mod schema;
pub mod selector;
pub mod settings;
pub mod synth;
pub mod uptodate;

/// Candidates per task unless `--candidates` says otherwise.
pub const DEFAULT_CANDIDATES: u32 = 4;

use cli::{Cli, Command};
use error::Result;

/// Run a parsed command line; the result is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Some(Command::Validate(a)) => commands::validate::run(&a),
        Some(Command::Graph(a)) => commands::graph::run(&a),
        Some(Command::Build(a)) => commands::build::run(&a),
        Some(Command::Plan(a)) => commands::plan::run(&a),
        Some(Command::Sim(a)) => commands::sim::run(&a),
        Some(Command::Cache(c)) => commands::cache::run(&c),
        Some(Command::Status(a)) => commands::status::run(&a),
        Some(Command::Explain(a)) => commands::explain::run(&a),
        Some(Command::Spend(a)) => commands::spend::run(&a),
        Some(Command::Review(a)) => commands::review::run(&a),
        Some(Command::Picks(a)) => commands::picks::run(&a),
        Some(Command::Remote(c)) => commands::remote::run(&c),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "nbbuild",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        None => commands::build::run(&cli.build),
    }
}
