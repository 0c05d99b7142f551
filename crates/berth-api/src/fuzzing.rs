//! Entry points of the fuzz targets in `fuzz/` (cargo-fuzz), also run over
//! their seed corpus by the workspace's tests. Each takes arbitrary bytes,
//! must not panic on any of them, and panics when a property that berth
//! relies on does not hold.

use jiff::{SignedDuration, Timestamp};

use crate::cri_log::{self, LogRenderer, RenderOptions, MAX_FILE_LINE};
use crate::{defaults, manifest, validation, Pod};

/// Manifest decoding and validation, as the API, the manifest directory and
/// `berth apply` run them: bound, parse, default, validate. A pod that
/// validates keeps its meaning when berth writes it out and reads it back
/// (as JSON in the API, as YAML in `berth get -o yaml`), and is a valid
/// update of itself.
pub fn manifest(data: &[u8]) {
    // Every caller refuses a body or a file that is not UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if manifest::check_bounds(text).is_err() {
        return;
    }
    let Ok(pods) = manifest::parse_pods(text) else {
        return;
    };
    for mut pod in pods {
        defaults::apply_defaults(&mut pod);
        let defaulted = pod.clone();
        defaults::apply_defaults(&mut pod);
        assert_eq!(pod, defaulted, "defaulting twice changed the pod");
        if validation::validate_pod(&pod).is_err() {
            continue;
        }
        if let Err(error) = validation::validate_update(&pod, &pod) {
            panic!("a valid pod is not a valid update of itself: {error}");
        }
        let json = serde_json::to_string(&pod).expect("a pod encodes as JSON");
        assert_eq!(read_back(&json), pod, "JSON round trip of:\n{json}");
        let yaml = serde_yaml_ng::to_string(&pod).expect("a pod encodes as YAML");
        assert_eq!(read_back(&yaml), pod, "YAML round trip of:\n{yaml}");
    }
}

fn read_back(text: &str) -> Pod {
    match manifest::parse_pods(text) {
        Ok(mut pods) if pods.len() == 1 => pods.remove(0),
        other => panic!("berth's own output reads back as {other:?}:\n{text}"),
    }
}

/// The time `since` options count from in [`cri_log`]'s input: its seeds'
/// lines are written around it.
const SINCE_BASE: &str = "2024-01-02T03:04:05Z";

/// CRI log parsing and rendering. The input is an 8-byte header (options)
/// followed by the log file's bytes:
///
/// | byte | meaning |
/// | --- | --- |
/// | 0 | bit 0 `timestamps`, bit 1 `since`, bit 2 `limitBytes`, bits 3-5: the file is the rest repeated 2^n times (to span the tail reader's blocks) |
/// | 1-2 | `tailLines` (little endian) |
/// | 3-4 | `limitBytes` |
/// | 5 | `since`: seconds after (signed) 2024-01-02T03:04:05Z |
/// | 6-7 | seed of the chunk sizes the file is fed in |
///
/// Properties: a parsed line is a cut of the file line; the output does not
/// depend on how the file is cut into chunks; `limitBytes` cuts the same
/// output; `tailLines` starts at a line start, never later for more lines,
/// and where counting whole lines back from the end says.
pub fn cri_log(data: &[u8]) {
    let mut header = [0u8; 8];
    let n = data.len().min(8);
    header[..n].copy_from_slice(&data[..n]);
    let file = data[n..].repeat(1 << ((header[0] >> 3) & 7));
    let lines = u64::from(u16::from_le_bytes([header[1], header[2]]));
    let since = SINCE_BASE.parse::<Timestamp>().expect("a timestamp")
        + SignedDuration::from_secs(i64::from(header[5] as i8));
    let options = RenderOptions {
        timestamps: header[0] & 1 != 0,
        since: (header[0] & 2 != 0).then_some(since),
        limit_bytes: None,
    };
    let chunk_seed = u64::from(u16::from_le_bytes([header[6], header[7]]));

    for line in file.split(|&b| b == b'\n') {
        if let Ok(parsed) = cri_log::parse_cri_line(line) {
            assert!(line.starts_with(parsed.timestamp.as_bytes()));
            assert!(line.ends_with(parsed.message));
        }
    }

    let whole = render(&options, &file, None);
    if file
        .split(|&b| b == b'\n')
        .all(|line| line.len() <= MAX_FILE_LINE)
    {
        assert_eq!(
            render(&options, &file, Some(chunk_seed)),
            whole,
            "the output depends on the chunks"
        );
    }
    if header[0] & 4 != 0 {
        let limit = u64::from(u16::from_le_bytes([header[3], header[4]]));
        let limited = RenderOptions {
            limit_bytes: Some(limit),
            ..options.clone()
        };
        let cut = render(&limited, &file, Some(chunk_seed));
        let want = usize::try_from(limit).map_or(whole.len(), |l| l.min(whole.len()));
        assert_eq!(cut, whole[..want], "limitBytes {limit}");
    }

    check_tail(&file, lines, chunk_seed);
}

