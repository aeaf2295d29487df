//! Streaming decoder: symphonia demuxes every container and decodes every codec except Opus,
//! which goes to libopus (see `opus.rs`). Memory is bounded by one decoded packet plus what the
//! caller asks for; the file is never read whole.
//!
//! Error policy: a packet that symphonia reports as malformed (`DecodeError`) is skipped and
//! counted ([`Decoder::skipped_packets`]), as robust players do for a single damaged frame; more
//! than [`MAX_CONSECUTIVE_BAD_PACKETS`] in a row, a stream in which nothing decodes, a container
//! read error, or a stream that ends clearly before the length its header states are reported as
//! [`AudioIoError::Corrupt`].

use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::codecs::CodecParameters;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::well_known::{FORMAT_ID_ISOMP4, FORMAT_ID_MKV};
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::error::AudioIoError;
use crate::mp4_edit::{FrameTrim, Mp4Trim};
use crate::opus::{OpusDecoder, OpusHead, OPUS_RATE_HZ};

/// More damaged packets than this in a row make the file corrupt rather than glitchy.
pub const MAX_CONSECUTIVE_BAD_PACKETS: u32 = 8;

/// A stream may end this many frames short of its stated length before it counts as truncated
/// (stated lengths of lossy streams can be off by a codec frame or two).
const TRUNCATION_TOLERANCE_FRAMES: u64 = 4096;

/// What an opened file contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioInfo {
    pub sample_rate_hz: u32,
    pub channels: usize,
    /// Frames per channel as the container states it (after encoder delay and padding), if known.
    pub frames: Option<u64>,
    /// Short codec name, e.g. "flac", "mp3", "aac", "vorbis", "opus", "pcm_s16le".
    pub codec: String,
    /// Short container name, e.g. "wave", "ogg", "matroska", "isomp4".
    pub container: String,
}

enum CodecState {
    Symphonia(Box<dyn AudioDecoder>),
    Opus {
        decoder: OpusDecoder,
        /// Frames still to drop at the start (the pre-skip), unless the reader trims them.
        skip_frames: u64,
        /// The header's pre-skip, for the first-packet check below.
        pre_skip: u64,
        /// Whether the first packet has been seen.
        started: bool,
        /// Matroska/WebM: packet timestamps are not in frames; the pre-skip is always ours.
        is_mkv: bool,
    },
}

/// Decodes one audio file to interleaved `f32` frames, a block at a time.
pub struct Decoder {
    path: PathBuf,
    info: AudioInfo,
    reader: Box<dyn FormatReader>,
    track_id: u32,
    codec: CodecState,
    /// Decoded samples not yet handed out, interleaved; `pending_pos` is the next one.
    pending: Vec<f32>,
    pending_pos: usize,
    /// Samples at the end of `pending` held back until the stream ends, because they may be
    /// end padding that is dropped then (Opus in Matroska/WebM, see `mkv_discard`).
    hold_samples: usize,
    scratch: Vec<f32>,
    /// Frames decoded so far (after trimming), for positions in error messages.
    frames_decoded: u64,
    skipped_packets: u64,
    consecutive_bad: u32,
    finished: bool,
    /// The track states a delay (Ogg), so its stated length includes the pre-skip unless the
    /// reader trims it.
    reader_counts_preskip: bool,
    /// MP4/M4A gapless trim (see `mp4_edit`), until the first audio gives the decoded rate.
    mp4_trim: Option<Mp4Trim>,
    /// The same trim in decoded frames, applied to every packet from the first audio on.
    frame_trim: Option<FrameTrim>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("path", &self.path)
            .field("info", &self.info)
            .field("frames_decoded", &self.frames_decoded)
            .finish_non_exhaustive()
    }
}

fn extension_of(path: &Path) -> String {
    match path.extension() {
        Some(ext) => format!(".{}", ext.to_string_lossy()),
        None => "no extension".to_string(),
    }
}

