//! `berth`: the node agent (`berth agent`) and its kubectl-like client.
//!
//! # Layout
//!
//! This one file: the command line (clap), logging (tracing, quiet unless
//! `BERTH_LOG` says otherwise), and the hand-off to `berth_agent::run` or to
//! the client verbs of `berth_cli`. `berth logger` is the container log
//! writer (the `berth_logger` crate), for agents without the small
//! `berth-logger` binary beside them (`src/bin/berth-logger.rs`).
//! `build.rs` lays out release builds: the functions the agent runs first
//! and together (`hot-code.order`), relocations packed.

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
    // A logger (see `logger_binary`) skips building the whole command line
    // (clap's tree of every subcommand): the shim waits for it at every
    // container start.
    if let Some(logger) = berth_logger::Invocation::from_args(std::env::args_os()) {
        return logger.run();
    }
    let cli = Cli::parse();
    match cli.command {
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

/// glibc gives each thread that allocates an arena of its own, up to eight
/// per core, and memory freed in one is not reused by the others. The agent
/// waits far more than it computes, so one shared arena costs it nothing in
/// speed and saves about 20 KiB per pod (measured: 12.3 to 10.4 MiB of
/// anonymous memory with 100 pods).
#[allow(unsafe_code)]
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a parameter of glibc's allocator, under the
    // allocator's own lock; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
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
    one_malloc_arena();
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
            logger_binary: logger_binary()?,
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

/// The container log writer the shim spawns: `berth-logger` beside this
/// binary, a small program that maps far less than the agent; without it,
/// this binary itself (`berth logger`).
fn logger_binary() -> anyhow::Result<PathBuf> {
    let agent = std::env::current_exe().context("locate the berth binary")?;
    let small = agent.with_file_name("berth-logger");
    Ok(if small.is_file() { small } else { agent })
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
