//! Downloads model files: resumable, verified by sha256, installed atomically.