impl Decoder {
    /// Opens `path`, finds its first (default) audio track and decodes the first packet, so that
    /// `info()` reports the real sample rate and channel count.
    pub fn open(path: &Path) -> Result<Decoder, AudioIoError> {
        let file = File::open(path).map_err(|source| AudioIoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let reader = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|err| match err {
                SymError::IoError(source) if source.kind() != std::io::ErrorKind::UnexpectedEof => {
                    AudioIoError::Read {
                        path: path.to_path_buf(),
                        source,
                    }
                }
                _ => AudioIoError::UnsupportedFormat {
                    path: path.to_path_buf(),
                    extension: extension_of(path),
                },
            })?;
        let container = reader.format_info().short_name.to_string();

        let Some(track) = reader.default_track(TrackType::Audio) else {
            let has_audio = reader
                .tracks()
                .iter()
                .any(|t| matches!(t.codec_params, Some(CodecParameters::Audio(_))));
            return Err(if has_audio {
                AudioIoError::UnsupportedCodec {
                    path: path.to_path_buf(),
                    codec: "unknown".to_string(),
                }
            } else {
                AudioIoError::NoAudioTrack {
                    path: path.to_path_buf(),
                }
            });
        };
        let Some(params) = track.codec_params.as_ref().and_then(|p| p.audio()) else {
            return Err(AudioIoError::NoAudioTrack {
                path: path.to_path_buf(),
            });
        };
        let track_id = track.id;
        let frames = track.num_frames;
        let reader_trims = track.delay.is_some() && track.num_frames.is_some();
        let mut end_trim_frames = 0usize;
        let mut mp4_trim = None;

        let (codec, codec_name, sample_rate_hz, channels) = if params.codec == CODEC_ID_OPUS {
            let corrupt = |detail: String| AudioIoError::Corrupt {
                path: path.to_path_buf(),
                position_s: 0.0,
                detail,
            };
            let head =
                OpusHead::parse(params.extra_data.as_deref().unwrap_or(&[])).map_err(corrupt)?;
            let decoder =
                OpusDecoder::new(&head).map_err(|detail| AudioIoError::UnsupportedCodec {
                    path: path.to_path_buf(),
                    codec: detail,
                })?;
            let is_mkv = reader.format_info().format == FORMAT_ID_MKV;
            if is_mkv {
                // Matroska/WebM: the end padding is in the last block's DiscardPadding.
                let discard_ns =
                    crate::mkv_discard::last_block_discard_ns(path, u64::from(track_id));
                let ns = discard_ns.unwrap_or(0).max(0) as u128;
                end_trim_frames =
                    ((ns * u128::from(OPUS_RATE_HZ) + 500_000_000) / 1_000_000_000) as usize;
            }
            (
                CodecState::Opus {
                    decoder,
                    skip_frames: u64::from(head.pre_skip),
                    pre_skip: u64::from(head.pre_skip),
                    started: false,
                    is_mkv,
                },
                "opus".to_string(),
                OPUS_RATE_HZ,
                head.channels,
            )
        } else {
            let decoder = symphonia::default::get_codecs()
                .make_audio_decoder(params, &AudioDecoderOptions::default())
                .map_err(|_| AudioIoError::UnsupportedCodec {
                    path: path.to_path_buf(),
                    codec: params.codec.to_string(),
                })?;
            if reader.format_info().format == FORMAT_ID_ISOMP4 {
                // MP4/M4A: the encoder delay and padding are in the edit list (or iTunSMPB).
                mp4_trim = crate::mp4_edit::read_trim(path, track_id);
            }
            let name = decoder.codec_info().short_name.to_string();
            let rate = params.sample_rate.unwrap_or(0);
            let channels = params.channels.as_ref().map_or(0, |c| c.count());
            (CodecState::Symphonia(decoder), name, rate, channels)
        };

        let mut decoder = Decoder {
            path: path.to_path_buf(),
            info: AudioInfo {
                sample_rate_hz,
                channels,
                frames,
                codec: codec_name,
                container,
            },
            reader,
            track_id,
            codec,
            pending: Vec::new(),
            pending_pos: 0,
            hold_samples: 0,
            scratch: Vec::new(),
            frames_decoded: 0,
            skipped_packets: 0,
            consecutive_bad: 0,
            finished: false,
            reader_counts_preskip: reader_trims,
            mp4_trim,
            frame_trim: None,
        };
        decoder.hold_samples = end_trim_frames * decoder.info.channels;
        // Decode ahead until there is audio, so the stream's real format is known (containers
        // can be vague or wrong, e.g. HE-AAC doubles the stated rate).
        while decoder.pending.is_empty() && decoder.decode_packet()? {}
        if decoder.finished {
            let keep = decoder.pending.len().saturating_sub(decoder.hold_samples);
            decoder.pending.truncate(keep);
        }
        if decoder.info.sample_rate_hz == 0 || decoder.info.channels == 0 {
            return Err(AudioIoError::Corrupt {
                path: decoder.path,
                position_s: 0.0,
                detail: "the audio track has no decodable audio".to_string(),
            });
        }
        Ok(decoder)
    }

    /// The stream's format.
    pub fn info(&self) -> &AudioInfo {
        &self.info
    }

