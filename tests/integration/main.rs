//! nbbuild's integration tests: one crate, driven by the `Test` builder in
//! `harness`, running the real binary.

mod compile;
mod harness;
mod keys;
mod roundtrip;
mod validate;
