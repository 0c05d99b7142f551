//! `image pull REF`, `image rm REF...`, `image import FILE` and `image ls`:
//! the runtime's images, as `crictl` handles them.

use std::io::Write;
use std::path::{Path, PathBuf};

use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{encode_query, ApiStatus, BodyStream, Client, ClientError};
use crate::error::CliError;
use crate::pull_progress::{elapsed, BlobProgress, PullDisplay};
use crate::tabwriter::TabWriter;
use crate::VerbResult;

const IMAGES: &str = "/apis/berth.io/v1/images";

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// Pull an image from its registry, showing per-layer progress
    ///
    /// The reference is normalized as docker does (`busybox` is
    /// `docker.io/library/busybox:latest`); a tag is always resolved again
    /// and layers already present are not fetched. Registries, mirrors and
    /// credentials come from the agent's `--registry-config`.
    Pull {
        /// The image, e.g. `busybox:1.36` or `registry:5000/team/app@sha256:...`
        reference: String,
    },
    /// Remove one or more images
    ///
    /// An image a running or created container uses is not removed.
    #[command(alias = "rmi", alias = "remove")]
    Rm {
        /// The images to remove
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Import an image archive (OCI layout or docker-archive tar)
    Import {
        /// The archive; the agent reads it by its absolute path
        file: PathBuf,
    },
    /// List the images
    #[command(alias = "list")]
    Ls,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Image {
    pub reference: String,
    pub digest: String,
    pub size: u64,
}

/// The images of an answer: `{"items": [...]}` or a bare list.
fn images(answer: Value) -> Result<Vec<Image>, ClientError> {
    let items = match answer {
        Value::Object(mut map) => map
            .remove("items")
            .or_else(|| map.remove("images"))
            .unwrap_or(Value::Array(Vec::new())),
        other => other,
    };
    Ok(serde_json::from_value(items)?)
}

fn absolute(file: &Path) -> Result<PathBuf, CliError> {
    if file.is_absolute() {
        return Ok(file.to_path_buf());
    }
    Ok(std::env::current_dir()?.join(file))
}

/// One line of the agent's pull stream.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PullLine {
    progress: Option<BlobProgress>,
    image: Option<Image>,
    up_to_date: bool,
    error: Option<ApiStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Deleted {
    deleted: String,
}

/// The line that ends a successful pull.
pub fn pulled_line(image: &Image, up_to_date: bool, took: std::time::Duration) -> String {
    if up_to_date {
        format!("Image is up to date for {}", image.reference)
    } else {
        format!(
            "Pulled {} ({}), {} bytes in {}",
            image.reference,
            image.digest,
            image.size,
            elapsed(took)
        )
    }
}

/// Pulls `reference`, drawing the blobs' progress in place on a terminal,
/// else one line per finished blob.
async fn pull(
    client: &Client,
    reference: &str,
    out: &mut (dyn Write + Send),
    terminal: bool,
) -> VerbResult {
    let started = tokio::time::Instant::now();
    let body = json!({"reference": reference});
    let response = client
        .send(Method::POST, &format!("{IMAGES}/pull"), Some(&body))
        .await?;
    let mut stream = BodyStream::new(response);
    let mut display = PullDisplay::new();
    while let Some(line) = stream.line().await? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: PullLine = serde_json::from_slice(&line).map_err(ClientError::Decode)?;
        if let Some(progress) = line.progress {
            let finished = display.update(&progress);
            if terminal {
                out.write_all(display.redraw().as_bytes())?;
                out.flush()?;
            } else if let Some(finished) = finished {
                writeln!(out, "{finished}")?;
            }
        } else if let Some(status) = line.error {
            return Err(CliError::usage(status.message));
        } else if let Some(image) = line.image {
            writeln!(
                out,
                "{}",
                pulled_line(&image, line.up_to_date, started.elapsed())
            )?;
            return Ok(0);
        }
    }
    Err(CliError::usage(format!(
        "the agent ended the pull of {reference} without a result"
    )))
}