    /// Packets that failed to decode and were skipped (see the module notes).
    pub fn skipped_packets(&self) -> u64 {
        self.skipped_packets
    }

    /// Appends up to `max_frames` interleaved f32 frames to `buf` (does not clear it); returns
    /// frames appended. `Ok(0)` means end of stream. Fewer than `max_frames` only at the end.
    pub fn read(&mut self, buf: &mut Vec<f32>, max_frames: usize) -> Result<usize, AudioIoError> {
        let channels = self.info.channels;
        let wanted = max_frames.saturating_mul(channels);
        let mut appended = 0;
        while appended < wanted {
            let hold = if self.finished { 0 } else { self.hold_samples };
            let available = (self.pending.len() - self.pending_pos).saturating_sub(hold);
            if available > 0 {
                let take = (wanted - appended).min(available);
                buf.extend_from_slice(&self.pending[self.pending_pos..self.pending_pos + take]);
                self.pending_pos += take;
                appended += take;
                continue;
            }
            if self.finished {
                break;
            }
            // Keep only the held-back tail, then decode more behind it.
            self.pending.drain(..self.pending_pos);
            self.pending_pos = 0;
            if !self.decode_packet()? {
                // End of stream: the held-back tail is padding.
                let keep = self.pending.len().saturating_sub(self.hold_samples);
                self.pending.truncate(keep);
            }
        }
        Ok(appended / channels.max(1))
    }

    fn corrupt(&self, detail: impl Into<String>) -> AudioIoError {
        corrupt_at(
            &self.path,
            self.frames_decoded,
            self.info.sample_rate_hz,
            detail.into(),
        )
    }

