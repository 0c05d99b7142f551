//! `exec POD [-c C] [-i] [-t] -- CMD...`: runs a command in a container
//! over the WebSocket exec stream, as kubectl does: output as it comes,
//! stdin forwarded with `-i`, a terminal with `-t`, and the command's exit
//! code.

use std::io::{IsTerminal, Write};

use crate::client::{encode_query, pod_path, Client};
use crate::error::CliError;
use crate::logs::container_or_default;
use crate::target::{decode_pod, single_pod};
use crate::{namespace_or_default, remote_command, VerbResult};

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
    /// Pass stdin to the container
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Stdin is a TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// The command and its arguments, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
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
    let tty = use_tty(args.stdin, args.tty, std::io::stdin().is_terminal(), err)?;
    let mut query = format!("container={}&stdout=true", encode_query(&container));
    if args.stdin {
        query.push_str("&stdin=true");
    }
    if tty {
        query.push_str("&tty=true");
    } else {
        query.push_str("&stderr=true");
    }
    for word in &args.command {
        query.push_str("&command=");
        query.push_str(&encode_query(word));
    }
    let path = format!("{}/exec?{query}", pod_path(&namespace, &name));
    let (socket, protocol) =
        crate::websocket::connect(client, &path, &remote_command::PROTOCOLS).await?;
    let session = remote_command::Session {
        stdin: args.stdin,
        tty,
    };
    remote_command::run(socket, &protocol, session, out, err).await
}

/// kubectl's `SetupTTY`: a terminal needs stdin, and stdin a terminal.
pub(crate) fn use_tty(
    stdin: bool,
    tty: bool,
    stdin_is_terminal: bool,
    err: &mut (dyn Write + Send),
) -> Result<bool, CliError> {
    if !tty || !stdin {
        return Ok(false);
    }
    if !stdin_is_terminal {
        writeln!(
            err,
            "Unable to use a TTY - input is not a terminal or the right kind of file"
        )?;
        return Ok(false);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_needs_stdin_and_a_terminal_on_it() {
        let mut err = Vec::new();
        assert!(use_tty(true, true, true, &mut err).unwrap());
        assert!(!use_tty(false, true, true, &mut err).unwrap());
        assert!(!use_tty(true, false, true, &mut err).unwrap());
        assert!(err.is_empty());
        assert!(!use_tty(true, true, false, &mut err).unwrap());
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "Unable to use a TTY - input is not a terminal or the right kind of file\n"
        );
    }
}
