//! What a valid stored object of each kind is: a PNG whose first frame
//! decodes, an MP4 whose top-level boxes add up to the file. The engine
//! checks every download with these before it is stored, and the simulator
//! uses the same checks, so both agree on what "valid" means.

use std::io::{Read, Seek, SeekFrom};

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

/// True when `bytes` looks like an ISO BMFF / MP4 file (see [`is_mp4_in`]).
pub fn is_mp4(bytes: &[u8]) -> bool {
    is_mp4_in(&mut std::io::Cursor::new(bytes), bytes.len() as u64)
}

/// True when the `len` bytes of `r` look like an ISO BMFF / MP4 file: the
/// top-level boxes' sizes add up exactly to the end, the first box is
/// `ftyp` and a `moov` box is present. Reads only box headers, so a large
/// clip costs a few seeks; a truncated file or an HTML error page fails.
pub fn is_mp4_in<R: Read + Seek>(r: &mut R, len: u64) -> bool {
    let (mut pos, mut first, mut moov) = (0u64, true, false);
    while pos < len {
        let mut head = [0u8; 16];
        if len - pos < 8
            || r.seek(SeekFrom::Start(pos)).is_err()
            || r.read_exact(&mut head[..8]).is_err()
        {
            return false;
        }
        let kind: [u8; 4] = [head[4], head[5], head[6], head[7]];
        let size = match u32::from_be_bytes([head[0], head[1], head[2], head[3]]) {
            0 => len - pos,
            1 => {
                if len - pos < 16 || r.read_exact(&mut head[8..16]).is_err() {
                    return false;
                }
                let large = u64::from_be_bytes([
                    head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
                ]);
                if large < 16 {
                    return false;
                }
                large
            }
            s if s < 8 => return false,
            s => s as u64,
        };
        if size > len - pos || !kind.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
            return false;
        }
        if first && &kind != b"ftyp" {
            return false;
        }
        first = false;
        moov |= &kind == b"moov";
        pos += size;
    }
    !first && moov && pos == len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn an_mp4_is_ftyp_first_with_a_moov_and_boxes_that_add_up() {
        let mut ok = boxed(b"ftyp", b"isom\0\0\0\0");
        ok.extend(boxed(b"moov", &[0; 24]));
        ok.extend(boxed(b"mdat", &[7; 100]));
        assert!(is_mp4(&ok));
        // Cut off, padded, no moov, wrong first box, an HTML page.
        assert!(!is_mp4(&ok[..ok.len() - 1]));
        let mut long = ok.clone();
        long.push(0);
        assert!(!is_mp4(&long));
        let mut no_moov = boxed(b"ftyp", b"isom");
        no_moov.extend(boxed(b"mdat", &[1; 10]));
        assert!(!is_mp4(&no_moov));
        let mut moov_first = boxed(b"moov", &[0; 8]);
        moov_first.extend(boxed(b"ftyp", b"isom"));
        assert!(!is_mp4(&moov_first));
        assert!(!is_mp4(b"<html><body>502 Bad Gateway</body></html>"));
        assert!(!is_mp4(b""));
    }

    #[test]
    fn a_png_must_decode() {
        assert!(!is_png(b"\x89PNG\r\n\x1a\n not really"));
        assert!(!is_png(b"<html>"));
    }
}
