//! DTLN: two-stage LSTM denoiser at 16 kHz on tract.
