//! nbbuild's integration tests: one crate, driven by the `Test` builder in
//! `harness`, running the real binary.

mod build;
mod cache_cli;
mod compile;
mod faults;
mod harness;
mod keys;
mod resume;
mod roundtrip;
mod validate;
