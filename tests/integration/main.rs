//! nbbuild's integration tests: one crate, driven by the `Test` builder in
//! `harness`, running the real binary.

mod bad_input;
mod build;
mod cache_cli;
mod chaos;
mod compile;
mod faults;
mod flaky;
mod google;
mod harness;
mod holder;
mod identity;
mod incremental;
mod keys;
mod mirror;
mod mirror_build;
mod qa;
mod qa_loop;
mod reattach;
mod remote;
mod resume;
mod review;
mod roundtrip;
mod s3;
mod uptodate;
mod validate;
mod verify;
