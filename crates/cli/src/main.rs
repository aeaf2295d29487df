//! `nomusic`: removes background music and keeps speech.
//!
//! A thin front end: flags are parsed by clap into `args::Cli`, then each sub-command turns
//! them into engine objects and reports errors with `anyhow` context and exit codes.

mod args;
mod bench_cmd;
mod eval_cmd;
mod live_cmd;
mod models_cmd;
mod progress;
mod separate_cmd;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Separate(a) => separate_cmd::run(a),
        Command::Models(a) => models_cmd::run(a),
        Command::Bench(a) => bench_cmd::run(a),
        Command::Eval(a) => eval_cmd::run(a),
        Command::Devices(a) => live_cmd::devices(a),
        Command::Live(a) => live_cmd::live(a),
        Command::LatencyTest(a) => live_cmd::latency_test(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
