//! `canhgac`: the operator command line.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = canhgac_cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("canhgac: error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(canhgac_cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.code == 0 => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("canhgac: error: {}", f.message);
            ExitCode::from(f.code as u8)
        }
    }
}
