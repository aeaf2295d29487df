//! Offline (file) pipeline over any `Separator`.
