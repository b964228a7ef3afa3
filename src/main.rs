//! The `weft` command line.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = weft::cli::Cli::parse();
    match weft::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("weft: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
