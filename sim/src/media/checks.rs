//! Format checks: is it a PNG or an MP4 (the engine's own checks, from the
//! store crate), does it carry the planted flaw (the simulator's).

use super::FLAW_KEYWORD;

pub use nbbuild_cache::media::{is_mp4, is_png};

/// True when `bytes` is a PNG carrying the planted-flaw marker chunk.
pub fn has_flaw(bytes: &[u8]) -> bool {
    let decoder = png::Decoder::new(bytes);
    let Ok(mut reader) = decoder.read_info() else {
        return false;
    };
    if flaw_in(reader.info()) {
        return true;
    }
    // Text chunks after the image data are only read with the frame.
    let size = reader.output_buffer_size();
    if size > 256 << 20 {
        return false;
    }
    let mut buf = vec![0; size];
    if reader.next_frame(&mut buf).is_err() {
        return false;
    }
    let _ = reader.finish();
    flaw_in(reader.info())
}

fn flaw_in(info: &png::Info<'_>) -> bool {
    info.uncompressed_latin1_text
        .iter()
        .any(|t| t.keyword == FLAW_KEYWORD && t.text.trim() == "1")
}
