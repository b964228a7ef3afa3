//! The `weft` command line.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if weft::cni::invoked_as_plugin(
        &argv0,
        std::env::args_os().count(),
        std::env::var_os("CNI_COMMAND").is_some(),
    ) {
        return weft::cni::run_plugin();
    }
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
