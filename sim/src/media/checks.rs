//! Format checks the engine and the tests use: is it a PNG, does it carry
//! the planted flaw, is it an MP4.

use super::FLAW_KEYWORD;

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
