//! The processing pipelines every mode shares: streaming separation of interleaved audio at any
//! rate (`stream`), whole files in bounded memory (`file`), and the benchmark runner (`bench`).

pub mod bench;
mod error;
pub mod file;
pub mod stream;

pub use error::EngineError;
pub use file::{separate_file, FileJob, FileReport, Progress};
pub use stream::{MixOptions, ModelFactory, StreamSeparator};
