//! Streaming WAV/FLAC encoder writing through a temporary file in the destination directory.
//! [`Encoder::finish`] flushes, fsyncs and renames it onto the destination, so readers never see
//! a partial output and an interrupted run leaves the old file (if any) untouched. Dropping an
//! unfinished `Encoder` deletes the temporary file.

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::AudioIoError;
use crate::flac::{FlacWriteError, FlacWriter};

/// Sample encoding of a WAV output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    Pcm16,
    Pcm24,
    Float32,
}

/// Output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Wav(SampleFormat),
    /// FLAC, 16 or 24 bits per sample.
    Flac {
        bits: u32,
    },
}

impl OutputFormat {
    /// Chooses the format from the extension of `path` (".wav" or ".flac", any case) and the
    /// requested bit depth: 16 or 24 (integer) for both, 32 (float) for WAV only.
    pub fn from_path_and_bits(path: &Path, bits: u32) -> Result<OutputFormat, AudioIoError> {
        let invalid = |detail: String| AudioIoError::InvalidOutput {
            path: path.to_path_buf(),
            detail,
        };
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match (ext.as_str(), bits) {
            ("wav", 16) => Ok(OutputFormat::Wav(SampleFormat::Pcm16)),
            ("wav", 24) => Ok(OutputFormat::Wav(SampleFormat::Pcm24)),
            ("wav", 32) => Ok(OutputFormat::Wav(SampleFormat::Float32)),
            ("flac", 16 | 24) => Ok(OutputFormat::Flac { bits }),
            ("wav" | "flac", _) => Err(invalid(format!(
                "{bits}-bit .{ext} is not supported; use 16 or 24 (or 32 for float WAV)"
            ))),
            _ => Err(invalid(
                "the output name must end in .wav or .flac, which are the formats nomusic writes"
                    .to_string(),
            )),
        }
    }
}

enum Sink {
    Wav {
        writer: hound::WavWriter<BufWriter<File>>,
        format: SampleFormat,
    },
    Flac {
        writer: Box<FlacWriter<BufWriter<File>>>,
        /// Full-scale value: 2^(bits-1).
        scale: f32,
        scratch: Vec<i32>,
    },
}

/// Writes interleaved `f32` frames to a WAV or FLAC file; see the module notes.
pub struct Encoder {
    path: PathBuf,
    tmp_path: PathBuf,
    channels: usize,
    /// A second handle on the temporary file, for fsync after the writer is done with it.
    file: File,
    /// `None` once finished or after a failed write.
    sink: Option<Sink>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("path", &self.path)
            .field("tmp_path", &self.tmp_path)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// Distinguishes temporary files of encoders created by one process.
static TMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Creates `.{name}.{pid}-{n}.tmp` next to `path`, exclusively.
fn create_temp(path: &Path) -> Result<(PathBuf, File), AudioIoError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(AudioIoError::OutputDirMissing {
            path: path.to_path_buf(),
            dir,
        });
    }
    let Some(name) = path.file_name() else {
        return Err(AudioIoError::InvalidOutput {
            path: path.to_path_buf(),
            detail: "the output path has no file name".to_string(),
        });
    };
    loop {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(".{}.{}-{n}.tmp", name.to_string_lossy(), std::process::id());
        let tmp_path = dir.join(tmp_name);
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp_path)
        {
            Ok(file) => return Ok((tmp_path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                let err = AudioIoError::write(path, source);
                return Err(match err {
                    AudioIoError::Write { path, source } => AudioIoError::Create { path, source },
                    other => other,
                });
            }
        }
    }
}

