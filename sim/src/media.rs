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

/// The `tEXt` keyword that marks a still carrying a planted flaw.
pub const FLAW_KEYWORD: &str = "nbbuild-sim-flaw";

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

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

/// `mp4` with a trailing `free` box of `extra` bytes (still a valid MP4):
/// a stand-in for large production clips.
pub fn pad(mut mp4: Vec<u8>, extra: u64) -> Vec<u8> {
    if extra == 0 {
        return mp4;
    }
    let size = extra.max(16);
    if size <= u32::MAX as u64 {
        mp4.extend_from_slice(&(size as u32).to_be_bytes());
        mp4.extend_from_slice(b"free");
        mp4.resize(mp4.len() + size as usize - 8, 0);
    } else {
        mp4.extend_from_slice(&1u32.to_be_bytes());
        mp4.extend_from_slice(b"free");
        mp4.extend_from_slice(&size.to_be_bytes());
        mp4.resize(mp4.len() + size as usize - 16, 0);
    }
    mp4
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

/// True when `bytes` is a PNG whose header and first frame decode.
pub fn is_png(bytes: &[u8]) -> bool {
    let decoder = png::Decoder::new(bytes);
    let Ok(mut reader) = decoder.read_info() else {
        return false;
    };
    let (w, h) = {
        let info = reader.info();
        (info.width, info.height)
    };
    if w == 0 || h == 0 {
        return false;
    }
    let size = reader.output_buffer_size();
    if size > 256 << 20 {
        return false;
    }
    let mut buf = vec![0; size];
    reader.next_frame(&mut buf).is_ok()
}

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

/// True when `bytes` looks like an ISO BMFF / MP4 file: the top-level boxes'
/// sizes add up exactly to the end of the file, the first box is `ftyp` and
/// a `moov` box is present.
pub fn is_mp4(bytes: &[u8]) -> bool {
    let mut pos: usize = 0;
    let mut first = true;
    let mut has_moov = false;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < 8 {
            return false;
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as u64;
        let kind = &rest[4..8];
        let size: u64 = match size32 {
            0 => rest.len() as u64,
            1 => {
                if rest.len() < 16 {
                    return false;
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[8..16]);
                let large = u64::from_be_bytes(b);
                if large < 16 {
                    return false;
                }
                large
            }
            s if s < 8 => return false,
            s => s,
        };
        if size > rest.len() as u64 {
            return false;
        }
        if !kind.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
            return false;
        }
        if first {
            if kind != b"ftyp" {
                return false;
            }
            first = false;
        }
        if kind == b"moov" {
            has_moov = true;
        }
        pos += size as usize;
    }
    !first && has_moov && pos == bytes.len()
}

// ---------------------------------------------------------------------------
// Hashing and colours
// ---------------------------------------------------------------------------

/// A deterministic stream of pseudo-random numbers from blake3.
struct Rng {
    reader: blake3::OutputReader,
}

impl Rng {
    fn new(parts: &[&[u8]]) -> Rng {
        let mut hasher = blake3::Hasher::new();
        for p in parts {
            hasher.update(&(p.len() as u64).to_le_bytes());
            hasher.update(p);
        }
        Rng {
            reader: hasher.finalize_xof(),
        }
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.reader.fill(&mut b);
        u64::from_le_bytes(b)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }
}

type Rgb = [u8; 3];

fn hsv(h: f64, s: f64, v: f64) -> Rgb {
    let h = h.rem_euclid(1.0) * 6.0;
    let i = h.floor();
    let f = h - i;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    let (r, g, b) = match i as i32 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [
        (r * 255.0).round() as u8,
        (g * 255.0).round() as u8,
        (b * 255.0).round() as u8,
    ]
}

fn mix(a: Rgb, b: Rgb, t: f64) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    let m = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * t).round() as u8;
    [m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])]
}

// ---------------------------------------------------------------------------
// Canvas
// ---------------------------------------------------------------------------

