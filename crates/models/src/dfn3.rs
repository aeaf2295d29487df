//! DeepFilterNet3 (48 kHz, ERB gains plus deep filtering) on tract, with its feature pipeline.
