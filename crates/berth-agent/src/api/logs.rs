//! `GET .../pods/{name}/log`: the container's output as text, optionally
//! followed until the container stops.
//!
//! The file is read a chunk at a time and each chunk is sent before the next
//! is read: a slow client holds the reading back (the body channel and
//! hyper's write buffer are bounded), so memory stays the same whatever the
//! size of the log or the speed of the reader.

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;

use super::body::{send_chunk, streaming, ChunkSender};
use super::routes::{Context, Query, Reply};
use super::status::Failure;
use crate::logs::{FileWatch, LogReader, Progress, RenderOptions};
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
    let request = LogRequest::parse(query, name)?;
    let options = LogOptions {
        container: query
            .get("container")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        previous: query.flag("previous")?,
        follow: query.flag("follow")?,
        tail_lines: request.tail_lines,
    };
    let target = cx
        .service
        .log_target(namespace, name, &options)
        .map_err(|e| Failure::from(e).for_pod(name))?;
    let path = target.path.clone();
    let follow = options.follow && target.running;
    let opened = {
        let (path, render, tail) = (path.clone(), request.render, request.tail_lines);
        tokio::task::spawn_blocking(move || LogReader::open(&path, render, tail, follow)).await
    };
    let reader = opened
        .map_err(|e| Failure::internal(format!("reading the log: {e}")))?
        .map_err(|e| Failure::internal(format!("cannot open log file {}: {e}", path.display())))?;

    let (response, tx) = streaming("text/plain");
    let follower = Follower {
        service: cx.service.clone(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        options,
        path,
    };
    let shutdown = cx.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = follower.run(reader, follow, tx) => {}
        }
    });
    Ok(response)
}

/// The query's `PodLogOptions` that shape the output, checked as the API
/// server's `ValidatePodLogOptions` does.
struct LogRequest {
    tail_lines: Option<u64>,
    render: RenderOptions,
}

impl LogRequest {
    fn parse(query: &Query, pod: &str) -> Result<LogRequest, Failure> {
        let tail_lines = query.int("tailLines")?;
        let limit_bytes = query.int("limitBytes")?;
        let since_seconds = query.int("sinceSeconds")?;
        let since_time = query
            .get("sinceTime")
            .map(|text| {
                text.parse::<Timestamp>().map_err(|e| {
                    Failure::bad_request(format!("invalid value {text:?} for sinceTime: {e}"))
                })
            })
            .transpose()?;
        let options = PodLogOptions {
            tail_lines,
            limit_bytes,
            since_seconds,
            since_time: since_time.is_some(),
        };
        validate_log_options(pod, &options)
            .map_err(|e| Failure::from(ApiError::Invalid(e.to_string())))?;
        let since = match (since_seconds, since_time) {
            (Some(seconds), _) => Some(
                Timestamp::now()
                    .checked_sub(jiff::SignedDuration::from_secs(seconds))
                    .unwrap_or(Timestamp::MIN),
            ),
            (None, time) => time,
        };
        Ok(LogRequest {
            tail_lines: tail_lines.map(|n| n.unsigned_abs()),
            render: RenderOptions {
                timestamps: query.flag("timestamps")?,
                since,
                limit_bytes: limit_bytes.map(|n| n.unsigned_abs()),
            },
        })
    }
}

struct Follower<S> {
    service: std::sync::Arc<S>,
    namespace: String,
    name: String,
    options: LogOptions,
    path: PathBuf,
}

impl<S: PodService> Follower<S> {
    async fn run(self, reader: LogReader, follow: bool, tx: ChunkSender) {
        let Some((mut reader, _)) = send_available(reader, &tx).await else {
            return;
        };
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
                let Some((next, new)) = send_available(reader, &tx).await else {
                    return;
                };
                reader = next;
                if rotated {
                    // The old file is read to its end: go on in the new one.
                    if let Err(e) = reader.reopen() {
                        tracing::debug!(path = %self.path.display(), "reopen rotated log: {e}");
                        break;
                    }
                    watch = FileWatch::new(&self.path);
                    continue;
                }
                if !still_running && !new {
                    break;
                }
            }
        }
        let mut rest = Vec::new();
        reader.finish(&mut rest);
        if !rest.is_empty() {
            send_chunk(&tx, rest).await;
        }
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
}

/// Sends what the file holds past where the reader stopped, a chunk at a
/// time, each read once the previous one is taken; with whether anything
/// was read. `None` once nothing more is wanted: the client left,
/// `limitBytes` is reached, or the file cannot be read.
async fn send_available(mut reader: LogReader, tx: &ChunkSender) -> Option<(LogReader, bool)> {
    let mut read_any = false;
    loop {
        let read = tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::new();
            let progress = reader.read_chunk(&mut chunk);
            (reader, progress, chunk)
        })
        .await;
        let (next, progress, chunk) = read.ok()?;
        reader = next;
        let progress = match progress {
            Ok(progress) => progress,
            Err(error) => {
                tracing::debug!(path = %reader.path().display(), %error, "reading log file failed");
                return None;
            }
        };
        if !chunk.is_empty() && !send_chunk(tx, chunk).await {
            return None;
        }
        match progress {
            Progress::Read(_) => read_any = true,
            Progress::End => return Some((reader, read_any)),
            Progress::Full => return None,
        }
    }
}