struct Canvas {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![0; (w * h * 3) as usize],
        }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            return;
        }
        let i = ((y as u32 * self.w + x as u32) * 3) as usize;
        self.px[i..i + 3].copy_from_slice(&c);
    }

    fn get(&self, x: u32, y: u32) -> Rgb {
        let i = ((y * self.w + x) * 3) as usize;
        [self.px[i], self.px[i + 1], self.px[i + 2]]
    }

    fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f64) {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            return;
        }
        let old = self.get(x as u32, y as u32);
        self.set(x, y, mix(old, c, alpha));
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.max(0)..y1.min(self.h as i64) {
            for x in x0.max(0)..x1.min(self.w as i64) {
                self.set(x, y, c);
            }
        }
    }

    fn shade_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb, alpha: f64) {
        for y in y0.max(0)..y1.min(self.h as i64) {
            for x in x0.max(0)..x1.min(self.w as i64) {
                self.blend(x, y, c, alpha);
            }
        }
    }

    fn disc(&mut self, cx: i64, cy: i64, r: i64, c: Rgb) {
        for y in cy - r..=cy + r {
            for x in cx - r..=cx + r {
                let (dx, dy) = (x - cx, y - cy);
                if dx * dx + dy * dy <= r * r {
                    self.set(x, y, c);
                }
            }
        }
    }

    fn ring(&mut self, cx: i64, cy: i64, r0: i64, r1: i64, c: Rgb) {
        for y in cy - r1..=cy + r1 {
            for x in cx - r1..=cx + r1 {
                let d = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                if d <= r1 * r1 && d >= r0 * r0 {
                    self.set(x, y, c);
                }
            }
        }
    }

    fn triangle(&mut self, p: [(i64, i64); 3], c: Rgb) {
        let min_x = p.iter().map(|q| q.0).min().unwrap_or(0);
        let max_x = p.iter().map(|q| q.0).max().unwrap_or(0);
        let min_y = p.iter().map(|q| q.1).min().unwrap_or(0);
        let max_y = p.iter().map(|q| q.1).max().unwrap_or(0);
        let edge = |a: (i64, i64), b: (i64, i64), x: i64, y: i64| {
            (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0)
        };
        for y in min_y..=max_y {
            for x in min_x..=max_x {
                let e0 = edge(p[0], p[1], x, y);
                let e1 = edge(p[1], p[2], x, y);
                let e2 = edge(p[2], p[0], x, y);
                if (e0 >= 0 && e1 >= 0 && e2 >= 0) || (e0 <= 0 && e1 <= 0 && e2 <= 0) {
                    self.set(x, y, c);
                }
            }
        }
    }

    /// A thick line segment (a capsule of radius `r`).
    fn line(&mut self, a: (f64, f64), b: (f64, f64), r: f64, c: Rgb) {
        let min_x = (a.0.min(b.0) - r).floor() as i64;
        let max_x = (a.0.max(b.0) + r).ceil() as i64;
        let min_y = (a.1.min(b.1) - r).floor() as i64;
        let max_y = (a.1.max(b.1) + r).ceil() as i64;
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = (dx * dx + dy * dy).max(1e-9);
        for y in min_y..=max_y {
            for x in min_x..=max_x {
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let t = (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0);
                let (qx, qy) = (a.0 + t * dx - px, a.1 + t * dy - py);
                if qx * qx + qy * qy <= r * r {
                    self.set(x, y, c);
                }
            }
        }
    }

    /// Text in the 5x7 block font, each font pixel `scale` pixels wide.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, c: Rgb) {
        let mut cx = x;
        for ch in s.chars() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let px = cx + col * scale;
                        let py = y + row as i64 * scale;
                        self.rect(px, py, px + scale, py + scale, c);
                    }
                }
            }
            cx += 6 * scale;
        }
    }
}

fn text_width(s: &str, scale: i64) -> i64 {
    let n = s.chars().count() as i64;
    if n == 0 {
        0
    } else {
        (6 * n - 1) * scale
    }
}

