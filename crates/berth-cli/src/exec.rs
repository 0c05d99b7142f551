//! `exec POD [-c C] -- CMD...`: runs a command in a container and mirrors
//! its output and exit code.

use std::io::Write;

use http::Method;
use serde::Deserialize;
use serde_json::json;

use crate::client::{pod_path, Client, ClientError};
use crate::error::CliError;
use crate::logs::container_or_default;
use crate::target::{decode_pod, single_pod};
use crate::{namespace_or_default, VerbResult};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The pod (`NAME` or `pod/NAME`)
    pod: String,
    /// The container to run the command in
    #[arg(short, long)]
    container: Option<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
    /// Accepted for kubectl compatibility; stdin is not forwarded
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Accepted for kubectl compatibility; no TTY is allocated
    #[arg(short = 't', long)]
    tty: bool,
    /// The command and its arguments, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ExecResult {
    exit_code: i32,
    stdout: String,
    stderr: String,
}

pub async fn run(
    client: &Client,
    args: ExecArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    if args.command.is_empty() {
        return Err(CliError::usage(
            "you must specify at least one command for the container",
        ));
    }
    let name = single_pod(&args.pod)?;
    let namespace = namespace_or_default(args.namespace.as_deref());
    let pod = decode_pod(&client.get(&pod_path(&namespace, &name)).await?)?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(CliError::usage(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let container = container_or_default(&pod, args.container, err)?;
    let body = json!({"command": args.command, "container": container});
    let answer = client
        .json(
            Method::POST,
            &format!("{}/exec", pod_path(&namespace, &name)),
            Some(&body),
        )
        .await?;
    let result: ExecResult = serde_json::from_value(answer).map_err(ClientError::Decode)?;
    out.write_all(result.stdout.as_bytes())?;
    out.flush()?;
    err.write_all(result.stderr.as_bytes())?;
    exit_status(result.exit_code, err)
}

/// kubectl's report of a failed command, and the code to exit with.
fn exit_status(code: i32, err: &mut (dyn Write + Send)) -> Result<i32, CliError> {
    if code != 0 {
        writeln!(err, "command terminated with exit code {code}")?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_zero_exit_is_reported_like_kubectl() {
        let mut err = Vec::new();
        assert_eq!(exit_status(3, &mut err).unwrap(), 3);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "command terminated with exit code 3\n"
        );
        let mut err = Vec::new();
        assert_eq!(exit_status(0, &mut err).unwrap(), 0);
        assert!(err.is_empty());
    }
}