impl Encoder {
    /// Starts writing `path` (through a temporary file beside it). Fails if the directory does
    /// not exist or is not writable, or if the format does not fit (e.g. 0 channels).
    pub fn create(
        path: &Path,
        format: OutputFormat,
        sample_rate_hz: u32,
        channels: usize,
    ) -> Result<Encoder, AudioIoError> {
        let invalid = |detail: String| AudioIoError::InvalidOutput {
            path: path.to_path_buf(),
            detail,
        };
        if channels == 0 || sample_rate_hz == 0 {
            return Err(invalid(format!(
                "{channels} channels at {sample_rate_hz} Hz is not a valid output"
            )));
        }
        if let OutputFormat::Flac { bits } = format {
            if bits != 16 && bits != 24 {
                return Err(invalid(format!(
                    "FLAC output must be 16 or 24 bit, not {bits}"
                )));
            }
            if channels > 8 {
                return Err(invalid(format!(
                    "FLAC holds at most 8 channels, not {channels}"
                )));
            }
        }
        let channels_u16 = u16::try_from(channels)
            .map_err(|_| invalid(format!("{channels} channels is too many")))?;

        let (tmp_path, file) = create_temp(path)?;
        // From here on, a failure must remove the temporary file: build the Encoder first so
        // its Drop does that.
        let mut encoder = Encoder {
            path: path.to_path_buf(),
            tmp_path,
            channels,
            file,
            sink: None,
        };
        let writer_file = encoder
            .file
            .try_clone()
            .map_err(|source| AudioIoError::write(path, source))?;
        let out = BufWriter::with_capacity(1 << 16, writer_file);
        let sink = match format {
            OutputFormat::Wav(sample_format) => {
                let (bits_per_sample, hound_format) = match sample_format {
                    SampleFormat::Pcm16 => (16, hound::SampleFormat::Int),
                    SampleFormat::Pcm24 => (24, hound::SampleFormat::Int),
                    SampleFormat::Float32 => (32, hound::SampleFormat::Float),
                };
                let spec = hound::WavSpec {
                    channels: channels_u16,
                    sample_rate: sample_rate_hz,
                    bits_per_sample,
                    sample_format: hound_format,
                };
                let writer = hound::WavWriter::new(out, spec).map_err(|e| hound_error(path, e))?;
                Sink::Wav {
                    writer,
                    format: sample_format,
                }
            }
            OutputFormat::Flac { bits } => {
                let writer = FlacWriter::new(out, sample_rate_hz, channels, bits)
                    .map_err(|e| flac_error(path, e))?;
                Sink::Flac {
                    writer: Box::new(writer),
                    scale: (1u32 << (bits - 1)) as f32,
                    scratch: Vec::new(),
                }
            }
        };
        encoder.sink = Some(sink);
        Ok(encoder)
    }

    /// Appends interleaved frames. For integer formats samples are clamped to [-1, 1] and
    /// rounded to the nearest step (x * 2^(bits-1), no dither); NaN becomes 0.
    pub fn write(&mut self, interleaved: &[f32]) -> Result<(), AudioIoError> {
        if interleaved.len() % self.channels != 0 {
            return Err(AudioIoError::InvalidOutput {
                path: self.path.clone(),
                detail: format!(
                    "got {} samples, not a whole number of {}-channel frames",
                    interleaved.len(),
                    self.channels
                ),
            });
        }
        let Some(sink) = self.sink.as_mut() else {
            return Err(AudioIoError::InvalidOutput {
                path: self.path.clone(),
                detail: "write after a failed write".to_string(),
            });
        };
        let result = match sink {
            Sink::Wav { writer, format } => {
                write_wav(writer, *format, interleaved).map_err(|e| hound_error(&self.path, e))
            }
            Sink::Flac {
                writer,
                scale,
                scratch,
            } => {
                scratch.clear();
                scratch.extend(interleaved.iter().map(|&x| quantize(x, *scale)));
                writer.write(scratch).map_err(|e| flac_error(&self.path, e))
            }
        };
        if result.is_err() {
            // The file is in an unknown state; never finish it.
            self.sink = None;
        }
        result
    }