#[rustfmt::skip]
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '!' => [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04],
        '\'' => [0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

// ---------------------------------------------------------------------------
// Scenes
// ---------------------------------------------------------------------------

/// The colours a prompt gives: two background hues and a text colour.
struct Palette {
    top: Rgb,
    bottom: Rgb,
    hue: f64,
}

fn palette(prompt: &str) -> Palette {
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
fn label_lines(prompt: &str, max_chars: usize) -> Vec<String> {
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
fn paint_scene(c: &mut Canvas, prompt: &str, variant: u64, label: bool) {
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
fn paint_flaw(c: &mut Canvas) {
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

// ---------------------------------------------------------------------------
// Clips
// ---------------------------------------------------------------------------

const CLIP_FPS: u32 = 6;

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

mod h264 {
    //! A tiny H.264 baseline encoder: the first frame is an IDR picture of
    //! `I_PCM` macroblocks; later frames are P pictures that skip unchanged
    //! macroblocks and send changed ones as `I_PCM`.

    use super::Canvas;

    pub struct Stream {
        pub sps: Vec<u8>,
        pub pps: Vec<u8>,
        /// One access unit per frame: its NAL units without start codes.
        pub frames: Vec<Vec<u8>>,
        /// Whether each frame is a sync sample (IDR).
        pub sync: Vec<bool>,
    }

    struct Bits {
        out: Vec<u8>,
        cur: u8,
        n: u8,
    }

    impl Bits {
        fn new() -> Bits {
            Bits {
                out: Vec::new(),
                cur: 0,
                n: 0,
            }
        }
        fn bit(&mut self, b: bool) {
            self.cur = (self.cur << 1) | b as u8;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.cur);
                self.cur = 0;
                self.n = 0;
            }
        }
        fn u(&mut self, bits: u32, v: u64) {
            for i in (0..bits).rev() {
                self.bit((v >> i) & 1 == 1);
            }
        }
        fn ue(&mut self, v: u64) {
            let x = v + 1;
            let len = 64 - x.leading_zeros();
            self.u(len - 1, 0);
            self.u(len, x);
        }
        fn se(&mut self, v: i64) {
            let k = if v > 0 {
                (2 * v - 1) as u64
            } else {
                (-2 * v) as u64
            };
            self.ue(k);
        }
        fn aligned(&self) -> bool {
            self.n == 0
        }
        fn align_zero(&mut self) {
            while !self.aligned() {
                self.bit(false);
            }
        }
        fn bytes(&mut self, b: &[u8]) {
            debug_assert!(self.aligned());
            self.out.extend_from_slice(b);
        }
        fn trailing(mut self) -> Vec<u8> {
            self.bit(true);
            self.align_zero();
            self.out
        }
    }

    /// A NAL unit: header byte plus the RBSP with emulation prevention.
    fn nal(ref_idc: u8, kind: u8, rbsp: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(rbsp.len() + rbsp.len() / 64 + 1);
        out.push((ref_idc << 5) | kind);
        let mut zeros = 0;
        for &b in rbsp {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(b);
            if b == 0 {
                zeros += 1;
            } else {
                zeros = 0;
            }
        }
        out
    }

    const LOG2_MAX_FRAME_NUM: u32 = 8;

    fn sps(mbs_w: u32, mbs_h: u32, w: u32, h: u32) -> Vec<u8> {
        let mut b = Bits::new();
        b.u(8, 66); // profile_idc: baseline
        b.u(8, 0xC0); // constraint_set0 + constraint_set1 (constrained baseline)
        b.u(8, 30); // level_idc 3.0
        b.ue(0); // seq_parameter_set_id
        b.ue((LOG2_MAX_FRAME_NUM - 4) as u64); // log2_max_frame_num_minus4
        b.ue(2); // pic_order_cnt_type: output order = decoding order
        b.ue(1); // max_num_ref_frames
        b.bit(false); // gaps_in_frame_num_value_allowed_flag
        b.ue((mbs_w - 1) as u64);
        b.ue((mbs_h - 1) as u64);
        b.bit(true); // frame_mbs_only_flag
        b.bit(true); // direct_8x8_inference_flag
        let crop_right = (mbs_w * 16 - w) / 2;
        let crop_bottom = (mbs_h * 16 - h) / 2;
        if crop_right > 0 || crop_bottom > 0 {
            b.bit(true);
            b.ue(0);
            b.ue(crop_right as u64);
            b.ue(0);
            b.ue(crop_bottom as u64);
        } else {
            b.bit(false);
        }
        b.bit(false); // vui_parameters_present_flag
        nal(3, 7, &b.trailing())
    }

    fn pps() -> Vec<u8> {
        let mut b = Bits::new();
        b.ue(0); // pic_parameter_set_id
        b.ue(0); // seq_parameter_set_id
        b.bit(false); // entropy_coding_mode_flag: CAVLC
        b.bit(false); // bottom_field_pic_order_in_frame_present_flag
        b.ue(0); // num_slice_groups_minus1
        b.ue(0); // num_ref_idx_l0_default_active_minus1
        b.ue(0); // num_ref_idx_l1_default_active_minus1
        b.bit(false); // weighted_pred_flag
        b.u(2, 0); // weighted_bipred_idc
        b.se(0); // pic_init_qp_minus26
        b.se(0); // pic_init_qs_minus26
        b.se(0); // chroma_qp_index_offset
        b.bit(true); // deblocking_filter_control_present_flag
        b.bit(false); // constrained_intra_pred_flag
        b.bit(false); // redundant_pic_cnt_present_flag
        nal(3, 8, &b.trailing())
    }

    /// The 384 PCM samples (256 luma, 64 Cb, 64 Cr) of one macroblock.
    fn pcm(yuv: &Yuv, mbx: u32, mby: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(384);
        for y in 0..16 {
            let row = ((mby * 16 + y) * yuv.w + mbx * 16) as usize;
            out.extend_from_slice(&yuv.y[row..row + 16]);
        }
        for plane in [&yuv.cb, &yuv.cr] {
            for y in 0..8 {
                let row = ((mby * 8 + y) * (yuv.w / 2) + mbx * 8) as usize;
                out.extend_from_slice(&plane[row..row + 8]);
            }
        }
        out
    }

    struct Yuv {
        w: u32,
        y: Vec<u8>,
        cb: Vec<u8>,
        cr: Vec<u8>,
    }

    /// BT.601 limited-range 4:2:0, padded to whole macroblocks by repeating
    /// the last row and column; samples kept in 1..=254.
    fn to_yuv(c: &Canvas, pw: u32, ph: u32) -> Yuv {
        let px = |x: u32, y: u32| {
            let (x, y) = (x.min(c.w - 1), y.min(c.h - 1));
            let p = c.get(x, y);
            (p[0] as f64, p[1] as f64, p[2] as f64)
        };
        let clamp = |v: f64| v.round().clamp(1.0, 254.0) as u8;
        let mut y = Vec::with_capacity((pw * ph) as usize);
        for j in 0..ph {
            for i in 0..pw {
                let (r, g, b) = px(i, j);
                y.push(clamp(
                    16.0 + (65.738 * r + 129.057 * g + 25.064 * b) / 256.0,
                ));
            }
        }
        let mut cb = Vec::with_capacity((pw * ph / 4) as usize);
        let mut cr = Vec::with_capacity((pw * ph / 4) as usize);
        for j in 0..ph / 2 {
            for i in 0..pw / 2 {
                let (mut r, mut g, mut b) = (0.0, 0.0, 0.0);
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let p = px(2 * i + dx, 2 * j + dy);
                    r += p.0 / 4.0;
                    g += p.1 / 4.0;
                    b += p.2 / 4.0;
                }
                cb.push(clamp(
                    128.0 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256.0,
                ));
                cr.push(clamp(
                    128.0 + (112.439 * r - 94.154 * g - 18.285 * b) / 256.0,
                ));
            }
        }
        Yuv { w: pw, y, cb, cr }
    }

    pub fn encode(frames: &[Canvas], w: u32, h: u32) -> Stream {
        let (mbs_w, mbs_h) = (w.div_ceil(16), h.div_ceil(16));
        let (pw, ph) = (mbs_w * 16, mbs_h * 16);
        let mut out = Stream {
            sps: sps(mbs_w, mbs_h, w, h),
            pps: pps(),
            frames: Vec::with_capacity(frames.len()),
            sync: Vec::with_capacity(frames.len()),
        };
        let max_frame_num = 1u64 << LOG2_MAX_FRAME_NUM;
        let mut prev: Option<Vec<Vec<u8>>> = None;
        for (n, frame) in frames.iter().enumerate() {
            let yuv = to_yuv(frame, pw, ph);
            let mbs: Vec<Vec<u8>> = (0..mbs_h)
                .flat_map(|y| (0..mbs_w).map(move |x| (x, y)))
                .map(|(x, y)| pcm(&yuv, x, y))
                .collect();
            let mut b = Bits::new();
            let unit = match &prev {
                None => {
                    b.ue(0); // first_mb_in_slice
                    b.ue(7); // slice_type: I (all slices)
                    b.ue(0); // pic_parameter_set_id
                    b.u(LOG2_MAX_FRAME_NUM, 0); // frame_num
                    b.ue(0); // idr_pic_id
                    b.bit(false); // no_output_of_prior_pics_flag
                    b.bit(false); // long_term_reference_flag
                    b.se(0); // slice_qp_delta
                    b.ue(1); // disable_deblocking_filter_idc
                    for mb in &mbs {
                        b.ue(25); // mb_type I_PCM
                        b.align_zero();
                        b.bytes(mb);
                    }
                    nal(3, 5, &b.trailing())
                }
                Some(prev) => {
                    b.ue(0); // first_mb_in_slice
                    b.ue(5); // slice_type: P (all slices)
                    b.ue(0); // pic_parameter_set_id
                    b.u(LOG2_MAX_FRAME_NUM, n as u64 % max_frame_num); // frame_num
                    b.bit(false); // num_ref_idx_active_override_flag
                    b.bit(false); // ref_pic_list_modification_flag_l0
                    b.bit(false); // adaptive_ref_pic_marking_mode_flag
                    b.se(0); // slice_qp_delta
                    b.ue(1); // disable_deblocking_filter_idc
                    let mut skip = 0u64;
                    for (mb, old) in mbs.iter().zip(prev.iter()) {
                        if mb == old {
                            skip += 1;
                            continue;
                        }
                        b.ue(skip); // mb_skip_run
                        skip = 0;
                        b.ue(30); // mb_type I_PCM in a P slice (5 + 25)
                        b.align_zero();
                        b.bytes(mb);
                    }
                    if skip > 0 {
                        b.ue(skip);
                    }
                    nal(2, 1, &b.trailing())
                }
            };
            out.sync.push(prev.is_none());
            out.frames.push(unit);
            prev = Some(mbs);
        }
        out
    }
}

mod mp4 {
    //! ISO BMFF muxing of one H.264 track: `ftyp`, `moov`, `mdat`.

    use super::h264::Stream;

    const TIMESCALE: u32 = 600;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(&((body.len() + 8) as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(kind: &[u8; 4], version: u8, flags: u32, body: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(body.len() + 4);
        b.push(version);
        b.extend_from_slice(&flags.to_be_bytes()[1..]);
        b.extend_from_slice(body);
        boxed(kind, &b)
    }

    struct W(Vec<u8>);
    impl W {
        fn u8(&mut self, v: u8) -> &mut Self {
            self.0.push(v);
            self
        }
        fn u16(&mut self, v: u16) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn u32(&mut self, v: u32) -> &mut Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        fn bytes(&mut self, v: &[u8]) -> &mut Self {
            self.0.extend_from_slice(v);
            self
        }
        fn matrix(&mut self) -> &mut Self {
            for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
                self.u32(v);
            }
            self
        }
    }

    fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    fn moov(s: &Stream, w: u32, h: u32, mdat_data_offset: u32, name: &str) -> Vec<u8> {
        let n = s.frames.len() as u32;
        let delta = TIMESCALE / super::CLIP_FPS;
        let duration = n * delta;

        let mvhd = {
            let mut b = W(Vec::new());
            b.u32(0).u32(0).u32(TIMESCALE).u32(duration);
            b.u32(0x0001_0000).u16(0x0100).u16(0).u32(0).u32(0);
            b.matrix();
            for _ in 0..6 {
                b.u32(0);
            }
            b.u32(2); // next_track_ID
            full(b"mvhd", 0, 0, &b.0)
        };
        let tkhd = {
            let mut b = W(Vec::new());
            b.u32(0).u32(0).u32(1).u32(0).u32(duration);
            b.u32(0).u32(0).u16(0).u16(0).u16(0).u16(0);
            b.matrix();
            b.u32(w << 16).u32(h << 16);
            full(b"tkhd", 0, 3, &b.0)
        };
        let mdhd = {
            let mut b = W(Vec::new());
            b.u32(0).u32(0).u32(TIMESCALE).u32(duration);
            b.u16(0x55C4).u16(0); // language "und"
            full(b"mdhd", 0, 0, &b.0)
        };
        let hdlr = {
            let mut b = W(Vec::new());
            b.u32(0).bytes(b"vide").u32(0).u32(0).u32(0);
            b.bytes(b"VideoHandler\0");
            full(b"hdlr", 0, 0, &b.0)
        };
        let vmhd = full(b"vmhd", 0, 1, &[0; 8]);
        let dinf = {
            let url = full(b"url ", 0, 1, &[]);
            let mut b = W(Vec::new());
            b.u32(1).bytes(&url);
            boxed(b"dinf", &full(b"dref", 0, 0, &b.0))
        };
        let avcc = {
            let mut b = W(Vec::new());
            b.u8(1).u8(s.sps[1]).u8(s.sps[2]).u8(s.sps[3]);
            b.u8(0xFF); // lengthSizeMinusOne = 3
            b.u8(0xE1).u16(s.sps.len() as u16).bytes(&s.sps);
            b.u8(1).u16(s.pps.len() as u16).bytes(&s.pps);
            boxed(b"avcC", &b.0)
        };
        let avc1 = {
            let mut b = W(Vec::new());
            b.bytes(&[0; 6]).u16(1); // reserved, data_reference_index
            b.u16(0).u16(0).u32(0).u32(0).u32(0);
            b.u16(w as u16).u16(h as u16);
            b.u32(0x0048_0000).u32(0x0048_0000).u32(0).u16(1);
            let mut compressor = [0u8; 32];
            let label = name.as_bytes();
            let len = label.len().min(31);
            compressor[0] = len as u8;
            compressor[1..=len].copy_from_slice(&label[..len]);
            b.bytes(&compressor);
            b.u16(0x0018).u16(0xFFFF);
            b.bytes(&avcc);
            boxed(b"avc1", &b.0)
        };
        let stsd = {
            let mut b = W(Vec::new());
            b.u32(1).bytes(&avc1);
            full(b"stsd", 0, 0, &b.0)
        };
        let stts = {
            let mut b = W(Vec::new());
            b.u32(1).u32(n).u32(delta);
            full(b"stts", 0, 0, &b.0)
        };
        let stss = {
            let sync: Vec<u32> = s
                .sync
                .iter()
                .enumerate()
                .filter(|(_, k)| **k)
                .map(|(i, _)| i as u32 + 1)
                .collect();
            let mut b = W(Vec::new());
            b.u32(sync.len() as u32);
            for i in sync {
                b.u32(i);
            }
            full(b"stss", 0, 0, &b.0)
        };
        let stsc = {
            let mut b = W(Vec::new());
            b.u32(1).u32(1).u32(n).u32(1);
            full(b"stsc", 0, 0, &b.0)
        };
        let stsz = {
            let mut b = W(Vec::new());
            b.u32(0).u32(n);
            for f in &s.frames {
                b.u32(f.len() as u32 + 4);
            }
            full(b"stsz", 0, 0, &b.0)
        };
        let stco = {
            let mut b = W(Vec::new());
            b.u32(1).u32(mdat_data_offset);
            full(b"stco", 0, 0, &b.0)
        };
        let stbl = boxed(b"stbl", &cat(&[stsd, stts, stss, stsc, stsz, stco]));
        let minf = boxed(b"minf", &cat(&[vmhd, dinf, stbl]));
        let mdia = boxed(b"mdia", &cat(&[mdhd, hdlr, minf]));
        let trak = boxed(b"trak", &cat(&[tkhd, mdia]));
        boxed(b"moov", &cat(&[mvhd, trak]))
    }

    pub fn mux(s: &Stream, w: u32, h: u32, prompt: &str, variant: u64) -> Vec<u8> {
        let ftyp = {
            let mut b = W(Vec::new());
            b.bytes(b"isom").u32(0x200);
            b.bytes(b"isom")
                .bytes(b"iso2")
                .bytes(b"avc1")
                .bytes(b"mp41");
            boxed(b"ftyp", &b.0)
        };
        let hash = blake3::hash(prompt.as_bytes()).to_hex();
        let name = format!("nbbuild-sim {} v{}", &hash[..8], variant);
        let mut data = Vec::new();
        for f in &s.frames {
            data.extend_from_slice(&(f.len() as u32).to_be_bytes());
            data.extend_from_slice(f);
        }
        let probe = moov(s, w, h, 0, &name);
        let offset = (ftyp.len() + probe.len() + 8) as u32;
        let moov = moov(s, w, h, offset, &name);
        debug_assert_eq!(moov.len(), probe.len());
        let mdat = boxed(b"mdat", &data);
        cat(&[ftyp, moov, mdat])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