    /// Reads and decodes the next packet of our track, appending its audio to `pending`.
    /// Returns `Ok(false)` at the end of the stream.
    fn decode_packet(&mut self) -> Result<bool, AudioIoError> {
        if self.finished {
            return Ok(false);
        }
        let reader_counts_preskip = self.reader_counts_preskip;
        loop {
            if self.frame_trim.is_some_and(|t| t.is_done()) {
                // Everything the edit list keeps is out; the rest is padding.
                self.finished = true;
                self.check_complete()?;
                return Ok(false);
            }
            let packet = match self.reader.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    self.finished = true;
                    self.check_complete()?;
                    return Ok(false);
                }
                Err(SymError::IoError(err)) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(self.corrupt("the file ends in the middle of a packet (truncated)"));
                }
                Err(SymError::IoError(source)) => {
                    return Err(AudioIoError::Read {
                        path: self.path.clone(),
                        source,
                    });
                }
                Err(SymError::ResetRequired) => {
                    return Err(self.corrupt(
                        "the stream changes format part-way (chained streams are not supported)",
                    ));
                }
                Err(err) => return Err(self.corrupt(format!("container: {err}"))),
            };
            if packet.track_id != self.track_id {
                continue;
            }

            let before = self.pending.len();
            let result = match &mut self.codec {
                CodecState::Symphonia(decoder) => match decoder.decode(&packet) {
                    Ok(decoded) => {
                        let spec = decoded.spec();
                        let (rate, channels) = (spec.rate(), spec.channels().count());
                        if self.frames_decoded == 0 {
                            // First audio: trust the decoder over the container.
                            self.info.sample_rate_hz = rate;
                            self.info.channels = channels;
                        }
                        if let Some(trim) = self.mp4_trim.take() {
                            let frames = trim.in_frames(rate);
                            self.info.frames = match frames.remaining_frames {
                                Some(keep) => Some(keep),
                                None => self
                                    .info
                                    .frames
                                    .map(|f| f.saturating_sub(frames.skip_frames)),
                            };
                            self.frame_trim = Some(frames);
                        }
                        if rate != self.info.sample_rate_hz || channels != self.info.channels {
                            let detail = format!(
                                "the format changes part-way, from {} Hz {} ch to {rate} Hz {channels} ch",
                                self.info.sample_rate_hz, self.info.channels
                            );
                            return Err(corrupt_at(
                                &self.path,
                                self.frames_decoded,
                                self.info.sample_rate_hz,
                                detail,
                            ));
                        }
                        let keep = match self.frame_trim.as_mut() {
                            Some(trim) => trim.keep_range(decoded.frames()),
                            None => 0..decoded.frames(),
                        };
                        self.scratch.clear();
                        decoded.copy_to_vec_interleaved(&mut self.scratch);
                        self.pending.extend_from_slice(
                            &self.scratch[keep.start * channels..keep.end * channels],
                        );
                        Ok(())
                    }
                    Err(SymError::DecodeError(msg)) => Err(msg.to_string()),
                    Err(SymError::IoError(err)) => Err(err.to_string()),
                    Err(err) => {
                        return Err(corrupt_at(
                            &self.path,
                            self.frames_decoded,
                            self.info.sample_rate_hz,
                            err.to_string(),
                        ))
                    }
                },
                CodecState::Opus {
                    decoder,
                    skip_frames,
                    pre_skip,
                    started,
                    is_mkv,
                } => match decoder.decode(&packet.data) {
                    Ok(samples) => {
                        let channels = self.info.channels;
                        let frames = (samples.len() / channels) as u64;
                        // Who drops the pre-skip? symphonia 0.6.1 does not (Ogg: timestamps
                        // count it, trim_start is 0; Matroska: nothing), but a reader that marks
                        // the first packet with a start trim or a negative timestamp does.
                        let mut trim_start = packet.trim_start.get();
                        if packet.pts.get() < 0 && !*is_mkv {
                            // Ogg timestamps are in 48 kHz frames; Matroska's are not.
                            trim_start = trim_start.max(packet.pts.get().unsigned_abs());
                        }
                        if !*started {
                            *started = true;
                            if trim_start > 0 {
                                *skip_frames = 0;
                            } else if reader_counts_preskip {
                                // The stated length counts the pre-skip too.
                                self.info.frames =
                                    self.info.frames.map(|f| f.saturating_sub(*pre_skip));
                            }
                        }
                        let start = (trim_start + *skip_frames).min(frames);
                        *skip_frames -= (*skip_frames).min(frames);
                        let end = frames.saturating_sub(packet.trim_end.get()).max(start);
                        self.pending.extend_from_slice(
                            &samples[start as usize * channels..end as usize * channels],
                        );
                        Ok(())
                    }
                    Err(msg) => Err(msg),
                },
            };
            match result {
                Ok(()) => {
                    self.consecutive_bad = 0;
                    let channels = self.info.channels.max(1);
                    self.frames_decoded += ((self.pending.len() - before) / channels) as u64;
                    return Ok(true);
                }
                Err(msg) => {
                    self.skipped_packets += 1;
                    self.consecutive_bad += 1;
                    if self.consecutive_bad > MAX_CONSECUTIVE_BAD_PACKETS {
                        return Err(self.corrupt(format!(
                            "{} packets in a row failed to decode (last: {msg})",
                            self.consecutive_bad
                        )));
                    }
                }
            }
        }
    }

    /// At the end of the stream: fails if nothing decoded although packets were damaged, or if
    /// the stream is clearly shorter than the container says.
    fn check_complete(&self) -> Result<(), AudioIoError> {
        if self.frames_decoded == 0 && self.skipped_packets > 0 {
            return Err(self.corrupt(format!(
                "none of its {} packets could be decoded",
                self.skipped_packets
            )));
        }
        if let Some(expected) = self.info.frames {
            if self.frames_decoded + TRUNCATION_TOLERANCE_FRAMES < expected {
                let rate = f64::from(self.info.sample_rate_hz.max(1));
                return Err(self.corrupt(format!(
                    "the stream ends early: the header says it lasts {:.1} s (truncated or damaged file?)",
                    expected as f64 / rate
                )));
            }
        }
        Ok(())
    }
}

fn corrupt_at(path: &Path, frames: u64, rate_hz: u32, detail: String) -> AudioIoError {
    let position_s = if rate_hz == 0 {
        0.0
    } else {
        frames as f64 / f64::from(rate_hz)
    };
    AudioIoError::Corrupt {
        path: path.to_path_buf(),
        position_s,
        detail,
    }
}

/// Decodes the whole file into one `Vec<f32>` per channel. Holds everything in memory: meant for
/// tests, metrics and short clips, not for long inputs.
pub fn read_all(path: &Path) -> Result<(AudioInfo, Vec<Vec<f32>>), AudioIoError> {
    let mut decoder = Decoder::open(path)?;
    let channels = decoder.info().channels;
    let mut planar: Vec<Vec<f32>> = vec![Vec::new(); channels];
    let mut block = Vec::with_capacity(8192 * channels);
    loop {
        block.clear();
        if decoder.read(&mut block, 8192)? == 0 {
            break;
        }
        for frame in block.chunks_exact(channels) {
            for (plane, &sample) in planar.iter_mut().zip(frame) {
                plane.push(sample);
            }
        }
    }
    Ok((decoder.info().clone(), planar))
}
