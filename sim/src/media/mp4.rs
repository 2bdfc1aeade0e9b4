//! ISO BMFF muxing of one H.264 track: `ftyp`, `moov`, `mdat`.

use super::clip::CLIP_FPS;
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
    let delta = TIMESCALE / CLIP_FPS;
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
