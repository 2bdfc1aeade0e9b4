//! The picture stills and clips share: a background from the prompt, a
//! pattern and a big number from the variant, the prompt's first words, and
//! the visible planted flaw.

use super::canvas::{hsv, mix, Canvas, Rgb};
use super::font::text_width;
use super::rng::Rng;

/// The colours a prompt gives: two background hues and a text colour.
pub(super) struct Palette {
    top: Rgb,
    bottom: Rgb,
    pub(super) hue: f64,
}

pub(super) fn palette(prompt: &str) -> Palette {
    let mut rng = Rng::new(&[b"palette", prompt.as_bytes()]);
    let hue = rng.unit();
    let spread = 0.08 + rng.unit() * 0.25;
    let top = hsv(hue, 0.55 + rng.unit() * 0.3, 0.75 + rng.unit() * 0.2);
    let bottom = hsv(
        hue + spread,
        0.6 + rng.unit() * 0.3,
        0.3 + rng.unit() * 0.25,
    );
    Palette { top, bottom, hue }
}

/// The prompt's first words, upper-cased, on at most two lines that fit
/// `max_chars` each.
pub(super) fn label_lines(prompt: &str, max_chars: usize) -> Vec<String> {
    let clean: String = prompt
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let mut lines = vec![String::new()];
    for word in clean.split(' ').filter(|w| !w.is_empty()) {
        let word: String = word.chars().take(max_chars).collect();
        let cur = lines.last_mut().expect("one line at least");
        let need = if cur.is_empty() {
            word.chars().count()
        } else {
            cur.chars().count() + 1 + word.chars().count()
        };
        if need <= max_chars {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(&word);
        } else if lines.len() < 2 {
            lines.push(word);
        } else {
            let cur = lines.last_mut().expect("one line at least");
            let room = max_chars.saturating_sub(cur.chars().count());
            if room >= 3 {
                cur.push_str(&".".repeat(room.min(3)));
            }
            break;
        }
    }
    lines.retain(|l| !l.is_empty());
    lines
}

/// Paint the background (from the prompt), the variant's pattern, the
/// variant number and, when `label` is set, the prompt's first words.
pub(super) fn paint_scene(c: &mut Canvas, prompt: &str, variant: u64, label: bool) {
    let pal = palette(prompt);
    let (w, h) = (c.w as i64, c.h as i64);
    for y in 0..h {
        let row = mix(pal.top, pal.bottom, y as f64 / (h - 1).max(1) as f64);
        let start = (y * w * 3) as usize;
        for px in c.px[start..start + (w * 3) as usize].chunks_exact_mut(3) {
            px.copy_from_slice(&row);
        }
    }

    // The variant's arrangement: a layout chosen by the variant itself (so
    // neighbouring candidates always differ in kind) with colours and
    // positions drawn from the prompt and the variant.
    let vb = variant.to_le_bytes();
    let mut rng = Rng::new(&[b"pattern", prompt.as_bytes(), &vb]);
    let accent = hsv(pal.hue + 0.5 + rng.unit() * 0.2 - 0.1, 0.7, 0.95);
    let accent2 = hsv(pal.hue + 0.25 + rng.unit() * 0.1, 0.5, 1.0);
    let dark = hsv(pal.hue, 0.6, 0.18);
    let m = w.min(h);
    match variant % 5 {
        0 => {
            // concentric rings
            let (cx, cy) = (rng.range(w / 4, 3 * w / 4), rng.range(h / 4, 3 * h / 4));
            let step = (m / 10).max(4);
            for k in (1..8).rev() {
                let col = if k % 2 == 0 { accent } else { accent2 };
                c.ring(cx, cy, (k - 1) * step + step / 2, k * step, col);
            }
        }
        1 => {
            // diagonal stripes
            let period = (m / 6).max(6);
            let dir = if rng.unit() < 0.5 { 1 } else { -1 };
            for y in 0..h {
                for x in 0..w {
                    if (x + dir * y).rem_euclid(period) < period / 2 {
                        c.blend(x, y, accent, 0.55);
                    }
                }
            }
        }
        2 => {
            // a checkerboard of large tiles
            let tile = (m / 4).max(4);
            for ty in 0..(h / tile + 1) {
                for tx in 0..(w / tile + 1) {
                    if (tx + ty) % 2 == 0 {
                        c.shade_rect(
                            tx * tile,
                            ty * tile,
                            (tx + 1) * tile,
                            (ty + 1) * tile,
                            accent,
                            0.5,
                        );
                    }
                }
            }
        }
        3 => {
            // scattered discs
            for k in 0..9 {
                let r = rng.range(m / 14, m / 6).max(2);
                let col = if k % 2 == 0 { accent } else { accent2 };
                c.disc(rng.range(0, w), rng.range(0, h), r, col);
            }
        }
        _ => {
            // mountains: triangles along the bottom
            let n = rng.range(3, 6);
            for k in 0..n {
                let base = w / n;
                let x0 = k * base - base / 3;
                let x1 = (k + 1) * base + base / 3;
                let peak = rng.range(h / 4, h / 2);
                let col = if k % 2 == 0 { accent } else { accent2 };
                c.triangle([(x0, h), (x1, h), ((x0 + x1) / 2, peak)], col);
            }
        }
    }

    // The variant number, large, on a dark plate.
    let digits = variant.to_string();
    let scale = ((m / 4) / 7).max(2);
    let tw = text_width(&digits, scale);
    let th = 7 * scale;
    let (x0, y0) = ((w - tw) / 2, (h - th) / 2 + if label { h / 16 } else { 0 });
    let pad = scale * 2;
    c.shade_rect(x0 - pad, y0 - pad, x0 + tw + pad, y0 + th + pad, dark, 0.78);
    c.text(x0 + scale / 2, y0 + scale / 2, &digits, scale, [0, 0, 0]);
    c.text(x0, y0, &digits, scale, [255, 255, 255]);

    if label {
        let scale = (m / 144).max(1);
        let max_chars = ((w - 8) / (6 * scale)).max(1) as usize;
        let lines = label_lines(prompt, max_chars);
        let band = (lines.len() as i64) * 9 * scale + 6 * scale;
        if !lines.is_empty() {
            c.shade_rect(0, 0, w, band, [0, 0, 0], 0.55);
            for (i, line) in lines.iter().enumerate() {
                c.text(
                    4,
                    3 * scale + i as i64 * 9 * scale,
                    line,
                    scale,
                    [255, 255, 255],
                );
            }
        }
    }
}

/// The visible planted flaw: a red X on a white disc in the top-right corner.
pub(super) fn paint_flaw(c: &mut Canvas) {
    let (w, h) = (c.w as f64, c.h as f64);
    let r = (w.min(h) / 9.0).max(6.0);
    let (cx, cy) = (w - r - 6.0, h.min(w) / 9.0 + r + 8.0);
    c.disc(cx as i64, cy as i64, (r * 1.25) as i64, [255, 255, 255]);
    let t = (r / 5.0).max(1.5);
    c.line(
        (cx - r * 0.7, cy - r * 0.7),
        (cx + r * 0.7, cy + r * 0.7),
        t,
        [220, 20, 20],
    );
    c.line(
        (cx - r * 0.7, cy + r * 0.7),
        (cx + r * 0.7, cy - r * 0.7),
        t,
        [220, 20, 20],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_wrap() {
        assert_eq!(label_lines("a b", 10), vec!["a b"]);
        assert_eq!(
            label_lines("hello world again", 11),
            vec!["hello world", "again"]
        );
        assert_eq!(label_lines("", 10), Vec::<String>::new());
    }
}
