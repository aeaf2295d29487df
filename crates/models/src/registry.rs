//! The model registry: what models exist, where they come from, and where they are on disk.