    /// Completes the file: flush, fsync, rename onto the destination (replacing it), and fsync
    /// the directory so the rename is durable.
    pub fn finish(mut self) -> Result<(), AudioIoError> {
        let path = self.path.clone();
        let Some(sink) = self.sink.take() else {
            return Err(AudioIoError::InvalidOutput {
                path,
                detail: "finish after a failed write".to_string(),
            });
        };
        match sink {
            Sink::Wav { writer, .. } => writer.finalize().map_err(|e| hound_error(&path, e))?,
            Sink::Flac { writer, .. } => {
                let out = writer.finish().map_err(|e| flac_error(&path, e))?;
                out.into_inner()
                    .map_err(|e| AudioIoError::write(&path, e.into_error()))?;
            }
        }
        self.file
            .sync_all()
            .map_err(|e| AudioIoError::write(&path, e))?;
        std::fs::rename(&self.tmp_path, &path).map_err(|e| AudioIoError::write(&path, e))?;
        // The temporary name is gone; tell Drop there is nothing to remove.
        self.tmp_path = PathBuf::new();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Best effort: some filesystems do not allow syncing a directory.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // Close the writer (it may still flush into the file) before unlinking.
        drop(self.sink.take());
        if !self.tmp_path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// Clamps to [-1, 1], scales by `scale` (2^(bits-1)) and rounds, saturating at the top code.
fn quantize(x: f32, scale: f32) -> i32 {
    let max = scale - 1.0;
    let v = (x.clamp(-1.0, 1.0) * scale).round().clamp(-scale, max);
    // NaN survives clamp; `as` maps it to 0.
    v as i32
}

fn write_wav(
    writer: &mut hound::WavWriter<BufWriter<File>>,
    format: SampleFormat,
    interleaved: &[f32],
) -> Result<(), hound::Error> {
    match format {
        SampleFormat::Pcm16 => {
            for &x in interleaved {
                writer.write_sample(quantize(x, 32768.0) as i16)?;
            }
        }
        SampleFormat::Pcm24 => {
            for &x in interleaved {
                writer.write_sample(quantize(x, 8_388_608.0))?;
            }
        }
        SampleFormat::Float32 => {
            for &x in interleaved {
                writer.write_sample(x)?;
            }
        }
    }
    Ok(())
}

fn hound_error(path: &Path, err: hound::Error) -> AudioIoError {
    match err {
        hound::Error::IoError(source) => AudioIoError::write(path, source),
        other => AudioIoError::InvalidOutput {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

fn flac_error(path: &Path, err: FlacWriteError) -> AudioIoError {
    match err {
        FlacWriteError::Io(source) => AudioIoError::write(path, source),
        FlacWriteError::Invalid(detail) => AudioIoError::InvalidOutput {
            path: path.to_path_buf(),
            detail: format!("FLAC: {detail}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_and_clamps() {
        assert_eq!(quantize(0.0, 32768.0), 0);
        assert_eq!(quantize(1.0, 32768.0), 32767);
        assert_eq!(quantize(2.0, 32768.0), 32767);
        assert_eq!(quantize(-1.0, 32768.0), -32768);
        assert_eq!(quantize(-3.0, 32768.0), -32768);
        assert_eq!(quantize(0.6 / 32768.0, 32768.0), 1);
        assert_eq!(quantize(-0.6 / 32768.0, 32768.0), -1);
        assert_eq!(quantize(f32::NAN, 32768.0), 0);
        assert_eq!(quantize(1.0, 8_388_608.0), 8_388_607);
    }

    #[test]
    fn format_from_extension() {
        let f = |p: &str, b| OutputFormat::from_path_and_bits(Path::new(p), b);
        assert_eq!(
            f("a.wav", 16).unwrap(),
            OutputFormat::Wav(SampleFormat::Pcm16)
        );
        assert_eq!(
            f("a.WAV", 32).unwrap(),
            OutputFormat::Wav(SampleFormat::Float32)
        );
        assert_eq!(f("a.flac", 24).unwrap(), OutputFormat::Flac { bits: 24 });
        assert!(f("a.flac", 32).is_err());
        assert!(f("a.mp3", 16).is_err());
    }
}
