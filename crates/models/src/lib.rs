//! Separation models behind one streaming `Separator` trait, and the model registry.

pub mod dfn3;
pub mod dtln;
mod error;
pub mod fetch;
pub mod gtcrn;
pub mod registry;
mod separator;

pub use error::ModelError;
pub use separator::Separator;
