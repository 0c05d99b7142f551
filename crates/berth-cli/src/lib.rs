//! berth's kubectl-like client. Each verb talks to the agent's local API
//! (the Kubernetes API's routes, over a unix socket) and prints what kubectl
//! prints, byte for byte where kubectl's output is defined.
//!
//! The `berth` binary flattens [`Command`] into its own command line and calls
//! [`run`]; tests call [`run_with`] to capture the output.
//!
//! # Layout
//!
//! One module per verb (`apply`, `get`, `describe`, `delete`, `logs`, `exec`,
//! `image`, `trace`, `get_events`), over `client` (HTTP on the unix socket);
//! kubectl's output shapes live in `table`, `tabwriter`, `event_table` and
//! `output`; `target` reads resource arguments as kubectl does.

mod apply;
mod attach;
mod client;
mod delete;
mod describe;
mod error;
mod event_table;
mod exec;
mod get;
mod get_events;
mod image;
mod logs;
mod output;
mod port_forward;
mod pull_progress;
mod remote_command;
mod table;
mod tabwriter;
mod target;
mod terminal;
mod trace;
mod websocket;

use std::io::Write;
use std::path::PathBuf;

pub use client::Client;

use error::CliError;

/// The client verbs, as kubectl spells them.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Apply a configuration to a pod by file name or stdin
    Apply(apply::ApplyArgs),
    /// Display one or many pods, or the events of a namespace
    Get(get::GetArgs),
    /// Show details of a pod
    Describe(describe::DescribeArgs),
    /// Delete pods by name, or all pods of a namespace
    Delete(delete::DeleteArgs),
    /// Print the logs for a container in a pod
    Logs(logs::LogsArgs),
    /// Execute a command in a container
    Exec(exec::ExecArgs),
    /// Attach to a running container's output
    Attach(attach::AttachArgs),
    /// Forward one or more local ports to a pod
    PortForward(port_forward::PortForwardArgs),
    /// Pull, remove, import and list the images of the node's container runtime
    Image(image::ImageArgs),
    /// Show a pod's lifecycle timeline, step by step to the millisecond
    Trace(trace::TraceArgs),
}

/// Where a verb writes: stdout and stderr, or buffers in tests.
pub struct Streams<'a> {
    pub out: &'a mut (dyn Write + Send),
    pub err: &'a mut (dyn Write + Send),
}

/// Runs `command` against the agent listening on `socket`, printing to the
/// process's stdout and stderr. Returns the process exit code.
pub async fn run(socket: PathBuf, command: Command) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let terminal = out.is_terminal();
    let streams = Streams {
        out: &mut out,
        err: &mut err,
    };
    let code = run_verb(socket, command, streams, terminal).await;
    out.flush()?;
    Ok(code)
}

/// [`run`] with the output going to `streams` (never a terminal).
pub async fn run_with(socket: PathBuf, command: Command, streams: Streams<'_>) -> i32 {
    run_verb(socket, command, streams, false).await
}

/// Runs one verb; `terminal` says stdout is one (for live progress).
async fn run_verb(socket: PathBuf, command: Command, streams: Streams<'_>, terminal: bool) -> i32 {
    let client = Client::new(socket);
    let Streams { out, err } = streams;
    let result = match command {
        Command::Apply(args) => apply::run(&client, args, out, err).await,
        Command::Get(args) => get::run(&client, args, out, err).await,
        Command::Describe(args) => describe::run(&client, args, out).await,
        Command::Delete(args) => delete::run(&client, args, out, err).await,
        Command::Logs(args) => logs::run(&client, args, out, err).await,
        Command::Exec(args) => exec::run(&client, args, out, err).await,
        Command::Attach(args) => attach::run(&client, args, out, err).await,
        Command::PortForward(args) => port_forward::run(&client, args, out, err).await,
        Command::Image(args) => image::run(&client, args, out, err, terminal).await,
        Command::Trace(args) => trace::run(&client, args, out, err).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = out.flush();
            let _ = err.write_all(error::render(&e).as_bytes());
            e.exit_code()
        }
    }
}

/// `-n`, or the manifest's namespace, or `default`.
const DEFAULT_NAMESPACE: &str = "default";

fn namespace_or_default(namespace: Option<&str>) -> String {
    namespace.unwrap_or(DEFAULT_NAMESPACE).to_string()
}

type VerbResult = Result<i32, CliError>;
