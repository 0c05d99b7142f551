//! `attach POD [-c C] [-i] [-t]`: the container's output as it comes,
//! until it stops, over the WebSocket attach stream, as kubectl attach:
//! `-i` writes into the container's stdin, and a container with a
//! terminal is attached on a raw local one that resizes it.

use std::io::Write;

use crate::client::Client;
use crate::exec::{Stream, StreamArgs};
use crate::target::single_pod;
use crate::VerbResult;

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    #[command(flatten)]
    target: StreamArgs,
    /// Only print output from the remote session
    #[arg(short = 'q', long)]
    quiet: bool,
}

pub async fn run(
    client: &Client,
    args: AttachArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    let mut quiet_err = std::io::sink();
    let stream = Stream::open(
        client,
        args.target
            .request("cannot attach a container in a completed pod", true),
        if args.quiet { &mut quiet_err } else { err },
    )
    .await?;
    if !args.quiet {
        writeln!(err, "All commands and output from this session will be recorded in container logs, including credentials and sensitive information passed through the command prompt.")?;
        writeln!(
            err,
            "If you don't see a command prompt, try pressing enter."
        )?;
    }
    let resume = (args.target.stdin && stream.tty && !args.quiet).then(|| {
        format!(
            "Session ended, resume using 'berth attach {} -c {} -n {} -i -t' command",
            single_pod(&args.target.pod).unwrap_or_default(),
            stream.container,
            stream.namespace
        )
    });
    let code = stream.run(client, "attach", out, err).await?;
    if let Some(resume) = resume {
        writeln!(out, "{resume}")?;
    }
    Ok(code)
}