/// Renders `file` whole, or in chunks of pseudo-random sizes.
fn render(options: &RenderOptions, file: &[u8], chunks: Option<u64>) -> Vec<u8> {
    let mut renderer = LogRenderer::new(options.clone());
    let mut out = Vec::new();
    match chunks {
        None => renderer.feed(file, &mut out),
        Some(seed) => {
            let mut rest = file;
            let mut state = seed | 1;
            while !rest.is_empty() && !renderer.is_full() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let size = 1 + (state % 300) as usize;
                let (chunk, next) = rest.split_at(size.min(rest.len()));
                renderer.feed(chunk, &mut out);
                rest = next;
            }
        }
    }
    renderer.finish(&mut out);
    out
}

fn check_tail(file: &[u8], lines: u64, scan_seed: u64) {
    let size = file.len() as u64;
    let tail = |lines: u64, scan_limit: u64| {
        let mut reader = std::io::Cursor::new(file);
        let start = cri_log::tail_start(&mut reader, lines, scan_limit).expect("a read");
        let at_line_start = start == 0 || start == size || file[start as usize - 1] == b'\n';
        assert!(at_line_start, "tail {lines} starts mid-line, at {start}");
        assert!(
            start >= size.saturating_sub(scan_limit),
            "past the scan limit"
        );
        start
    };
    let start = tail(lines, u64::MAX);
    assert!(
        tail(lines + 1, u64::MAX) <= start,
        "tail {} starts after tail {lines}",
        lines + 1
    );
    tail(lines, scan_seed * 7);
    if let Some(want) = tail_by_lines(file, lines) {
        assert_eq!(start, want, "tail {lines}");
    }
}

/// Where the last `lines` lines start, counted forwards over the whole file
/// (`None` where the tail reader cannot see enough of a line to count it).
fn tail_by_lines(file: &[u8], lines: u64) -> Option<u64> {
    // The tail reader reads this much of a line that starts in the next
    // block back: as much as the tag needs, in CRI files.
    const VISIBLE: usize = 128;
    if lines == 0 {
        return Some(file.len() as u64);
    }
    let mut whole = Vec::new();
    let mut start = 0;
    for (i, &b) in file.iter().enumerate() {
        if b == b'\n' {
            whole.push(&file[start..i]);
            start = i + 1;
        }
    }
    let visible = |line: &[u8]| {
        line.len() < VISIBLE || line[..VISIBLE].iter().filter(|&&b| b == b' ').count() >= 3
    };
    if !whole.iter().all(|line| visible(line)) {
        return None;
    }
    // `after`: where the line after the one being counted starts.
    let mut after = start;
    let mut counted = 0;
    for line in whole.iter().rev() {
        match cri_log::parse_cri_line(line).map(|l| l.partial) {
            Ok(false) => counted += 1,
            // Fragments with no `F` after them are the last line.
            Ok(true) if counted == 0 => counted += 1,
            _ => {}
        }
        if counted > lines {
            return Some(after as u64);
        }
        after -= line.len() + 1;
    }
    Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_oracle_agrees_with_the_unit_tests() {
        let ts = "2024-01-02T03:04:05Z";
        let file = format!(
            "{ts} stdout F one\n{ts} stdout P tw\n{ts} stdout F o\n{ts} stdout F three\n{ts} stdout F half"
        );
        let at = |text: &str| Some(file.find(text).unwrap() as u64 - ts.len() as u64 - 1);
        assert_eq!(tail_by_lines(file.as_bytes(), 1), at("stdout F three"));
        assert_eq!(tail_by_lines(file.as_bytes(), 2), at("stdout P tw"));
        assert_eq!(tail_by_lines(file.as_bytes(), 3), Some(0));
        assert_eq!(tail_by_lines(file.as_bytes(), 0), Some(file.len() as u64));
        assert_eq!(tail_by_lines(b"no newline", 3), Some(0));
    }
}
