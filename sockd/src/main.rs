//! The `sockd` executable: parses the command line and hands over to the library.
//! Everything else lives in the `sockd` library so that it can be tested.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let options = sockd::cli::Options::parse();
    sockd::run(options)
}
