//! Gapless trimming for MP4/M4A (AAC and the other codecs symphonia decodes there). An AAC encoder
//! primes its first packet (1024 frames for most encoders) and pads the last one; the muxer
//! records what to play in the track's edit list (`moov/trak/edts/elst`: `media_time` frames to
//! skip, in the media timescale, and `segment_duration` to keep, in the movie timescale), or in
//! an iTunes `iTunSMPB` tag. symphonia 0.6 ignores both, so we read them ourselves with a
//! header-only walk over the boxes (`mdat` and other payloads are skipped with seeks, so the cost
//! is small and memory is constant). Anything unexpected means "no trim", never an error.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;

/// Leaf boxes larger than this are not read (a real `elst`, `mvhd` or tag is a few dozen bytes).
const MAX_LEAF_BYTES: u64 = 64 * 1024;
/// The edit-list rate 1.0 (16.16 fixed point); other rates are not plain playback.
const RATE_ONE: u32 = 0x0001_0000;
/// Priming larger than this in an `iTunSMPB` tag is not believed (ffmpeg uses the same bound).
const MAX_ITUNSMPB_PRIMING: u64 = 16_384;

/// What to drop at the start and how much to keep of one audio track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mp4Trim {
    /// Units to skip at the start.
    pub skip: u64,
    /// Units to keep after the skip, if the file says.
    pub keep: Option<u64>,
    /// Units per second (the media timescale); `None`: frames at the decoded rate (`iTunSMPB`).
    pub timescale: Option<u32>,
}

impl Mp4Trim {
    /// The trim in frames of a stream decoded at `rate_hz`.
    pub(crate) fn in_frames(&self, rate_hz: u32) -> FrameTrim {
        let to_frames = |units: u64| match self.timescale {
            None => units,
            Some(ts) => {
                let ts = u128::from(ts.max(1));
                ((u128::from(units) * u128::from(rate_hz) + ts / 2) / ts) as u64
            }
        };
        FrameTrim {
            skip_frames: to_frames(self.skip),
            remaining_frames: self.keep.map(to_frames),
        }
    }
}

/// The trim in decoded frames, applied packet by packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameTrim {
    /// Frames still to drop at the start.
    pub skip_frames: u64,
    /// Frames still to hand out, if the stream has a stated end.
    pub remaining_frames: Option<u64>,
}

impl FrameTrim {
    /// The frames of a packet of `frames` decoded frames to keep; advances the state.
    pub(crate) fn keep_range(&mut self, frames: usize) -> Range<usize> {
        let start = self.skip_frames.min(frames as u64);
        self.skip_frames -= start;
        let mut end = frames as u64;
        if let Some(remaining) = self.remaining_frames.as_mut() {
            end = end.min(start + *remaining);
            *remaining -= end - start;
        }
        start as usize..end as usize
    }

    /// Whether everything to keep has been handed out.
    pub(crate) fn is_done(&self) -> bool {
        self.remaining_frames == Some(0)
    }
}

/// The trim of the audio track with track ID `track_id` (the `tkhd` ID, which symphonia uses as
/// its track ID), from its edit list or else the file's `iTunSMPB` tag; `None` if the file has
/// neither, or they cannot be read or are not a single plain segment.
pub(crate) fn read_trim(path: &Path, track_id: u32) -> Option<Mp4Trim> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    parse_trim(&mut BufReader::new(file), len, track_id)
}

/// What one `trak` box tells us.
#[derive(Debug, Default)]
struct Trak {
    id: Option<u32>,
    media_timescale: Option<u32>,
    /// `elst` entries: (segment duration, media time, rate).
    edits: Option<Vec<(u64, i64, u32)>>,
    /// Sum of the `stts` sample durations (media timescale).
    stts_total: Option<u64>,
}

