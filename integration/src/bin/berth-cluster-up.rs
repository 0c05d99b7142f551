//! `berth-cluster-up [--dir DIR] [--node-name NAME] [-- NODE COMMAND...]`:
//! starts the test kit's control plane (the same certificates and flags
//! as the cluster-mode tests) in DIR for local development, mints the
//! node's credentials, prints the `KUBECONFIG` to use, then runs NODE
//! COMMAND (a berth agent, from scripts/cluster-up.sh) until it exits or
//! Ctrl-C; then stops the node and the control plane, in that order.
//!
//! In NODE COMMAND, `{node-kubeconfig}`, `{node-name}`, `{ca-cert}`,
//! `{node-serving-cert}`, `{node-serving-key}` and `{dir}` are replaced by
//! their paths and values.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_testkit::control_plane::{
    built_bin_dir, validate_node_name, ControlPlane, ControlPlaneOptions, NodeCredentials,
    KUBERNETES_VERSION,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

const DEFAULT_DIR: &str = "/var/lib/berth-cluster";
/// Marks DIR as ours (only such a directory is wiped on the next start)
/// and holds the pid of the berth-cluster-up using it.
const MARKER: &str = ".berth-cluster-up";
/// How long the node may take to stop on SIGTERM (its pods keep running).
const NODE_STOP_GRACE: Duration = Duration::from_secs(30);
/// How long leftovers of an earlier run may take to die.
const LEFTOVER_DEADLINE: Duration = Duration::from_secs(10);
/// What `{...}` in the node command may name.
const PLACEHOLDERS: [&str; 6] = [
    "node-kubeconfig",
    "node-name",
    "ca-cert",
    "node-serving-cert",
    "node-serving-key",
    "dir",
];
const USAGE: &str = "usage: berth-cluster-up [--dir DIR] [--node-name NAME] [-- NODE COMMAND...]";

struct Args {
    dir: PathBuf,
    node_name: Option<String>,
    node_command: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut parsed = Args {
        dir: DEFAULT_DIR.into(),
        node_name: None,
        node_command: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => parsed.dir = args.next().context("--dir needs a value")?.into(),
            "--node-name" => {
                parsed.node_name = Some(args.next().context("--node-name needs a value")?)
            }
            "--" => {
                parsed.node_command = args.by_ref().collect();
            }
            "-h" | "--help" => {
                println!("{USAGE}\n(default DIR {DEFAULT_DIR}, NAME the host name)");
                std::process::exit(0);
            }
            _ => bail!("unexpected argument {arg:?}\n{USAGE}"),
        }
    }
    parsed.dir = std::path::absolute(&parsed.dir)?;
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berth-cluster-up: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    let args = parse_args()?;
    let node = match args.node_name {
        Some(name) => name,
        None => nix::unistd::gethostname()?.to_string_lossy().to_lowercase(),
    };
    // Bad input fails before the control plane takes its 10 s to start.
    validate_node_name(&node)?;
    fill_placeholders(&args.node_command, |key| {
        PLACEHOLDERS.contains(&key).then(String::new)
    })?;
    prepare_dir(&args.dir).await?;
    let bin_dir = built_bin_dir()?;
    let options = ControlPlaneOptions {
        dir: Some(args.dir.clone()),
        own_process_group: true,
    };
    let control_plane = ControlPlane::start(&bin_dir, options).await?;
    let creds = control_plane.node_credentials(&node)?;
    let admin = control_plane.admin_kubeconfig();
    let env_file = args.dir.join("env");
    std::fs::write(
        &env_file,
        format!("export KUBECONFIG={}\n", admin.display()),
    )?;
    println!(
        "control plane {KUBERNETES_VERSION} at {}, ready in {:.1} s\n  \
         files and logs: {}\n  \
         node {node}:  {}\n\n\
         Use it from another shell:\n  \
         export KUBECONFIG={}    # or: source {}\n  \
         kubectl get nodes\n",
        control_plane.server(),
        control_plane
            .startup()
            .default_service_account
            .as_secs_f64(),
        args.dir.display(),
        creds.kubeconfig.display(),
        admin.display(),
        env_file.display(),
    );
    let code = if args.node_command.is_empty() {
        println!("No node command given: Ctrl-C stops the control plane.");
        shutdown_signal().await?;
        ExitCode::SUCCESS
    } else {
        let command = substitute(&args.node_command, &node, &creds, &control_plane)?;
        println!(
            "Ctrl-C stops the node and the control plane.\n$ {}",
            command.join(" ")
        );
        run_node(&command).await?
    };
    println!("stopping the control plane");
    drop(control_plane);
    Ok(code)
}

