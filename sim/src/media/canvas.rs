//! An RGB pixel canvas, its colours and the shapes drawn on it.

pub(super) type Rgb = [u8; 3];

pub(super) fn hsv(h: f64, s: f64, v: f64) -> Rgb {
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

pub(super) fn mix(a: Rgb, b: Rgb, t: f64) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    let m = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * t).round() as u8;
    [m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])]
}

// ---------------------------------------------------------------------------
// Canvas
// ---------------------------------------------------------------------------

pub(super) struct Canvas {
    pub(super) w: u32,
    pub(super) h: u32,
    pub(super) px: Vec<u8>,
}

impl Canvas {
    pub(super) fn new(w: u32, h: u32) -> Canvas {
        Canvas {
            w,
            h,
            px: vec![0; (w * h * 3) as usize],
        }
    }

    pub(super) fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            return;
        }
        let i = ((y as u32 * self.w + x as u32) * 3) as usize;
        self.px[i..i + 3].copy_from_slice(&c);
    }

    pub(super) fn get(&self, x: u32, y: u32) -> Rgb {
        let i = ((y * self.w + x) * 3) as usize;
        [self.px[i], self.px[i + 1], self.px[i + 2]]
    }

    pub(super) fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f64) {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            return;
        }
        let old = self.get(x as u32, y as u32);
        self.set(x, y, mix(old, c, alpha));
    }

    pub(super) fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.max(0)..y1.min(self.h as i64) {
            for x in x0.max(0)..x1.min(self.w as i64) {
                self.set(x, y, c);
            }
        }
    }

    pub(super) fn shade_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb, alpha: f64) {
        for y in y0.max(0)..y1.min(self.h as i64) {
            for x in x0.max(0)..x1.min(self.w as i64) {
                self.blend(x, y, c, alpha);
            }
        }
    }

    pub(super) fn disc(&mut self, cx: i64, cy: i64, r: i64, c: Rgb) {
        for y in cy - r..=cy + r {
            for x in cx - r..=cx + r {
                let (dx, dy) = (x - cx, y - cy);
                if dx * dx + dy * dy <= r * r {
                    self.set(x, y, c);
                }
            }
        }
    }

    pub(super) fn ring(&mut self, cx: i64, cy: i64, r0: i64, r1: i64, c: Rgb) {
        for y in cy - r1..=cy + r1 {
            for x in cx - r1..=cx + r1 {
                let d = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                if d <= r1 * r1 && d >= r0 * r0 {
                    self.set(x, y, c);
                }
            }
        }
    }

    pub(super) fn triangle(&mut self, p: [(i64, i64); 3], c: Rgb) {
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
    pub(super) fn line(&mut self, a: (f64, f64), b: (f64, f64), r: f64, c: Rgb) {
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
}