/// [`read_trim`] over any seekable reader holding `len` bytes of MP4.
fn parse_trim<R: Read + Seek>(r: &mut R, len: u64, track_id: u32) -> Option<Mp4Trim> {
    let (moov_start, moov_end) = find_child(r, 0, len, *b"moov")?;
    let mut movie_timescale = None;
    let mut trak = None;
    let mut itunsmpb = None;
    let mut pos = moov_start;
    while let Some((kind, start, end)) = next_box(r, pos, moov_end) {
        match &kind {
            b"mvhd" => movie_timescale = header_timescale(&read_leaf(r, start, end)?),
            b"trak" => {
                let t = parse_trak(r, start, end)?;
                if t.id == Some(track_id) {
                    trak = Some(t);
                }
            }
            b"udta" => itunsmpb = find_itunsmpb(r, start, end).or(itunsmpb),
            _ => {}
        }
        pos = end;
    }
    let trak = trak?;
    match &trak.edits {
        Some(edits) => edit_trim(edits, &trak, movie_timescale?),
        None => itunsmpb,
    }
}

/// The trim an edit list describes: leading empty edits are ignored, then exactly one plain
/// segment must follow.
fn edit_trim(edits: &[(u64, i64, u32)], trak: &Trak, movie_timescale: u32) -> Option<Mp4Trim> {
    let media_timescale = trak.media_timescale.filter(|&ts| ts > 0)?;
    let mut segments = edits.iter().skip_while(|e| e.1 == -1);
    let &(duration, media_time, rate) = segments.next()?;
    if segments.next().is_some() || media_time < 0 || rate != RATE_ONE || movie_timescale == 0 {
        return None;
    }
    let skip = media_time as u64;
    // A zero duration (fragmented files) means "to the end".
    let keep = (duration > 0).then(|| {
        let ts = u128::from(movie_timescale);
        let keep = (u128::from(duration) * u128::from(media_timescale) + ts / 2) / ts;
        let keep = u64::try_from(keep).unwrap_or(u64::MAX);
        // The movie timescale is coarse (often 1/1000 s): never keep more than the samples hold.
        match trak.stts_total {
            Some(total) if total > skip => keep.min(total - skip),
            _ => keep,
        }
    });
    Some(Mp4Trim {
        skip,
        keep,
        timescale: Some(media_timescale),
    })
}

fn parse_trak<R: Read + Seek>(r: &mut R, start: u64, end: u64) -> Option<Trak> {
    let mut trak = Trak::default();
    let mut pos = start;
    while let Some((kind, s, e)) = next_box(r, pos, end) {
        match &kind {
            b"tkhd" => trak.id = tkhd_id(&read_leaf(r, s, e)?),
            b"edts" => {
                if let Some((es, ee)) = find_child(r, s, e, *b"elst") {
                    trak.edits = Some(parse_elst(&read_leaf(r, es, ee)?)?);
                }
            }
            b"mdia" => {
                if let Some((hs, he)) = find_child(r, s, e, *b"mdhd") {
                    trak.media_timescale = header_timescale(&read_leaf(r, hs, he)?);
                }
                let stts = find_child(r, s, e, *b"minf")
                    .and_then(|(ms, me)| find_child(r, ms, me, *b"stbl"))
                    .and_then(|(bs, be)| find_child(r, bs, be, *b"stts"));
                if let Some((ts, te)) = stts {
                    trak.stts_total = stts_total(r, ts, te);
                }
            }
            _ => {}
        }
        pos = e;
    }
    Some(trak)
}

/// The header of the box at `pos` inside a parent ending at `parent_end`: its type and the start
/// and end of its body. `None` at the end or on a malformed size.
fn next_box<R: Read + Seek>(r: &mut R, pos: u64, parent_end: u64) -> Option<([u8; 4], u64, u64)> {
    if pos.checked_add(8)? > parent_end {
        return None;
    }
    r.seek(SeekFrom::Start(pos)).ok()?;
    let mut head = [0u8; 8];
    r.read_exact(&mut head).ok()?;
    let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let kind = [head[4], head[5], head[6], head[7]];
    let (body, end) = match size32 {
        0 => (pos + 8, parent_end),
        1 => {
            let mut large = [0u8; 8];
            r.read_exact(&mut large).ok()?;
            (pos + 16, pos.checked_add(u64::from_be_bytes(large))?)
        }
        n => (pos + 8, pos + u64::from(n)),
    };
    (body <= end && end <= parent_end).then_some((kind, body, end))
}

