//! Produced files: how to make each one's bytes, on its first download.

use crate::media;

/// How to make a produced file's bytes (made on download).
#[derive(Clone, Debug)]
pub(super) enum Recipe {
    Still {
        prompt: String,
        variant: u64,
        width: u32,
        height: u32,
        flaw: bool,
    },
    Clip {
        prompt: String,
        variant: u64,
        seconds: u32,
        width: u32,
        height: u32,
    },
}

impl Recipe {
    /// The content type the file is served with.
    pub(super) fn mime(&self) -> &'static str {
        match self {
            Recipe::Still { .. } => "image/png",
            Recipe::Clip { .. } => "video/mp4",
        }
    }

    /// The file's bytes, clips padded by `padding` bytes (`clip_padding`).
    /// Slow for large files: call it off the async threads.
    pub(super) fn make(self, padding: u64) -> Vec<u8> {
        match self {
            Recipe::Still {
                prompt,
                variant,
                width,
                height,
                flaw,
            } => media::still(&prompt, variant, width, height, flaw),
            Recipe::Clip {
                prompt,
                variant,
                seconds,
                width,
                height,
            } => media::pad(
                media::clip_sized(&prompt, variant, seconds, width, height),
                padding,
            ),
        }
    }
}
