//! Opus packets decoded with the system libopus (symphonia has no Opus decoder). Symphonia still
//! does the demuxing (Ogg, Matroska/WebM) and hands us the `OpusHead` as the codec's extra data.

/// Opus always decodes at 48 kHz, whatever rate the original had.
pub(crate) const OPUS_RATE_HZ: u32 = 48_000;

/// The longest Opus packet is 120 ms.
const MAX_PACKET_FRAMES: usize = 5760;

/// The fields of the Opus identification header (RFC 7845, section 5.1) that decoding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpusHead {
    pub channels: usize,
    /// Frames at 48 kHz to drop from the start of the decoded stream.
    pub pre_skip: u32,
    /// Output gain in Q7.8 dB.
    pub output_gain_q8: i16,
    pub mapping_family: u8,
}

impl OpusHead {
    /// Parses an `OpusHead` packet; returns a description of the problem if it is not one.
    pub fn parse(data: &[u8]) -> Result<Self, String> {
        if data.len() < 19 || &data[..8] != b"OpusHead" {
            return Err("missing or short OpusHead header".to_string());
        }
        let version = data[8];
        if version >> 4 != 0 {
            return Err(format!("unsupported OpusHead version {version}"));
        }
        Ok(OpusHead {
            channels: usize::from(data[9]),
            pre_skip: u32::from(u16::from_le_bytes([data[10], data[11]])),
            output_gain_q8: i16::from_le_bytes([data[16], data[17]]),
            mapping_family: data[18],
        })
    }
}

/// A libopus decoder for one mono or stereo stream.
pub(crate) struct OpusDecoder {
    inner: opus::Decoder,
    channels: usize,
    scratch: Vec<f32>,
}

impl OpusDecoder {
    /// Creates a decoder for `head`. Only mono and stereo (mapping family 0, or family 1 with at
    /// most two channels, which is the same layout) are supported.
    pub fn new(head: &OpusHead) -> Result<Self, String> {
        let channels = match (head.mapping_family, head.channels) {
            (0 | 1, 1) => opus::Channels::Mono,
            (0 | 1, 2) => opus::Channels::Stereo,
            (family, n) => {
                return Err(format!(
                    "Opus with {n} channels (mapping family {family}); only mono and stereo are supported"
                ))
            }
        };
        let mut inner = opus::Decoder::new(OPUS_RATE_HZ, channels)
            .map_err(|e| format!("libopus decoder setup failed: {e}"))?;
        if head.output_gain_q8 != 0 {
            inner
                .set_gain(i32::from(head.output_gain_q8))
                .map_err(|e| format!("libopus rejected the output gain: {e}"))?;
        }
        Ok(OpusDecoder {
            inner,
            channels: head.channels,
            scratch: vec![0.0; MAX_PACKET_FRAMES * head.channels],
        })
    }

    /// Decodes one packet; returns its interleaved samples (all frames, untrimmed).
    pub fn decode(&mut self, packet: &[u8]) -> Result<&[f32], String> {
        let frames = self
            .inner
            .decode_float(packet, &mut self.scratch, false)
            .map_err(|e| format!("libopus: {e}"))?;
        Ok(&self.scratch[..frames * self.channels])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_bytes(channels: u8, pre_skip: u16, family: u8) -> Vec<u8> {
        let mut v = b"OpusHead".to_vec();
        v.push(1);
        v.push(channels);
        v.extend_from_slice(&pre_skip.to_le_bytes());
        v.extend_from_slice(&44_100u32.to_le_bytes());
        v.extend_from_slice(&0i16.to_le_bytes());
        v.push(family);
        v
    }

    #[test]
    fn parses_head() {
        let head = OpusHead::parse(&head_bytes(2, 312, 0)).unwrap();
        assert_eq!(
            head,
            OpusHead {
                channels: 2,
                pre_skip: 312,
                output_gain_q8: 0,
                mapping_family: 0
            }
        );
    }

    #[test]
    fn rejects_bad_heads() {
        assert!(OpusHead::parse(b"OpusTags").is_err());
        assert!(OpusHead::parse(&head_bytes(2, 312, 0)[..12]).is_err());
        let surround = OpusHead::parse(&head_bytes(6, 312, 1)).unwrap();
        assert!(OpusDecoder::new(&surround).is_err());
    }
}
