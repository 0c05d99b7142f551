//! `attach POD [-c C]`: the container's output as it comes, until it stops,
//! over the WebSocket attach stream (as kubectl attach).

use std::io::Write;

use crate::client::Client;
use crate::exec::{Stream, StreamRequest};
use crate::VerbResult;

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
    let stream = Stream::open(
        client,
        StreamRequest {
            pod: &args.pod,
            namespace: args.namespace.as_deref(),
            container: args.container,
            stdin: args.stdin,
            tty: args.tty,
            refusal: "cannot attach a container in a completed pod",
        },
        err,
    )
    .await?;
    stream.run(client, "attach", out, err).await
}
