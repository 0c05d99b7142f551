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

/// What exec and attach stream to: the pod, its container, and whether
/// stdin and a terminal go with it.
#[derive(Debug, clap::Args)]
pub(crate) struct StreamArgs {
    /// The pod (`NAME` or `pod/NAME`)
    pub(crate) pod: String,
    /// The container (default: the pod's default container)
    #[arg(short, long)]
    container: Option<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
    /// Pass stdin to the container
    #[arg(short = 'i', long)]
    pub(crate) stdin: bool,
    /// Stdin is a TTY
    #[arg(short = 't', long)]
    tty: bool,
}

impl StreamArgs {
    /// The request for this target; `refusal` is kubectl's message for a
    /// finished pod.
    pub(crate) fn request<'a>(
        &'a self,
        refusal: &'a str,
        containers_terminal: bool,
    ) -> StreamRequest<'a> {
        StreamRequest {
            pod: &self.pod,
            namespace: self.namespace.as_deref(),
            container: self.container.clone(),
            stdin: self.stdin,
            tty: self.tty,
            refusal,
            containers_terminal,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    #[command(flatten)]
    target: StreamArgs,
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
    let mut stream = Stream::open(
        client,
        args.target
            .request("cannot exec into a container in a completed pod", false),
        err,
    )
    .await?;
    for word in &args.command {
        stream.query.push_str("&command=");
        stream.query.push_str(&encode_query(word));
    }
    stream.run(client, "exec", out, err).await
}

/// What `exec` and `attach` ask for: the pod, its container, and the
/// streams.
pub(crate) struct StreamRequest<'a> {
    pub pod: &'a str,
    pub namespace: Option<&'a str>,
    pub container: Option<String>,
    pub stdin: bool,
    pub tty: bool,
    /// kubectl's message for a pod that has finished.
    pub refusal: &'a str,
    /// attach: the terminal is the container's (its spec's `tty`), not
    /// the one asked for, as kubectl attach decides.
    pub containers_terminal: bool,
}

/// A stream to a pod's container, ready to open: its path and query as
/// kubectl sends them.
pub(crate) struct Stream {
    pod_path: String,
    pub query: String,
    pub container: String,
    pub namespace: String,
    stdin: bool,
    /// A raw local terminal, the remote one's.
    pub tty: bool,
}

impl Stream {
    /// Finds the pod and its container (refusing a finished pod, as kubectl
    /// does) and decides on a terminal.
    pub(crate) async fn open(
        client: &Client,
        request: StreamRequest<'_>,
        err: &mut (dyn Write + Send),
    ) -> Result<Stream, CliError> {
        let name = single_pod(request.pod)?;
        let namespace = namespace_or_default(request.namespace);
        let pod_path = pod_path(&namespace, &name);
        let pod = decode_pod(&client.get(&pod_path).await?)?;
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return Err(CliError::usage(format!(
                "{}; current phase is {phase}",
                request.refusal
            )));
        }
        let container = container_or_default(&pod, request.container, err)?;
        let mut tty = request.tty;
        if request.containers_terminal {
            tty = attach_tty(&pod, &container, tty, err)?;
        }
        let tty = use_tty(request.stdin, tty, std::io::stdin().is_terminal(), err)?;
        let mut query = format!("container={}&stdout=true", encode_query(&container));
        if request.stdin {
            query.push_str("&stdin=true");
        }
        if tty {
            query.push_str("&tty=true");
        } else {
            query.push_str("&stderr=true");
        }
        Ok(Stream {
            pod_path,
            query,
            container,
            namespace,
            stdin: request.stdin,
            tty,
        })
    }

    /// Connects to the pod's `subresource` and carries the streams.
    pub(crate) async fn run(
        self,
        client: &Client,
        subresource: &str,
        out: &mut (dyn Write + Send),
        err: &mut (dyn Write + Send),
    ) -> VerbResult {
        let path = format!("{}/{subresource}?{}", self.pod_path, self.query);
        let (socket, protocol) =
            crate::websocket::connect(client, &path, &remote_command::PROTOCOLS).await?;
        let session = remote_command::Session {
            stdin: self.stdin,
            tty: self.tty,
        };
        remote_command::run(socket, &protocol, session, out, err).await
    }
}

/// kubectl attach's choice: the container's terminal whenever it has one,
/// and a warning when one was asked for and it has none.
fn attach_tty(
    pod: &k8s_openapi::api::core::v1::Pod,
    container: &str,
    asked: bool,
    err: &mut (dyn Write + Send),
) -> Result<bool, CliError> {
    let has_tty = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .any(|c| c.name == container && c.tty == Some(true));
    if asked && !has_tty {
        writeln!(
            err,
            "error: Unable to use a TTY - container {container} did not allocate one"
        )?;
    }
    Ok(has_tty)
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
    fn attach_takes_the_containers_terminal() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "term", "tty": true}, {"name": "plain"}]}
        }))
        .unwrap();
        let mut err = Vec::new();
        assert!(attach_tty(&pod, "term", false, &mut err).unwrap());
        assert!(attach_tty(&pod, "term", true, &mut err).unwrap());
        assert!(!attach_tty(&pod, "plain", false, &mut err).unwrap());
        assert!(err.is_empty());
        assert!(!attach_tty(&pod, "plain", true, &mut err).unwrap());
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "error: Unable to use a TTY - container plain did not allocate one\n"
        );
    }

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
