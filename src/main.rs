//! The `weft` command line.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = weft::cli::Cli::parse();
    match weft::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("weft: {err:#}");
            if err.downcast_ref::<weft::lab::Interrupted>().is_some() {
                // The shell's convention for "ended by Ctrl-C".
                return std::process::ExitCode::from(130);
            }
            std::process::ExitCode::FAILURE
        }
    }
}
