//! Streaming STFT analysis and overlap-add synthesis.
