//! Signal processing: STFT, resampling, metrics. No I/O.
