//! The command line: parse flags, run a subcommand, print any error as one
//! line and exit non-zero.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nettop::probe::privileges::{EXIT_PRIVILEGES, PrivilegeError};
use nettop::probe::{BackendChoice, OffsetsMode, StartConfig};

mod cli;

#[derive(Parser)]
#[command(
    name = "nettop",
    version,
    about = "Every TCP and UDP connection on this host, per process, traced with eBPF"
)]
struct Args {
    /// Attach backend: kprobe where it attaches, else fentry, else tracepoint.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto, global = true)]
    backend: BackendChoice,
    /// Where struct sock offsets come from: guess and cross-check with BTF (auto), guess only, or BTF only.
    #[arg(long, value_enum, default_value_t = OffsetsMode::Auto, global = true)]
    offsets: OffsetsMode,
    /// Read BTF from this file instead of /sys/kernel/btf/vmlinux.
    #[arg(long, value_name = "FILE", global = true)]
    btf: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Guess the kernel's struct sock offsets, print each field, and exit.
    Offsets {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Attach, watch for a while, then print the probe's per-socket records
    /// (a low-level view; the connection table builds on it).
    Sockets {
        /// Seconds to watch before printing.
        #[arg(long, default_value_t = 1.0)]
        duration: f64,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            // --help and --version are not errors.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let config = StartConfig {
        backend: args.backend,
        offsets: args.offsets,
        btf_path: args.btf,
    };
    let result = match args.command {
        Some(Command::Offsets { json }) => cli::offsets::run(&config, json),
        Some(Command::Sockets { duration, json }) => cli::sockets::run(&config, duration, json),
        None => Err(anyhow::anyhow!(
            "the interactive table is not built yet: run `nettop offsets` or `nettop sockets`"
        )),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nettop: {}", cli::escape(&format!("{e:#}")));
            let privileges = e
                .chain()
                .any(|c| c.downcast_ref::<PrivilegeError>().is_some());
            ExitCode::from(if privileges { EXIT_PRIVILEGES as u8 } else { 1 })
        }
    }
}
