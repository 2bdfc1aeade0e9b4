//! Stills: the scene encoded as a PNG with its marker text chunks.

use super::canvas::Canvas;
use super::scene::{paint_flaw, paint_scene};
use super::FLAW_KEYWORD;

/// A deterministic PNG of `width` x `height` pixels (each clamped to
/// 16..=4096) that visibly differs by prompt and by variant. When `flaw` is
/// true it shows a red X in the top-right corner and carries the `tEXt`
/// chunk [`FLAW_KEYWORD`] = `1`.
pub fn still(prompt: &str, variant: u64, width: u32, height: u32, flaw: bool) -> Vec<u8> {
    let w = width.clamp(16, 4096);
    let h = height.clamp(16, 4096);
    let mut canvas = Canvas::new(w, h);
    paint_scene(&mut canvas, prompt, variant, true);
    if flaw {
        paint_flaw(&mut canvas);
    }
    encode_png(&canvas, prompt, variant, flaw)
}

/// Pixel size of a still for a G-Labs `aspect_ratio` (`1:1` for anything
/// unknown).
pub fn still_size(aspect_ratio: &str) -> (u32, u32) {
    match aspect_ratio {
        "9:16" => (288, 512),
        "16:9" => (512, 288),
        "3:4" => (288, 384),
        "4:3" => (384, 288),
        _ => (384, 384),
    }
}

fn encode_png(c: &Canvas, prompt: &str, variant: u64, flaw: bool) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, c.w, c.h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Default);
        enc.set_adaptive_filter(png::AdaptiveFilterType::NonAdaptive);
        enc.set_filter(png::FilterType::Sub);
        let hash = blake3::hash(prompt.as_bytes()).to_hex();
        // Latin-1 keywords and ASCII texts: these cannot fail.
        let _ = enc.add_text_chunk("Software".into(), "nbbuild-sim".into());
        let _ = enc.add_text_chunk("nbbuild-sim-prompt".into(), hash[..16].to_string());
        let _ = enc.add_text_chunk("nbbuild-sim-variant".into(), variant.to_string());
        if flaw {
            let _ = enc.add_text_chunk(FLAW_KEYWORD.into(), "1".into());
        }
        let mut writer = enc.write_header().expect("valid PNG header");
        writer.write_image_data(&c.px).expect("image data fits");
        writer.finish().expect("PNG finishes");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{has_flaw, is_png};

    #[test]
    fn stills_are_pngs_that_differ() {
        let a = still("a red fox", 1, 384, 384, false);
        let b = still("a red fox", 2, 384, 384, false);
        let c = still("a blue whale", 1, 384, 384, false);
        assert!(is_png(&a) && is_png(&b) && is_png(&c));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, still("a red fox", 1, 384, 384, false));
        assert!(a.len() < 100_000, "{} bytes", a.len());
        assert!(!has_flaw(&a));
        let f = still("a red fox", 1, 288, 512, true);
        assert!(is_png(&f) && has_flaw(&f));
        assert!(!is_png(b"not a png"));
    }
}
