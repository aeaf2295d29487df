//! Streaming FLAC writer on flacenc's frame-level API. `flacenc::encode_with_fixed_block_size`
//! builds the whole stream in memory, so instead we write the `fLaC` marker and a provisional
//! STREAMINFO, encode and write each block as it fills, and at the end seek back and rewrite
//! STREAMINFO with the real total length, frame sizes and MD5.

use std::io::{Seek, SeekFrom, Write};

use flacenc::bitsink::MemSink;
use flacenc::component::{BitRepr, Stream, StreamInfo};
use flacenc::config;
use flacenc::error::{Verified, Verify};
use flacenc::source::{Context, Fill, FrameBuf};

/// Frames per FLAC block; 4096 is what the reference encoder uses at 44.1/48 kHz.
const BLOCK_FRAMES: usize = 4096;

pub(crate) struct FlacWriter<W: Write + Seek> {
    out: W,
    config: Verified<config::Encoder>,
    stream_info: StreamInfo,
    /// Frame buffer and MD5/length context, filled together (`Fill` for the pair).
    fill: (FrameBuf, Context),
    /// Interleaved samples of the block being collected.
    block: Vec<i32>,
    channels: usize,
    frame_number: usize,
    sink: MemSink<u8>,
}

impl<W: Write + Seek> FlacWriter<W> {
    /// Writes the stream header to `out` (positioned at its start).
    pub fn new(
        mut out: W,
        sample_rate_hz: u32,
        channels: usize,
        bits: u32,
    ) -> Result<Self, FlacWriteError> {
        let bits = bits as usize;
        let invalid = |e: flacenc::error::VerifyError| FlacWriteError::Invalid(e.to_string());
        let config = config::Encoder::default()
            .into_verified()
            .map_err(|(_, e)| invalid(e))?;
        let stream_info =
            StreamInfo::new(sample_rate_hz as usize, channels, bits).map_err(invalid)?;
        let framebuf = FrameBuf::with_size(channels, BLOCK_FRAMES).map_err(invalid)?;
        let mut sink = MemSink::<u8>::new();
        write_header(&mut out, &mut sink, &stream_info)?;
        Ok(FlacWriter {
            out,
            config,
            stream_info,
            fill: (framebuf, Context::new(bits, channels)),
            block: Vec::with_capacity(BLOCK_FRAMES * channels),
            channels,
            frame_number: 0,
            sink,
        })
    }

    /// Adds interleaved integer samples (already in range for the bit depth).
    pub fn write(&mut self, interleaved: &[i32]) -> Result<(), FlacWriteError> {
        let block_samples = BLOCK_FRAMES * self.channels;
        let mut rest = interleaved;
        while !rest.is_empty() {
            let take = (block_samples - self.block.len()).min(rest.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.block.len() == block_samples {
                self.encode_block()?;
            }
        }
        Ok(())
    }

    fn encode_block(&mut self) -> Result<(), FlacWriteError> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.fill
            .fill_interleaved(&self.block)
            .map_err(|e| FlacWriteError::Invalid(e.to_string()))?;
        self.block.clear();
        let frame = flacenc::encode_fixed_size_frame(
            &self.config,
            &self.fill.0,
            self.frame_number,
            &self.stream_info,
        )
        .map_err(|e| FlacWriteError::Invalid(e.to_string()))?;
        self.frame_number += 1;
        self.stream_info.update_frame_info(&frame);
        self.sink.clear();
        frame
            .write(&mut self.sink)
            .map_err(|e| FlacWriteError::Invalid(e.to_string()))?;
        self.out.write_all(self.sink.as_slice())?;
        Ok(())
    }

    /// Encodes the last partial block, rewrites STREAMINFO and returns the flushed writer.
    pub fn finish(mut self) -> Result<W, FlacWriteError> {
        self.encode_block()?;
        let info = &mut self.stream_info;
        let invalid = |e: flacenc::error::VerifyError| FlacWriteError::Invalid(e.to_string());
        // The reference encoder states the nominal block size even when the only frame is short.
        info.set_block_sizes(BLOCK_FRAMES, BLOCK_FRAMES)
            .map_err(invalid)?;
        if self.frame_number == 0 {
            info.set_frame_sizes(0, 0).map_err(invalid)?;
        }
        info.set_md5_digest(&self.fill.1.md5_digest());
        self.out.seek(SeekFrom::Start(0))?;
        let info = self.stream_info.clone();
        write_header(&mut self.out, &mut self.sink, &info)?;
        self.out.seek(SeekFrom::End(0))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes "fLaC" and the STREAMINFO block (always 42 bytes, so it can be rewritten in place).
fn write_header<W: Write>(
    out: &mut W,
    sink: &mut MemSink<u8>,
    info: &StreamInfo,
) -> Result<(), FlacWriteError> {
    sink.clear();
    Stream::with_stream_info(info.clone())
        .write(sink)
        .map_err(|e| FlacWriteError::Invalid(e.to_string()))?;
    out.write_all(sink.as_slice())?;
    Ok(())
}

#[derive(Debug)]
pub(crate) enum FlacWriteError {
    Io(std::io::Error),
    Invalid(String),
}

impl From<std::io::Error> for FlacWriteError {
    fn from(e: std::io::Error) -> Self {
        FlacWriteError::Io(e)
    }
}
