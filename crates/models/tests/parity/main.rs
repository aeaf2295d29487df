//! Parity of the streaming model runners with their Python references, plus determinism.
//!
//! The references (tools/reference/*.py) run on the interpreter named by NOMUSIC_PYTHON, which
//! scripts/test.sh sets to the repo's .venv. Model files are read from the shared models folder
//! beside the repo; they are never copied into it.

mod common;
mod dfn3;
mod dtln;
mod gtcrn;
mod registry;
mod timing;