/// Removes each image, going on past failures; exit 1 if any failed.
async fn remove(
    client: &Client,
    references: &[String],
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    let mut code = 0;
    for reference in references {
        let path = format!("{IMAGES}/{}", encode_query(reference));
        match client.json(Method::DELETE, &path, None).await {
            Ok(answer) => {
                let deleted: Deleted =
                    serde_json::from_value(answer).map_err(ClientError::Decode)?;
                writeln!(out, "Deleted: {}", deleted.deleted)?;
            }
            Err(ClientError::Api(status)) => {
                out.flush()?;
                let failure = CliError::Client(ClientError::Api(status));
                err.write_all(crate::error::render(&failure).as_bytes())?;
                code = 1;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(code)
}

pub async fn run(
    client: &Client,
    args: ImageArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    terminal: bool,
) -> VerbResult {
    match args.command {
        ImageCommand::Pull { reference } => return pull(client, &reference, out, terminal).await,
        ImageCommand::Rm { references } => return remove(client, &references, out, err).await,
        ImageCommand::Import { file } => {
            let path = absolute(&file)?;
            if !path.exists() {
                return Err(CliError::usage(format!(
                    "the path \"{}\" does not exist",
                    file.display()
                )));
            }
            let body = json!({"path": path});
            let answer = client
                .json(Method::POST, &format!("{IMAGES}/import"), Some(&body))
                .await?;
            for image in images(answer)? {
                writeln!(out, "imported {} ({})", image.reference, image.digest)?;
            }
        }
        ImageCommand::Ls => {
            let list = images(client.get(IMAGES).await?)?;
            out.write_all(image_table(&list).as_bytes())?;
        }
    }
    Ok(0)
}

/// `REFERENCE DIGEST SIZE`, laid out as kubectl's tables.
pub fn image_table(images: &[Image]) -> String {
    let mut sorted = images.to_vec();
    sorted.sort_by(|a, b| a.reference.cmp(&b.reference));
    let mut w = TabWriter::for_table();
    w.write_str("REFERENCE\tDIGEST\tSIZE\n");
    for image in &sorted {
        w.write_str(&format!(
            "{}\t{}\t{}\n",
            image.reference,
            image.digest,
            human_size(image.size)
        ));
    }
    w.flush()
}

/// go-units `HumanSize`-style decimal size with three significant digits,
/// as `crictl images` and `docker images` print it.
pub fn human_size(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = size as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(4_261_234), "4.26MB");
        assert_eq!(human_size(1_500_000_000), "1.5GB");
        assert_eq!(human_size(123_456_789), "123MB");
    }

    #[test]
    fn pull_results_read_like_docker() {
        let image = Image {
            reference: "127.0.0.1:5000/berth/busybox:1".into(),
            digest: "sha256:abc".into(),
            size: 2_200_000,
        };
        let took = std::time::Duration::from_millis(1_240);
        assert_eq!(
            pulled_line(&image, false, took),
            "Pulled 127.0.0.1:5000/berth/busybox:1 (sha256:abc), 2200000 bytes in 1.2s"
        );
        assert_eq!(
            pulled_line(&image, true, took),
            "Image is up to date for 127.0.0.1:5000/berth/busybox:1"
        );
        let line: PullLine = serde_json::from_value(json!({
            "image": {"reference": "r/a:1", "digest": "sha256:abc", "size": 1},
            "upToDate": true
        }))
        .unwrap();
        assert!(line.up_to_date && line.image.is_some() && line.progress.is_none());
        let line: PullLine = serde_json::from_value(json!({
            "error": {"kind": "Status", "code": 500, "reason": "InternalError", "message": "manifest unknown"}
        }))
        .unwrap();
        assert_eq!(line.error.unwrap().message, "manifest unknown");
    }

    #[test]
    fn image_table_is_sorted_and_padded() {
        let list = images(json!({"items": [
            {"reference": "docker.io/library/busybox:latest", "digest": "sha256:abc", "size": 2_200_000},
            {"reference": "docker.io/library/alpine:3", "digest": "sha256:def", "size": 3_400_000}
        ]}))
        .unwrap();
        assert_eq!(
            image_table(&list),
            "REFERENCE                          DIGEST       SIZE\n\
             docker.io/library/alpine:3         sha256:def   3.4MB\n\
             docker.io/library/busybox:latest   sha256:abc   2.2MB\n"
        );
    }
}
