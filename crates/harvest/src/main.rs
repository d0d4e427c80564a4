//! `harvest`: one binary for the daemon and every client command.

mod cli;
mod commands;
mod render;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // The per-session supervisor is this binary too, started by the daemon with its launch
    // spec on stdin; it needs neither clap nor the multi-threaded runtime.
    if std::env::args_os().nth(1).is_some_and(|a| a == "supervise") {
        let code = harvest_supervisor::run::main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("harvest: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harvest: {e:#}");
            ExitCode::FAILURE
        }
    }
}
