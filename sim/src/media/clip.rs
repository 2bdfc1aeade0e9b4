//! Clips: the scene with a bouncing ball, encoded as H.264 in an MP4.

use super::canvas::{hsv, Canvas};

use super::rng::Rng;
use super::scene::{paint_scene, palette};
use super::{h264, mp4};

/// Frames per second of every clip.
pub(super) const CLIP_FPS: u32 = 6;

/// Pixel size of a clip for a G-Labs video `aspect_ratio` (`16:9` for
/// anything but `9:16`).
pub fn clip_size(aspect_ratio: &str) -> (u32, u32) {
    match aspect_ratio {
        "9:16" => (72, 128),
        _ => (128, 72),
    }
}

/// A small valid 16:9 MP4 of `seconds` seconds (clamped to 1..=60); see
/// [`clip_sized`].
pub fn clip(prompt: &str, variant: u64, seconds: u32) -> Vec<u8> {
    let (w, h) = clip_size("16:9");
    clip_sized(prompt, variant, seconds, w, h)
}

/// A small valid MP4 (H.264 baseline in ISO BMFF) of `width` x `height`
/// pixels (rounded to even, clamped to 16..=640) and `seconds` seconds
/// (clamped to 1..=60), deterministic in all its arguments.
pub fn clip_sized(prompt: &str, variant: u64, seconds: u32, width: u32, height: u32) -> Vec<u8> {
    let w = (width.clamp(16, 640) + 1) & !1;
    let h = (height.clamp(16, 640) + 1) & !1;
    let seconds = seconds.clamp(1, 60);
    let frames = render_clip_frames(prompt, variant, seconds, w, h);
    let stream = h264::encode(&frames, w, h);
    mp4::mux(&stream, w, h, prompt, variant)
}

/// The frames of a clip: the still's scene (without the text band) with a
/// ball bouncing across it one macroblock (16 pixels) per frame, so each
/// frame changes only two macroblocks and the file stays small.
fn render_clip_frames(prompt: &str, variant: u64, seconds: u32, w: u32, h: u32) -> Vec<Canvas> {
    let mut base = Canvas::new(w, h);
    paint_scene(&mut base, prompt, variant, false);
    let pal = palette(prompt);
    let vb = variant.to_le_bytes();
    let mut rng = Rng::new(&[b"clip", prompt.as_bytes(), &vb]);
    let ball = hsv(pal.hue + 0.5, 0.9, 1.0);
    // The ball moves on the grid of whole macroblocks inside the picture.
    let (cols, rows) = ((w / 16).max(1) as i64, (h / 16).max(1) as i64);
    let (mut x, mut y) = (rng.range(0, cols), rng.range(0, rows));
    let mut vx = if rng.unit() < 0.5 { 1 } else { -1 };
    let mut vy = if rng.unit() < 0.5 { 1 } else { -1 };
    let n = (seconds * CLIP_FPS) as usize;
    let mut frames = Vec::with_capacity(n);
    for _ in 0..n {
        let mut f = Canvas {
            w,
            h,
            px: base.px.clone(),
        };
        f.disc(x * 16 + 8, y * 16 + 8, 6, ball);
        frames.push(f);
        for (pos, v, limit) in [(&mut x, &mut vx, cols), (&mut y, &mut vy, rows)] {
            if limit == 1 {
                continue;
            }
            if !(0..limit).contains(&(*pos + *v)) {
                *v = -*v;
            }
            *pos += *v;
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::is_mp4;

    #[test]
    fn clips_are_mp4s_that_differ() {
        let a = clip("a red fox", 1, 4);
        let b = clip("a red fox", 2, 4);
        assert!(is_mp4(&a) && is_mp4(&b));
        assert_ne!(a, b);
        assert_eq!(a, clip("a red fox", 1, 4));
        let v = clip_sized("tall", 3, 8, 72, 128);
        assert!(is_mp4(&v));
        assert!(!is_mp4(&a[..a.len() - 1]));
        assert!(!is_mp4(b"\0\0\0\x08moov"));
    }
}