/// The body range of the first child of type `kind` in `start..end`.
fn find_child<R: Read + Seek>(
    r: &mut R,
    start: u64,
    end: u64,
    kind: [u8; 4],
) -> Option<(u64, u64)> {
    let mut pos = start;
    while let Some((k, s, e)) = next_box(r, pos, end) {
        if k == kind {
            return Some((s, e));
        }
        pos = e;
    }
    None
}

fn read_leaf<R: Read + Seek>(r: &mut R, start: u64, end: u64) -> Option<Vec<u8>> {
    let len = end.checked_sub(start)?;
    if len > MAX_LEAF_BYTES {
        return None;
    }
    r.seek(SeekFrom::Start(start)).ok()?;
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The timescale of an `mvhd` or `mdhd` body (same layout up to the timescale).
fn header_timescale(body: &[u8]) -> Option<u32> {
    match body.first()? {
        0 => be_u32(body, 12),
        1 => be_u32(body, 20),
        _ => None,
    }
}

fn tkhd_id(body: &[u8]) -> Option<u32> {
    match body.first()? {
        0 => be_u32(body, 12),
        1 => be_u32(body, 20),
        _ => None,
    }
}

fn parse_elst(body: &[u8]) -> Option<Vec<(u64, i64, u32)>> {
    let version = *body.first()?;
    let count = be_u32(body, 4)? as usize;
    let entry_len = match version {
        0 => 12,
        1 => 20,
        _ => return None,
    };
    if count.checked_mul(entry_len)? > body.len() - 8 {
        return None;
    }
    let entries = (0..count)
        .map(|i| {
            let at = 8 + i * entry_len;
            if version == 0 {
                let duration = u64::from(be_u32(body, at)?);
                let media_time = i64::from(be_u32(body, at + 4)? as i32);
                Some((duration, media_time, be_u32(body, at + 8)?))
            } else {
                let media_time = be_u64(body, at + 8)? as i64;
                Some((be_u64(body, at)?, media_time, be_u32(body, at + 16)?))
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some(entries)
}

/// The sum of an `stts` box's sample durations, read entry by entry.
fn stts_total<R: Read + Seek>(r: &mut R, start: u64, end: u64) -> Option<u64> {
    let head = read_leaf(r, start, start.checked_add(8)?.min(end))?;
    let count = u64::from(be_u32(&head, 4)?);
    if count.checked_mul(8)? > end - start - 8 {
        return None;
    }
    let mut total = 0u64;
    let mut entry = [0u8; 8];
    for _ in 0..count {
        r.read_exact(&mut entry).ok()?;
        let samples = u64::from(be_u32(&entry, 0)?);
        let delta = u64::from(be_u32(&entry, 4)?);
        total = total.checked_add(samples.checked_mul(delta)?)?;
    }
    Some(total)
}

/// The `iTunSMPB` tag in `moov/udta/meta/ilst/----`, as a trim in decoded frames.
fn find_itunsmpb<R: Read + Seek>(r: &mut R, start: u64, end: u64) -> Option<Mp4Trim> {
    let (ms, me) = find_child(r, start, end, *b"meta")?;
    // ISO `meta` is a full box (4 bytes of version and flags); QuickTime's is not.
    let peek = read_leaf(r, ms, ms.checked_add(8)?.min(me))?;
    let children = if peek.get(4..8) == Some(b"hdlr") {
        ms
    } else {
        ms + 4
    };
    let (is, ie) = find_child(r, children, me, *b"ilst")?;
    let mut pos = is;
    while let Some((kind, s, e)) = next_box(r, pos, ie) {
        if &kind == b"----" {
            if let Some(trim) = freeform_itunsmpb(r, s, e) {
                return Some(trim);
            }
        }
        pos = e;
    }
    None
}

/// One `----` item: `mean`, `name` and `data` children; the trim if its name is `iTunSMPB`.
fn freeform_itunsmpb<R: Read + Seek>(r: &mut R, start: u64, end: u64) -> Option<Mp4Trim> {
    let mut name = None;
    let mut data = None;
    let mut pos = start;
    while let Some((kind, s, e)) = next_box(r, pos, end) {
        match &kind {
            // Version and flags, then the text.
            b"name" => name = read_leaf(r, s, e).map(|b| b.get(4..).unwrap_or(&[]).to_vec()),
            // Type and locale, then the value.
            b"data" => data = read_leaf(r, s, e).map(|b| b.get(8..).unwrap_or(&[]).to_vec()),
            _ => {}
        }
        pos = e;
    }
    if name.as_deref() != Some(b"iTunSMPB".as_slice()) {
        return None;
    }
    parse_itunsmpb(std::str::from_utf8(&data?).ok()?)
}

/// " 00000000 00000840 000001CA 00000000000D9A76 ...": hex fields; the second is the priming,
/// the third the end padding and the fourth the frame count to keep.
fn parse_itunsmpb(text: &str) -> Option<Mp4Trim> {
    let fields: Vec<u64> = text
        .split_whitespace()
        .take(4)
        .map(|f| u64::from_str_radix(f, 16).ok())
        .collect::<Option<_>>()?;
    let (priming, count) = (*fields.get(1)?, *fields.get(3)?);
    if priming >= MAX_ITUNSMPB_PRIMING || (priming == 0 && count == 0) {
        return None;
    }
    Some(Mp4Trim {
        skip: priming,
        keep: (count > 0).then_some(count),
        timescale: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    /// A version-0 `mvhd`/`mdhd`/`tkhd`-like body with `value` at offset 12.
    fn header_v0(value: u32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        b[12..16].copy_from_slice(&value.to_be_bytes());
        b
    }

    fn elst(entries: &[(u32, i32)]) -> Vec<u8> {
        let mut b = vec![0, 0, 0, 0];
        b.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        for &(duration, media_time) in entries {
            b.extend_from_slice(&duration.to_be_bytes());
            b.extend_from_slice(&media_time.to_be_bytes());
            b.extend_from_slice(&RATE_ONE.to_be_bytes());
        }
        boxed(b"edts", &boxed(b"elst", &b))
    }

    fn trak(id: u32, edts: &[u8]) -> Vec<u8> {
        let mut stts = vec![0, 0, 0, 0, 0, 0, 0, 2];
        for (count, delta) in [(22u32, 1024u32), (1, 546)] {
            stts.extend_from_slice(&count.to_be_bytes());
            stts.extend_from_slice(&delta.to_be_bytes());
        }
        let stbl = boxed(b"stbl", &boxed(b"stts", &stts));
        let mut mdia = boxed(b"mdhd", &header_v0(44_100, 24));
        mdia.extend(boxed(b"minf", &stbl));
        let mut body = boxed(b"tkhd", &header_v0(id, 84));
        body.extend_from_slice(edts);
        body.extend(boxed(b"mdia", &mdia));
        boxed(b"trak", &body)
    }

    fn itunsmpb_udta(text: &str) -> Vec<u8> {
        let mut item = boxed(b"mean", b"\0\0\0\0com.apple.iTunes");
        item.extend(boxed(b"name", b"\0\0\0\0iTunSMPB"));
        let mut data = vec![0, 0, 0, 1, 0, 0, 0, 0];
        data.extend_from_slice(text.as_bytes());
        item.extend(boxed(b"data", &data));
        let mut meta = vec![0, 0, 0, 0];
        meta.extend(boxed(b"hdlr", &[0u8; 25]));
        meta.extend(boxed(b"ilst", &boxed(b"----", &item)));
        boxed(b"udta", &boxed(b"meta", &meta))
    }

    fn file(traks: &[Vec<u8>], udta: &[u8]) -> Vec<u8> {
        let mut moov = boxed(b"mvhd", &header_v0(1000, 100));
        for t in traks {
            moov.extend_from_slice(t);
        }
        moov.extend_from_slice(udta);
        let mut f = boxed(b"ftyp", b"M4A \0\0\0\0");
        // An mdat with a 64-bit size before the moov, as large files have.
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(b"mdat");
        f.extend_from_slice(&(16u64 + 5).to_be_bytes());
        f.extend_from_slice(&[0xAA; 5]);
        f.extend(boxed(b"moov", &moov));
        f
    }

    fn parse(bytes: &[u8], track_id: u32) -> Option<Mp4Trim> {
        parse_trim(&mut Cursor::new(bytes), bytes.len() as u64, track_id)
    }

    #[test]
    fn reads_the_edit_list_of_the_requested_track() {
        let video = trak(1, &elst(&[(500, 0)]));
        let audio = trak(2, &elst(&[(100, -1), (500, 1024)]));
        let bytes = file(&[video, audio], &[]);
        let trim = parse(&bytes, 2).unwrap();
        assert_eq!(
            trim,
            Mp4Trim {
                skip: 1024,
                keep: Some(22_050),
                timescale: Some(44_100)
            }
        );
        // At another decoded rate (HE-AAC), the trim scales.
        let frames = trim.in_frames(88_200);
        assert_eq!(
            (frames.skip_frames, frames.remaining_frames),
            (2048, Some(44_100))
        );
        assert_eq!(parse(&bytes, 1).unwrap().skip, 0);
        assert_eq!(parse(&bytes, 3), None);
    }

    #[test]
    fn keep_is_capped_by_the_samples() {
        // 501 ms rounds up past the 22050 frames the samples hold after the skip.
        let bytes = file(&[trak(1, &elst(&[(501, 1024)]))], &[]);
        assert_eq!(parse(&bytes, 1).unwrap().keep, Some(22_050));
    }

    #[test]
    fn falls_back_to_itunsmpb_without_edit_list() {
        let udta = itunsmpb_udta(" 00000000 00000840 000001CA 0000000000005622 00000000");
        let bytes = file(&[trak(1, &[])], &udta);
        assert_eq!(
            parse(&bytes, 1),
            Some(Mp4Trim {
                skip: 0x840,
                keep: Some(22_050),
                timescale: None
            })
        );
        // An edit list wins over the tag.
        let bytes = file(&[trak(1, &elst(&[(500, 1024)]))], &udta);
        assert_eq!(parse(&bytes, 1).unwrap().skip, 1024);
    }

    #[test]
    fn malformed_or_unusual_files_give_no_trim() {
        let good = file(&[trak(1, &elst(&[(500, 1024)]))], &[]);
        // Every truncation fails cleanly.
        for cut in 0..good.len() {
            let _ = parse(&good[..cut], 1);
        }
        // A box claiming to be larger than its parent.
        let mut bad = good.clone();
        let at = bad.windows(4).position(|w| w == b"mvhd").unwrap() - 4;
        bad[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse(&bad, 1), None);
        // Two non-empty segments, or a negative media time: not a plain trim.
        let two = file(&[trak(1, &elst(&[(250, 1024), (250, 5000)]))], &[]);
        assert_eq!(parse(&two, 1), None);
        let empty_only = file(&[trak(1, &elst(&[(500, -1)]))], &[]);
        assert_eq!(parse(&empty_only, 1), None);
        // An elst whose count overruns its box.
        let mut body = vec![0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        body.extend_from_slice(&[0; 12]);
        let overrun = file(&[trak(1, &boxed(b"edts", &boxed(b"elst", &body)))], &[]);
        assert_eq!(parse(&overrun, 1), None);
        assert_eq!(parse(b"not an mp4 file at all", 1), None);
        assert_eq!(parse_itunsmpb("garbage"), None);
    }

    #[test]
    fn frame_trim_splits_packets() {
        let mut t = FrameTrim {
            skip_frames: 1500,
            remaining_frames: Some(1000),
        };
        assert_eq!(t.keep_range(1024), 1024..1024);
        assert_eq!(t.keep_range(1024), 476..1024);
        assert!(!t.is_done());
        assert_eq!(t.keep_range(1024), 0..452);
        assert!(t.is_done());
        assert_eq!(t.keep_range(1024), 0..0);
    }
}
