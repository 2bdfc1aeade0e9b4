//! Google's Gemini API, the second route (docs/providers.md): NanoBanana
//! stills through `generateContent`, Veo 3.1 clips through
//! `predictLongRunning`, behind the same `Generator` trait as G-Labs.
//! The simulator's `google` room speaks the same protocol over loopback.
//!
//! `request` builds the bodies, `client` makes the calls, `answers` reads
//! what comes back, `errors` classifies Google's error bodies.

mod answers;
pub mod client;
pub mod errors;
pub mod request;

pub use client::{Client, DEFAULT_BASE};
