//! `attach POD [-c C]`: the container's output as it comes, until it stops,
//! over the WebSocket attach stream (as kubectl attach).

use std::io::{IsTerminal, Write};

use crate::client::{encode_query, pod_path, Client};
use crate::error::CliError;
use crate::exec::use_tty;
use crate::logs::container_or_default;
use crate::target::{decode_pod, single_pod};
use crate::{namespace_or_default, remote_command, VerbResult};

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The pod (`NAME` or `pod/NAME`)
    pod: String,
    /// The container to attach to
    #[arg(short, long)]
    container: Option<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
    /// Pass stdin to the container (berth's containers have none: refused)
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Stdin is a TTY
    #[arg(short = 't', long)]
    tty: bool,
}

pub async fn run(
    client: &Client,
    args: AttachArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
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
            "cannot attach a container in a completed pod; current phase is {phase}"
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
    let path = format!("{}/attach?{query}", pod_path(&namespace, &name));
    let (socket, protocol) =
        crate::websocket::connect(client, &path, &remote_command::PROTOCOLS).await?;
    let session = remote_command::Session {
        stdin: args.stdin,
        tty,
    };
    remote_command::run(socket, &protocol, session, out, err).await
}
