//! `berth`: the node agent (`berth agent`) and its kubectl-like client.
//!
//! # Layout
//!
//! This one file: the command line (clap), logging (tracing, quiet unless
//! `BERTH_LOG` says otherwise), and the hand-off to `berth_agent::run` or to
//! the client verbs of `berth_cli`; `berth logger` is the log writer the
//! containerd shim spawns.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use berth_agent::{AgentConfig, AgentFlags};
use berth_containerd::{Containerd, ContainerdConfig, RegistryConfig};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "Runs Kubernetes Pods on containerd, like the kubelet"
)]
struct Cli {
    /// The agent's local API socket.
    #[arg(
        long,
        global = true,
        env = "BERTH_SOCKET",
        default_value = "/run/berth/berth.sock"
    )]
    socket: PathBuf,
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Run the node agent
    Agent(Box<AgentFlags>),
    /// Write a container's output as CRI log lines (spawned by the shim)
    #[command(hide = true)]
    Logger {
        log_path: PathBuf,
        /// The stdout FIFO (spawned by the agent, not the shim).
        stdout: Option<PathBuf>,
        /// The stderr FIFO.
        #[arg(requires = "stdout")]
        stderr: Option<PathBuf>,
    },
    /// Print the admin kubeconfig of the agent's HTTPS API (for kubectl)
    Kubeconfig {
        /// The file the agent wrote (its `adminKubeconfig`).
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/etc/berth/admin.kubeconfig"
        )]
        file: PathBuf,
    },
    /// Print a shell completion script (bash, zsh or fish), as kubectl completion
    Completion { shell: CompletionShell },
    #[command(flatten)]
    Client(berth_cli::Command),
}

/// The shells `berth completion` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

fn main() -> ExitCode {
    // The shim spawns a logger for every container start and waits for it:
    // it skips building the whole command line (clap's tree of every
    // subcommand), which costs it time and resident memory.
    if let Some(log_path) = logger_invocation(std::env::args_os()) {
        return run_logger(&log_path, None);
    }
    let cli = Cli::parse();
    match cli.command {
        Top::Logger {
            log_path,
            stdout,
            stderr,
        } => run_logger(&log_path, stdout.as_deref().zip(stderr.as_deref())),
        Top::Completion { shell } => {
            use clap::CommandFactory;
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Top::Kubeconfig { file } => match std::fs::read(&file) {
            Ok(text) => {
                use std::io::Write;
                let _ = std::io::stdout().write_all(&text);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "error: {}: {e} (start the agent with --api-listen to make it)",
                    file.display()
                );
                ExitCode::FAILURE
            }
        },
        Top::Agent(flags) => match run_agent(*flags) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth agent: {e:#}");
                ExitCode::FAILURE
            }
        },
        Top::Client(command) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(berth_cli::run(cli.socket, command)) {
                Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `berth logger <path>` exactly, as the shim runs it; anything else (help,
/// flags) goes through clap.
fn logger_invocation(args: impl IntoIterator<Item = std::ffi::OsString>) -> Option<PathBuf> {
    let mut args = args.into_iter().skip(1);
    let (command, path) = (args.next()?, args.next()?);
    let plain = !path.as_encoded_bytes().starts_with(b"-");
    (command == berth_containerd::logger::LOGGER_SUBCOMMAND && plain && args.next().is_none())
        .then(|| PathBuf::from(path))
}

/// `fifos`: the container's stdout and stderr FIFOs, when berth spawned
/// the logger itself; else the shim's pipes on fds 3 and 4.
fn run_logger(
    log_path: &std::path::Path,
    fifos: Option<(&std::path::Path, &std::path::Path)>,
) -> ExitCode {
    match berth_containerd::logger::run_logger(log_path, fifos) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth logger: {}: {e}", log_path.display());
            ExitCode::FAILURE
        }
    }
}

/// berth's own crates, for a bare `BERTH_LOG=debug`.
const BERTH_CRATES: [&str; 4] = ["berth", "berth_agent", "berth_pod", "berth_containerd"];

/// Logs go to stderr, quiet (warnings) by default. `BERTH_LOG` takes a level
/// for berth's own crates (`debug`) or a full filter (`berth_pod=trace,h2=debug`).
fn init_tracing() {
    let filter = match std::env::var("BERTH_LOG") {
        Ok(spec) if !spec.contains('=') && !spec.contains(',') => {
            let mut filter = EnvFilter::new("warn");
            for krate in BERTH_CRATES {
                if let Ok(directive) = format!("{krate}={spec}").parse() {
                    filter = filter.add_directive(directive);
                }
            }
            filter
        }
        Ok(spec) => EnvFilter::new(spec),
        Err(_) => EnvFilter::new("warn,berth_agent=info"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run_agent(flags: AgentFlags) -> anyhow::Result<()> {
    // Settings are checked (from_flags validates) before anything is touched.
    let config = AgentConfig::from_flags(flags)?;
    // A bad registry file stops the agent here, naming the file.
    let registries = match &config.registry_config {
        Some(path) => RegistryConfig::load(path)?,
        None => RegistryConfig::default(),
    };
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let containerd = Containerd::connect(ContainerdConfig {
            socket: config.containerd_socket.clone(),
            namespace: config.containerd_namespace.clone(),
            root_dir: config.root_dir.clone(),
            cni_bin_dirs: config.cni_bin_dirs.clone(),
            cni_conf_dir: config.cni_conf_dir.clone(),
            pod_infra_image: config.pod_infra_image.clone(),
            logger_binary: std::env::current_exe().context("locate the berth binary")?,
            shim_timeout: berth_containerd::DEFAULT_SHIM_TIMEOUT,
        })
        .await?
        .with_registries(registries);
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        berth_agent::run(config, containerd, shutdown, || {
            // Tell systemd (Type=notify) we serve; a no-op elsewhere.
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        })
        .await?;
        Ok(())
    })
}

/// SIGTERM or SIGINT stops the agent; its pods keep running.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping on signal");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<std::ffi::OsString> {
        list.iter().map(Into::into).collect()
    }

    #[test]
    fn the_shims_logger_command_skips_clap() {
        assert_eq!(
            logger_invocation(args(&["/usr/bin/berth", "logger", "/var/log/pods/a/0.log"])),
            Some(PathBuf::from("/var/log/pods/a/0.log"))
        );
        for other in [
            &["berth"][..],
            &["berth", "logger"],
            &["berth", "logger", "--help"],
            &["berth", "logger", "a", "b"],
            &["berth", "get", "pods"],
            &["berth", "--socket", "logger"],
        ] {
            assert_eq!(logger_invocation(args(other)), None, "{other:?}");
        }
    }
}
