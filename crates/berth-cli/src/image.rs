//! `image import FILE` and `image ls`: the runtime's images.

use std::io::Write;
use std::path::{Path, PathBuf};

use http::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{Client, ClientError};
use crate::error::CliError;
use crate::tabwriter::TabWriter;
use crate::VerbResult;

#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
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

pub async fn run(client: &Client, args: ImageArgs, out: &mut (dyn Write + Send)) -> VerbResult {
    match args.command {
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
                .json(Method::POST, "/apis/berth.io/v1/images/import", Some(&body))
                .await?;
            for image in images(answer)? {
                writeln!(out, "imported {} ({})", image.reference, image.digest)?;
            }
        }
        ImageCommand::Ls => {
            let list = images(client.get("/apis/berth.io/v1/images").await?)?;
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
