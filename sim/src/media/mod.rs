//! Synthetic media for the simulator: deterministic PNG stills, small valid
//! MP4 clips, and the format checks the engine and the tests use.
//!
//! Everything here is a pure function of its arguments, so the same run order
//! gives the same bytes.
//!
//! * Stills: the background gradient comes from the prompt, the large pattern
//!   and the big number in the middle from the variant, and the first words of
//!   the prompt are printed across the top. A planted flaw is a red X in the
//!   top-right corner plus a `tEXt` chunk `nbbuild-sim-flaw` = `1`.
//! * Clips: H.264 (baseline, uncompressed `I_PCM` macroblocks, unchanged
//!   macroblocks skipped) in an ISO BMFF file with `ftyp`, `moov` (fast start)
//!   and `mdat`. They decode to a small picture in the still's style with a
//!   ball bouncing across it.

// The public surface, re-exported below.
mod checks;
mod clip;
mod still;

// How a picture is drawn: the scene on a canvas, in a block font, from a
// deterministic random stream.
mod canvas;
mod font;
mod rng;
mod scene;

// How a clip is encoded.
mod h264;
mod mp4;

pub use checks::{has_flaw, is_mp4, is_png};
pub use clip::{clip, clip_size, clip_sized};
pub use mp4::pad;
pub use still::{still, still_size};

/// The `tEXt` keyword that marks a still carrying a planted flaw.
pub const FLAW_KEYWORD: &str = "nbbuild-sim-flaw";
