//! `roost`: the command-line interface, and `roost up`, which runs the
//! whole platform in one process.

mod cli;
mod daemon;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let mut args = cli::Cli::parse();
    if let Some(relay_args) = args.log_relay_args() {
        return roost_runtime::logs::relay_main(relay_args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) if cli::is_stdout_closed(&err) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if let Some(hint) = cli::hint(&err) {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
