//! A tiny H.264 baseline encoder: the first frame is an IDR picture of
//! `I_PCM` macroblocks; later frames are P pictures that skip unchanged
//! macroblocks and send changed ones as `I_PCM`.

use super::canvas::Canvas;

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
