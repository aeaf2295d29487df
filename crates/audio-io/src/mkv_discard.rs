//! End trimming for Opus in Matroska/WebM. The encoder pads the last Opus packet, and the muxer
//! records how much to drop in the last block's `DiscardPadding` element; symphonia 0.6 does not
//! expose that element, so we find it ourselves with a header-only walk over the file (payloads
//! are skipped with seeks, so the cost is small and memory is constant).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

const ID_SEGMENT: u32 = 0x1853_8067;
const ID_CLUSTER: u32 = 0x1F43_B675;
const ID_BLOCK_GROUP: u32 = 0xA0;
const ID_BLOCK: u32 = 0xA1;
const ID_SIMPLE_BLOCK: u32 = 0xA3;
const ID_DISCARD_PADDING: u32 = 0x75A2;

/// The `DiscardPadding` (in nanoseconds) of the last block of track `track_number`, or 0 when it
/// has none. Returns `None` if the file cannot be walked (then no end trimming is done).
pub(crate) fn last_block_discard_ns(path: &Path, track_number: u64) -> Option<i64> {
    let file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut r = BufReader::new(file);
    // The discard padding of the last block of our track seen so far.
    let mut last = 0i64;
    // Inside a BlockGroup: its end offset, whether its block is ours, and its discard padding.
    let mut group: Option<(u64, bool, i64)> = None;
    loop {
        let pos = r.stream_position().ok()?;
        if let Some((end, ours, discard)) = group {
            if pos >= end {
                if ours {
                    last = discard;
                }
                group = None;
            }
        }
        if pos >= len {
            break;
        }
        let Some(id) = read_id(&mut r) else { break };
        let Some(size) = read_size(&mut r) else { break };
        let data_start = r.stream_position().ok()?;
        match id {
            // Masters we descend into (their size may be "unknown", which is fine here).
            ID_SEGMENT | ID_CLUSTER => {}
            ID_BLOCK_GROUP => group = Some((data_start + size?, false, 0)),
            ID_SIMPLE_BLOCK | ID_BLOCK => {
                let track = read_size(&mut r)??;
                if track == track_number {
                    if id == ID_SIMPLE_BLOCK {
                        last = 0;
                    } else if let Some(g) = group.as_mut() {
                        g.1 = true;
                    }
                }
                r.seek(SeekFrom::Start(data_start + size?)).ok()?;
            }
            ID_DISCARD_PADDING => {
                let size = size?;
                if size > 8 {
                    return None;
                }
                let mut buf = [0u8; 8];
                r.read_exact(&mut buf[..size as usize]).ok()?;
                let mut value = 0i64;
                for (i, &b) in buf[..size as usize].iter().enumerate() {
                    // Sign-extend from the first byte.
                    value = if i == 0 {
                        i64::from(b as i8)
                    } else {
                        (value << 8) | i64::from(b)
                    };
                }
                if let Some(g) = group.as_mut() {
                    g.2 = value;
                }
            }
            _ => {
                r.seek(SeekFrom::Start(data_start + size?)).ok()?;
            }
        }
    }
    Some(last)
}

/// An element ID: a vint whose marker bit is kept.
fn read_id<R: Read>(r: &mut R) -> Option<u32> {
    let mut first = [0u8; 1];
    r.read_exact(&mut first).ok()?;
    let len = first[0].leading_zeros() as usize + 1;
    if len > 4 {
        return None;
    }
    let mut value = u32::from(first[0]);
    for _ in 1..len {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).ok()?;
        value = (value << 8) | u32::from(b[0]);
    }
    Some(value)
}

/// An element data size; `Some(None)` for the reserved "unknown size" value.
fn read_size<R: Read>(r: &mut R) -> Option<Option<u64>> {
    let mut first = [0u8; 1];
    r.read_exact(&mut first).ok()?;
    let len = first[0].leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let mut value = u64::from(first[0]) & (0xFF >> len);
    let mut all_ones = value == (0xFF >> len);
    for _ in 1..len {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).ok()?;
        all_ones &= b[0] == 0xFF;
        value = (value << 8) | u64::from(b[0]);
    }
    Some(if all_ones { None } else { Some(value) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_ids_and_sizes() {
        let mut c = Cursor::new(vec![0x1A, 0x45, 0xDF, 0xA3, 0x81, 0x01, 0xFF]);
        assert_eq!(read_id(&mut c), Some(0x1A45_DFA3));
        assert_eq!(read_size(&mut c), Some(Some(1)));
        assert_eq!(read_size(&mut Cursor::new(vec![0x40, 0x02])), Some(Some(2)));
        assert_eq!(read_size(&mut Cursor::new(vec![0xFF])), Some(None));
    }
}
