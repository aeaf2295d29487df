//! Objective quality metrics (SI-SDR, residual, music-only attenuation, STOI), as defined by the benchmark scorer.
