//! Streaming resampling between the file/device rate and the model rate.
