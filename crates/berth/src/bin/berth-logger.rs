//! `berth-logger`: the process containerd's shim spawns for each container
//! to write its output to its CRI log file (see the `berth_logger` crate).
//! A program apart from `berth`, so that each of these processes maps a
//! few hundred kilobytes rather than the whole agent.

use std::process::ExitCode;

fn main() -> ExitCode {
    match berth_logger::Invocation::from_args(std::env::args_os()) {
        Some(logger) => logger.run(),
        None => {
            eprintln!("usage: berth-logger logger LOG [STDOUT_FIFO STDERR_FIFO] (run by containerd's shim or the berth agent)");
            ExitCode::from(2)
        }
    }
}
