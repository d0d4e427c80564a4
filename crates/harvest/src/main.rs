//! `harvest`: one binary for the daemon and every client command.

mod cli;
mod commands;
mod render;

use clap::Parser;
use std::process::ExitCode;

/// `harvest ls | head -3`: once the reader has gone, printing more fails with a broken
/// pipe, which `println!` turns into a panic. That is the normal end of such a command, so
/// it ends quietly (exit 0) instead of with a backtrace. SIGPIPE itself stays ignored (as
/// Rust sets it), so a daemon or client socket whose peer vanished is an error, not a kill.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") || msg.contains("os error 32") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    // The per-session supervisor is this binary too, started by the daemon with its launch
    // spec on stdin; it needs neither clap nor the multi-threaded runtime.
    if std::env::args_os().nth(1).is_some_and(|a| a == "supervise") {
        let code = harvest_supervisor::run::main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // The agent's stand-in for a container session (the docker provider), run by its
    // supervisor as bwrap is for a local one.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "docker-exec")
    {
        let code = harvest_docker::exec_helper::main(std::env::args_os().skip(2).collect());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // Inside a jail without a network: relay the agent's model traffic (harvest-proxy).
    if std::env::args_os().nth(1).is_some_and(|a| a == "forward") {
        return harvest_proxy::forward::main(std::env::args_os().skip(2).collect());
    }
    quiet_on_closed_pipe();
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
            // An error may carry text from a sandbox or a remote (a path, git's `remote:`
            // lines): it cannot drive the terminal.
            let text = format!("{e:#}");
            let shown = harvest_termsafe::text(&text, harvest_termsafe::Sgr::Drop);
            eprintln!("harvest: {shown}");
            ExitCode::FAILURE
        }
    }
}