/// The node command with its placeholders filled in.
fn substitute(
    command: &[String],
    node: &str,
    creds: &NodeCredentials,
    control_plane: &ControlPlane,
) -> anyhow::Result<Vec<String>> {
    let path = |p: &Path| Some(p.display().to_string());
    fill_placeholders(command, |key| match key {
        "node-kubeconfig" => path(&creds.kubeconfig),
        "node-name" => Some(node.to_owned()),
        "ca-cert" => path(&control_plane.ca_cert_path()),
        "node-serving-cert" => path(&creds.serving_cert),
        "node-serving-key" => path(&creds.serving_key),
        "dir" => path(control_plane.dir()),
        _ => None,
    })
}

/// Replaces each `{key}` in `command` by `value(key)`; an unknown key is an
/// error. Text that is not `{word}` (shell braces, JSON) is left alone.
fn fill_placeholders(
    command: &[String],
    value: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<String>> {
    command
        .iter()
        .map(|arg| {
            let mut filled = String::new();
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                filled.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                let key_len = after
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
                    .unwrap_or(after.len());
                if key_len > 0 && after[key_len..].starts_with('}') {
                    let key = &after[..key_len];
                    let value = value(key)
                        .with_context(|| format!("unknown placeholder {{{key}}} in {arg:?}"))?;
                    filled.push_str(&value);
                    rest = &after[key_len + 1..];
                } else {
                    filled.push('{');
                    rest = after;
                }
            }
            filled.push_str(rest);
            Ok(filled)
        })
        .collect()
}

/// Runs the node in a process group of its own (a terminal's Ctrl-C reaches
/// us, not it) until it exits, or until Ctrl-C or SIGTERM, which it is sent
/// in turn.
async fn run_node(command: &[String]) -> anyhow::Result<ExitCode> {
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .process_group(0)
        .spawn()
        .with_context(|| format!("start {}", command[0]))?;
    let pid = Pid::from_raw(child.id().context("node pid")? as i32);
    tokio::select! {
        status = child.wait() => {
            let status = status?;
            println!("the node exited ({status})");
            return Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8));
        }
        signal = shutdown_signal() => signal?,
    }
    println!("stopping the node");
    let _ = kill(pid, Signal::SIGTERM);
    if tokio::time::timeout(NODE_STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        eprintln!("the node ignored SIGTERM for {NODE_STOP_GRACE:?}; killing it");
        child.kill().await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

/// Makes `dir` empty and ours: stops what an earlier run that died left
/// running there, and wipes a directory an earlier run made. Refuses any
/// other non-empty directory.
async fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let marker = std::fs::read_to_string(dir.join(MARKER)).ok();
        if let Some(pid) = marker.as_deref().and_then(|m| m.trim().parse::<i32>().ok()) {
            // Empty for a zombie, another program's for a reused pid.
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            if argv0.ends_with(b"berth-cluster-up") {
                bail!(
                    "berth-cluster-up (pid {pid}) is running in {} already",
                    dir.display()
                );
            }
        }
        let ours = marker.is_some();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !ours && !empty {
            bail!(
                "{} is not empty and was not made by berth-cluster-up; choose another --dir",
                dir.display()
            );
        }
        stop_leftovers(dir).await?;
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    // 0700: it holds private keys and etcd's data.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), format!("{}\n", std::process::id()))?;
    Ok(())
}

/// Kills processes whose arguments name a file under `dir`: the control
/// plane and node of an earlier run that was killed before it could stop
/// them.
async fn stop_leftovers(dir: &Path) -> anyhow::Result<()> {
    let leftovers = processes_under(dir);
    if leftovers.is_empty() {
        return Ok(());
    }
    println!(
        "stopping {} processes left running in {}",
        leftovers.len(),
        dir.display()
    );
    for pid in &leftovers {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let until = tokio::time::Instant::now() + LEFTOVER_DEADLINE;
    while !processes_under(dir).is_empty() {
        if tokio::time::Instant::now() >= until {
            bail!(
                "processes still running in {}: {:?}",
                dir.display(),
                processes_under(dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn processes_under(dir: &Path) -> Vec<i32> {
    let prefix = format!("{}/", dir.display());
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline
                .split(|&b| b == 0)
                .map(String::from_utf8_lossy)
                .any(|arg| arg.contains(&prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(args: &[&str]) -> anyhow::Result<Vec<String>> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        fill_placeholders(&args, |key| match key {
            "node-name" => Some("n1".into()),
            "dir" => Some("/d".into()),
            _ => None,
        })
    }

    #[test]
    fn placeholders_are_filled_and_other_braces_left_alone() {
        let filled = fill(&[
            "--node-name",
            "{node-name}",
            "--x={dir}/a-{node-name}",
            "{}",
            "{\"a\":1}",
            "${HOME}",
        ]);
        assert_eq!(
            filled.unwrap(),
            [
                "--node-name",
                "n1",
                "--x=/d/a-n1",
                "{}",
                "{\"a\":1}",
                "${HOME}"
            ]
        );
    }

    #[test]
    fn an_unknown_placeholder_is_an_error_naming_it() {
        let err = fill(&["{node-kubconfig}"]).unwrap_err();
        assert!(
            format!("{err}").contains("unknown placeholder {node-kubconfig}"),
            "{err}"
        );
    }
}
