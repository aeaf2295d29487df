//! Signal processing shared by every mode: STFT, resampling, objective metrics. No I/O.

pub mod metrics;
pub mod resample;
pub mod stft;
pub mod varispeed;
