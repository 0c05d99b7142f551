//! `image pull`'s progress: one line per blob, redrawn in place on a
//! terminal, or one line per finished blob for logs.

use std::time::Duration;

use serde::Deserialize;

/// One progress report from the agent's pull stream.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct BlobProgress {
    pub layer: String,
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobState {
    Downloading,
    /// Its first report was complete: the runtime had it.
    AlreadyExists,
    Complete,
}

#[derive(Debug, Clone)]
struct Blob {
    digest: String,
    done: u64,
    total: u64,
    state: BlobState,
}

/// The blobs of one pull, in the order the agent first reported them.
#[derive(Debug, Default)]
pub struct PullDisplay {
    blobs: Vec<Blob>,
    /// Lines drawn on the terminal so far (to move back over them).
    drawn: usize,
}

impl PullDisplay {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a report; returns the blob's finished line when this report
    /// completed it (for the line-per-blob output).
    pub fn update(&mut self, report: &BlobProgress) -> Option<String> {
        let known = self.blobs.iter().position(|b| b.digest == report.layer);
        let index = known.unwrap_or_else(|| {
            self.blobs.push(Blob {
                digest: report.layer.clone(),
                done: 0,
                total: report.total,
                state: BlobState::Downloading,
            });
            self.blobs.len() - 1
        });
        let blob = &mut self.blobs[index];
        blob.done = report.done;
        blob.total = report.total;
        if report.done < report.total || blob.state != BlobState::Downloading {
            return None;
        }
        // A blob the runtime had is reported once, complete; a fetched one
        // starts at 0 (an empty blob is fetched and complete at once).
        blob.state = if known.is_none() && report.total > 0 {
            BlobState::AlreadyExists
        } else {
            BlobState::Complete
        };
        Some(finished_line(blob))
    }

    /// The whole block for a terminal: back over the lines drawn before,
    /// then every blob's line, each cleared first.
    pub fn redraw(&mut self) -> String {
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for blob in &self.blobs {
            out.push_str("\r\x1b[2K");
            out.push_str(&live_line(blob));
            out.push('\n');
        }
        self.drawn = self.blobs.len();
        out
    }
}

/// The first 12 hex digits, as docker shows layer IDs.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.get(..12).unwrap_or(hex)
}

/// `a1b2c3d4e5f6: Downloading  12.3MiB/45.6MiB  27%`.
fn live_line(blob: &Blob) -> String {
    let word = match blob.state {
        BlobState::Downloading => "Downloading",
        BlobState::AlreadyExists => "Already exists",
        BlobState::Complete => "Pull complete",
    };
    format!(
        "{}: {word:<14} {:>17} {:>4}",
        short_digest(&blob.digest),
        format!("{}/{}", binary_size(blob.done), binary_size(blob.total)),
        format!("{}%", percent(blob.done, blob.total)),
    )
}

/// `a1b2c3d4e5f6: Pull complete (45.6MiB)`.
fn finished_line(blob: &Blob) -> String {
    let word = match blob.state {
        BlobState::AlreadyExists => "Already exists",
        _ => "Pull complete",
    };
    format!(
        "{}: {word} ({})",
        short_digest(&blob.digest),
        binary_size(blob.total)
    )
}

/// Whole percent done, rounded down; an empty blob is done.
pub fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        return 100;
    }
    (u128::from(done.min(total)) * 100 / u128::from(total)) as u64
}

/// Binary units with one decimal: `512B`, `1.5KiB`, `12.3MiB`.
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A pull's wall time: `350ms`, `1.2s`, `1m5.0s`.
pub fn elapsed(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", duration.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let minutes = (secs / 60.0).floor();
        format!("{minutes}m{:.1}s", secs - minutes * 60.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0a1b2";
    const B: &str = "sha256:0000000000ff0000000000000000000000000000000000000000000000000000";

    fn report(layer: &str, done: u64, total: u64) -> BlobProgress {
        BlobProgress {
            layer: layer.into(),
            done,
            total,
        }
    }

    #[test]
    fn sizes_and_percentages() {
        assert_eq!(binary_size(0), "0B");
        assert_eq!(binary_size(1023), "1023B");
        assert_eq!(binary_size(1536), "1.5KiB");
        assert_eq!(binary_size(12_897_485), "12.3MiB");
        assert_eq!(binary_size(3 * 1024 * 1024 * 1024), "3.0GiB");
        assert_eq!(percent(0, 10), 0);
        assert_eq!(percent(9_999, 10_000), 99);
        assert_eq!(percent(10, 10), 100);
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
        assert_eq!(short_digest(A), "a1b2c3d4e5f6");
        assert_eq!(short_digest("abc"), "abc");
        assert_eq!(elapsed(Duration::from_millis(350)), "350ms");
        assert_eq!(elapsed(Duration::from_millis(1_240)), "1.2s");
        assert_eq!(elapsed(Duration::from_millis(65_000)), "1m5.0s");
    }

    #[test]
    fn fetched_blobs_finish_once_and_present_ones_already_exist() {
        let mut display = PullDisplay::new();
        let mib = 1024 * 1024;
        assert_eq!(display.update(&report(A, 0, 3 * mib)), None);
        assert_eq!(display.update(&report(A, mib, 3 * mib)), None);
        assert_eq!(
            display.update(&report(B, 700, 700)).as_deref(),
            Some("0000000000ff: Already exists (700B)")
        );
        assert_eq!(
            display.update(&report(A, 3 * mib, 3 * mib)).as_deref(),
            Some("a1b2c3d4e5f6: Pull complete (3.0MiB)")
        );
        // A repeated final report prints nothing more.
        assert_eq!(display.update(&report(A, 3 * mib, 3 * mib)), None);
        // An empty blob is fetched, complete at once.
        let mut empty = PullDisplay::new();
        assert_eq!(
            empty.update(&report(B, 0, 0)).as_deref(),
            Some("0000000000ff: Pull complete (0B)")
        );
    }

    #[test]
    fn the_terminal_block_is_redrawn_in_place() {
        let mut display = PullDisplay::new();
        display.update(&report(A, 0, 47_815_065));
        assert_eq!(
            display.redraw(),
            "\r\x1b[2Ka1b2c3d4e5f6: Downloading           0B/45.6MiB   0%\n"
        );
        display.update(&report(A, 12_897_485, 47_815_065));
        display.update(&report(B, 2048, 2048));
        assert_eq!(
            display.redraw(),
            "\x1b[1A\
             \r\x1b[2Ka1b2c3d4e5f6: Downloading      12.3MiB/45.6MiB  26%\n\
             \r\x1b[2K0000000000ff: Already exists     2.0KiB/2.0KiB 100%\n"
        );
        display.update(&report(A, 47_815_065, 47_815_065));
        let block = display.redraw();
        assert!(block.starts_with("\x1b[2A"), "{block:?}");
        assert!(
            block.contains("a1b2c3d4e5f6: Pull complete    45.6MiB/45.6MiB 100%\n"),
            "{block:?}"
        );
    }
}
