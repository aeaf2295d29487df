//! The processing pipelines every mode shares: streaming separation of interleaved audio at any
//! rate (`stream`), whole files in bounded memory (`file`), whole files through an offline
//! model such as HTDemucs (`offline`), and the benchmark runner (`bench`).

pub mod bench;
mod error;
pub mod file;
pub mod offline;
pub mod stream;

pub use error::EngineError;
pub use file::{separate_file, FileJob, FileReport, Progress};
pub use offline::{separate_file_offline, LoadedModel};
pub use stream::{MixOptions, ModelFactory, StreamSeparator};
