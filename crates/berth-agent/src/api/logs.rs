//! `GET .../pods/{name}/log`: the container's output as text, optionally
//! followed until the container stops.

use std::path::PathBuf;
use std::time::Duration;

use super::body::{send_chunk, streaming, ChunkSender};
use super::routes::{Context, Query, Reply};
use super::status::Failure;
use crate::logs::{FileWatch, LogEntry, LogReader};
use crate::service::{ApiError, LogOptions, PodService};
use berth_api::validation::{validate_log_options, PodLogOptions};

/// How often a follower without new output asks whether the container still runs.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

pub(crate) async fn pod_log<S: PodService>(
    cx: &Context<S>,
    namespace: &str,
    name: &str,
    query: &Query,
) -> Reply {
    let tail_lines = query.int("tailLines")?;
    check_options(name, query, tail_lines)?;
    let options = LogOptions {
        container: query
            .get("container")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        previous: query.flag("previous")?,
        follow: query.flag("follow")?,
        tail_lines: tail_lines.map(|n| n as u64),
    };
    let timestamps = query.flag("timestamps")?;
    let target = cx
        .service
        .log_target(namespace, name, &options)
        .map_err(|e| Failure::from(e).for_pod(name))?;
    let path = target.path.clone();
    let reader = LogReader::open(&path)
        .map_err(|e| Failure::internal(format!("cannot open log file {}: {e}", path.display())))?;

    let (response, tx) = streaming("text/plain");
    let follower = Follower {
        service: cx.service.clone(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        options,
        path,
        timestamps,
    };
    let follow = follower.options.follow && target.running;
    let shutdown = cx.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = follower.run(reader, follow, tx) => {}
        }
    });
    Ok(response)
}

/// The API server's checks of a log request's options (berth serves
/// `tailLines`; the others are checked as the API server checks them).
fn check_options(name: &str, query: &Query, tail_lines: Option<i64>) -> Result<(), Failure> {
    if let Some(since) = query.get("sinceTime") {
        since.parse::<jiff::Timestamp>().map_err(|e| {
            Failure::bad_request(format!("invalid value {since:?} for sinceTime: {e}"))
        })?;
    }
    let options = PodLogOptions {
        tail_lines,
        limit_bytes: query.int("limitBytes")?,
        since_seconds: query.int("sinceSeconds")?,
        since_time: query.get("sinceTime").is_some(),
    };
    validate_log_options(name, &options).map_err(|e| ApiError::Invalid(e.to_string()).into())
}

struct Follower<S> {
    service: std::sync::Arc<S>,
    namespace: String,
    name: String,
    options: LogOptions,
    path: PathBuf,
    timestamps: bool,
}

impl<S: PodService> Follower<S> {
    async fn run(self, reader: LogReader, follow: bool, tx: ChunkSender) {
        let keep_last = self
            .options
            .tail_lines
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        let Some((mut reader, entries)) = read(reader, keep_last).await else {
            return;
        };
        if !self.send(&tx, &entries).await {
            return;
        }
        if follow {
            let mut watch = FileWatch::new(&self.path);
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    () = watch.changed(FOLLOW_POLL) => {}
                }
                // Ask before reading: output written before the exit (or
                // the rotation) is then certain to be read below.
                let still_running = self.still_running();
                let rotated = reader.rotated();
                let Some((next, entries)) = read(reader, None).await else {
                    return;
                };
                reader = next;
                if !self.send(&tx, &entries).await {
                    return;
                }
                if rotated {
                    // The old file is read to its end: go on in the new one.
                    if let Err(e) = reader.reopen() {
                        tracing::debug!(path = %self.path.display(), "reopen rotated log: {e}");
                        break;
                    }
                    watch = FileWatch::new(&self.path);
                    continue;
                }
                if !still_running && entries.is_empty() {
                    break;
                }
            }
        }
        let rest = reader.finish();
        self.send(&tx, &rest).await;
    }

    /// Whether the container instance writing this file still runs.
    fn still_running(&self) -> bool {
        match self
            .service
            .log_target(&self.namespace, &self.name, &self.options)
        {
            Ok(target) => target.running && target.path == self.path,
            Err(_) => false,
        }
    }

    async fn send(&self, tx: &ChunkSender, entries: &[LogEntry]) -> bool {
        if entries.is_empty() {
            return true;
        }
        let mut out = Vec::new();
        for entry in entries {
            entry.render(self.timestamps, &mut out);
        }
        send_chunk(tx, out).await
    }
}

/// Reads what was appended, off the async threads.
async fn read(
    mut reader: LogReader,
    keep_last: Option<usize>,
) -> Option<(LogReader, Vec<LogEntry>)> {
    let result = tokio::task::spawn_blocking(move || {
        let entries = reader.read_new(keep_last);
        (reader, entries)
    })
    .await;
    match result {
        Ok((reader, Ok(entries))) => Some((reader, entries)),
        Ok((reader, Err(error))) => {
            tracing::debug!(path = %reader.path().display(), %error, "reading log file failed");
            None
        }
        Err(_) => None,
    }
}
