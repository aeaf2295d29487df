//! Audio decoding (symphonia, libopus) and encoding (WAV, FLAC).
