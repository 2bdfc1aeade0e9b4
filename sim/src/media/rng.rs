//! The deterministic pseudo-random stream every picture is drawn from.

/// A deterministic stream of pseudo-random numbers from blake3.
pub(super) struct Rng {
    reader: blake3::OutputReader,
}

impl Rng {
    pub(super) fn new(parts: &[&[u8]]) -> Rng {
        let mut hasher = blake3::Hasher::new();
        for p in parts {
            hasher.update(&(p.len() as u64).to_le_bytes());
            hasher.update(p);
        }
        Rng {
            reader: hasher.finalize_xof(),
        }
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.reader.fill(&mut b);
        u64::from_le_bytes(b)
    }

    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(super) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }
}
