//! Separation models behind one streaming `Separator` trait, and the model registry.

mod error;
mod separator;

pub use error::ModelError;
pub use separator::Separator;
