//! Separation models behind one streaming `Separator` trait, the offline HTDemucs models, and
//! the model registry.

pub mod builtin;
pub mod demucs;
pub mod dfn3;
pub mod dtln;
mod error;
pub mod fetch;
pub mod gtcrn;
pub mod registry;
mod separator;

pub use error::ModelError;
pub use nomusic_htdemucs as htdemucs;
pub use separator::Separator;
