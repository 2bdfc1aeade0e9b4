//! Google's Gemini API, the second route (docs/providers.md): NanoBanana
//! stills through `generateContent`, Veo 3.1 clips through
//! `predictLongRunning`, behind the same `Generator` trait as G-Labs.
//! The simulator's `google` room speaks the same protocol over loopback.

pub mod client;
pub mod errors;
pub mod request;

pub use client::{Client, DEFAULT_BASE};
