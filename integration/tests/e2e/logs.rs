//! Container logs: CRI-format files in the kubelet's layout, read by `logs`.

use std::time::Duration;

use berth_integration::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[tokio::test]
async fn container_output_lands_in_cri_log_files() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    let script = "echo to-stdout; echo to-stderr >&2; echo second-line";
    agent
        .apply_yaml(&manifest(&pod(
            "talker",
            "Never",
            vec![sh_container("main", script)],
        )))
        .await;
    let done = wait_terminal(&agent, "talker").await;
    assert_eq!(phase(&done), "Succeeded", "{done:#}");

    let path = agent
        .log_dir()
        .join(format!("default_talker_{}", uid(&done)))
        .join("main")
        .join("0.log");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut entries = Vec::new();
    for line in text.lines() {
        // `<RFC 3339 time> <stdout|stderr> <F|P> <message>`
        let mut parts = line.splitn(4, ' ');
        let (time, stream, tag, message) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        assert!(
            time.contains('T') && time.len() >= 20,
            "bad time in {line:?}"
        );
        assert!(
            matches!(stream, "stdout" | "stderr"),
            "bad stream in {line:?}"
        );
        assert!(matches!(tag, "F" | "P"), "bad tag in {line:?}");
        entries.push((stream.to_owned(), message.to_owned()));
    }
    let stdout: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == "stdout")
        .map(|e| e.1.as_str())
        .collect();
    let stderr: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == "stderr")
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(stdout, ["to-stdout", "second-line"], "{text}");
    assert_eq!(stderr, ["to-stderr"], "{text}");

    // `logs` shows both streams; --tail limits lines.
    let all = logs(&agent, "talker", "main").await;
    for expected in ["to-stdout", "to-stderr", "second-line"] {
        assert!(all.contains(expected), "{all}");
    }
    let tail = agent.cli_ok(&["logs", "talker", "--tail", "1"]).await;
    assert_eq!(tail.lines().count(), 1, "{tail}");

    // kubectl's other options: a byte limit, times, and a start time.
    let limited = agent
        .cli_ok(&["logs", "talker", "--limit-bytes", "4"])
        .await;
    assert_eq!(limited, all[..4]);
    let stamped = agent
        .cli_ok(&["logs", "talker", "--timestamps", "--tail", "1"])
        .await;
    let (time, line) = stamped.trim_end().split_once(' ').unwrap_or_default();
    assert_eq!(format!("{line}\n"), tail, "{stamped}");
    // RFC 3339 in UTC with nine fractional digits.
    assert!(
        time.parse::<jiff::Timestamp>().is_ok() && time.len() == 30,
        "{stamped}"
    );
    assert_eq!(
        agent.cli_ok(&["logs", "talker", "--since", "1h"]).await,
        all
    );
    let future = ["logs", "talker", "--since-time", "2999-01-01T00:00:00Z"];
    assert_eq!(agent.cli_ok(&future).await, "");
}

/// The numbers of the `line N` entries of a CRI log text, in order.
fn line_numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| line.rsplit_once("line ")?.1.trim().parse().ok())
        .collect()
}

fn gunzip(path: &std::path::Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open"))
        .read_to_string(&mut text)
        .expect("gunzip");
    text
}

/// A container's log files after a rotation: the live one, the newest
/// rotated one as written, and older ones compressed.
#[derive(Debug, PartialEq)]
struct Rotated {
    compressed: Vec<String>,
    plain: Vec<String>,
    live: bool,
}

fn rotated_files(dir: &std::path::Path) -> Rotated {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Rotated {
        compressed: names
            .iter()
            .filter(|n| n.ends_with(".gz"))
            .cloned()
            .collect(),
        plain: names
            .iter()
            .filter(|n| n.starts_with("0.log.") && !n.ends_with(".gz"))
            .cloned()
            .collect(),
        live: names.iter().any(|n| n == "0.log"),
    }
}

#[tokio::test]
async fn a_growing_log_is_rotated_compressed_trimmed_and_followed() {
    let Some((_containerd, agent)) = setup_with(&[
        "--container-log-max-size",
        "4Ki",
        "--container-log-max-files",
        "3",
        "--container-log-monitor-interval-seconds",
        "3",
    ])
    .await
    else {
        return;
    };
    // About 100 numbered lines a second: far over 4 KiB between checks.
    let script =
        "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo \"line $i\"; sleep 0.01; done";
    agent
        .apply_yaml(&manifest(&pod(
            "chatty",
            "Never",
            vec![sh_container("main", script)],
        )))
        .await;
    let running = wait_running(&agent, "chatty").await;
    let dir = agent
        .log_dir()
        .join(format!("default_chatty_{}", uid(&running)))
        .join("main");
    let follower = tokio::process::Command::new(berth_testkit::agent::berth_bin())
        .arg("--socket")
        .arg(agent.socket())
        .args(["logs", "-f", "chatty"])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn berth logs -f");

    // Two compressed generations one after the other: the first is deleted
    // when the second comes, as max files 3 keeps live + 1 + 1 gzipped.
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut first_gz = None;
    let files = loop {
        let files = rotated_files(&dir);
        if files.live && files.plain.len() == 1 && files.compressed.len() == 1 {
            match &first_gz {
                None => first_gz = Some(files.compressed[0].clone()),
                Some(first) if *first != files.compressed[0] => {
                    // The three files, read without a rotation in between.
                    let texts = [
                        gunzip(&dir.join(&files.compressed[0])),
                        std::fs::read_to_string(dir.join(&files.plain[0])).unwrap_or_default(),
                        std::fs::read_to_string(dir.join("0.log")).unwrap_or_default(),
                    ];
                    if rotated_files(&dir) == files {
                        break (files, texts);
                    }
                }
                Some(_) => {}
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no second compressed generation: {files:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (files, texts) = files;
    assert!(
        !dir.join(first_gz.as_ref().unwrap()).exists(),
        "{first_gz:?} kept: {files:?}"
    );
    // The stamp format: 0.log.YYYYMMDD-hhmmss.
    let stamp = files.plain[0].trim_start_matches("0.log.");
    assert!(
        stamp.len() == 15 && stamp.as_bytes()[8] == b'-',
        "{files:?}"
    );
    // Each line is in exactly one file, in order.
    let numbers: Vec<Vec<u64>> = texts.iter().map(|t| line_numbers(t)).collect();
    for pair in numbers.windows(2) {
        let (older, newer) = (&pair[0], &pair[1]);
        if let (Some(last), Some(first)) = (older.last(), newer.first()) {
            assert_eq!(last + 1, *first, "a gap between files: {files:?}");
        }
    }
    let live_first = numbers[2].first().copied();

    // The follower went on across the rotations, missing nothing; it ends
    // when the container does.
    agent.cli_ok(&["delete", "pod", "chatty"]).await;
    let out = follower.wait_with_output().await.expect("follower");
    let followed = line_numbers(&String::from_utf8_lossy(&out.stdout));
    assert!(!followed.is_empty());
    for pair in followed.windows(2) {
        assert_eq!(pair[0] + 1, pair[1], "the follower missed lines");
    }
    if let Some(live_first) = live_first {
        assert!(
            followed.last().copied().unwrap_or(0) >= live_first,
            "the follower stopped in an old file: followed up to {:?}, live file from {live_first}",
            followed.last()
        );
    }
}

/// `logs -f POD` as a child process whose output the test reads.
fn follow(agent: &AgentProcess, pod: &str) -> tokio::process::Child {
    tokio::process::Command::new(berth_testkit::agent::berth_bin())
        .arg("--socket")
        .arg(agent.socket())
        .args(["logs", "-f", pod])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn berth logs -f")
}

#[tokio::test]
async fn a_line_without_newline_shows_while_the_container_runs() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "unfinished",
            "Never",
            vec![sh_container("main", "printf abc; exec sleep 3600")],
        )))
        .await;
    wait_running(&agent, "unfinished").await;
    let shown = wait_log_contains(&agent, "unfinished", "main", "abc").await;
    assert_eq!(shown, "abc");

    // A follower shows it too, without waiting for the line to end.
    let mut follower = follow(&agent, "unfinished");
    let mut stdout = follower.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let read = tokio::time::timeout(START_TIMEOUT, async {
        while !seen.ends_with(b"abc") {
            let mut buf = [0; 64];
            let n = stdout.read(&mut buf).await.expect("read");
            assert_ne!(
                n,
                0,
                "the follower ended: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "{:?}", String::from_utf8_lossy(&seen));
    assert_eq!(seen, b"abc");
}

/// The agent's resident memory, from `/proc/<pid>/status`.
fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// The most the agent may grow while serving a log (it held whole logs in
/// memory: 350 MB for 100 MB of log).
const SERVING_GROWTH_MIB: f64 = 64.0;

/// Samples a process's resident memory every 20 ms, until dropped.
struct RssPeak {
    peak_kib: std::sync::Arc<std::sync::atomic::AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl RssPeak {
    fn start(pid: i32) -> RssPeak {
        use std::sync::atomic::Ordering;
        let peak_kib = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let peak = peak_kib.clone();
        let sampler = tokio::spawn(async move {
            loop {
                peak.fetch_max((rss_mib(pid) * 1024.0) as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        RssPeak { peak_kib, sampler }
    }

    fn peak_mib(&self) -> f64 {
        self.peak_kib.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

#[tokio::test]
async fn serving_a_big_log_keeps_the_agent_small() {
    // No rotation: one 128 MB file, twice the growth allowed, so that an
    // agent holding the log in memory fails; small enough for a tight disk.
    let Some((_containerd, agent)) = setup_with(&["--container-log-max-size", "1Gi"]).await else {
        return;
    };
    const FLOOD: u64 = 128_000_000;
    let script = format!(
        "line=$(head -c 999 /dev/zero | tr '\\0' x); yes \"$line\" | head -c {FLOOD}; exec sleep 3600"
    );
    agent
        .apply_yaml(&manifest(&pod(
            "flood",
            "Never",
            vec![sh_container("main", &script)],
        )))
        .await;
    let running = wait_running(&agent, "flood").await;
    let log = agent
        .log_dir()
        .join(format!("default_flood_{}", uid(&running)))
        .join("main")
        .join("0.log");
    let pid = agent.pid().expect("agent pid");
    let baseline = rss_mib(pid);

    // A follower that reads 16 KiB every 20 ms, far slower than the flood.
    let mut socket = tokio::net::UnixStream::connect(agent.socket())
        .await
        .expect("connect");
    socket
        .write_all(
            b"GET /api/v1/namespaces/default/pods/flood/log?follow=true HTTP/1.1\r\n\
              Host: localhost\r\n\r\n",
        )
        .await
        .expect("request");
    let mut followed = 0usize;
    let peak = RssPeak::start(pid);
    let mut flooded_at = None;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let mut buf = vec![0; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf))
            .await
            .expect("the follower got nothing for 5 s")
            .expect("read");
        assert_ne!(n, 0, "the follow ended");
        followed += n;
        let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        // Written in full, and a few seconds more of serving the slow reader.
        match flooded_at {
            None if size >= FLOOD => flooded_at = Some(Instant::now()),
            Some(at) if at.elapsed() > Duration::from_secs(8) => break,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the flood took too long: {size} bytes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    assert!(
        (followed as u64) < size / 4,
        "the follower was not slow: {followed} of {size} bytes"
    );
    let peak = peak.peak_mib();
    eprintln!(
        "slow follower of a {} MB flood: agent {baseline:.1} -> peak {peak:.1} MiB ({followed} bytes followed)",
        size / 1_000_000
    );
    assert!(
        peak - baseline < SERVING_GROWTH_MIB,
        "the agent grew from {baseline:.1} to {peak:.1} MiB serving a slow follower"
    );
    drop(socket);

    // `logs` of the whole file, read as fast as the client can.
    let baseline = rss_mib(pid);
    let mut reader = tokio::process::Command::new(berth_testkit::agent::berth_bin())
        .arg("--socket")
        .arg(agent.socket())
        .args(["logs", "flood"])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn berth logs");
    let mut stdout = reader.stdout.take().expect("stdout");
    let mut shown = 0u64;
    let peak = RssPeak::start(pid);
    let mut buf = vec![0; 256 * 1024];
    let read_all = tokio::time::timeout(START_TIMEOUT, async {
        loop {
            let n = stdout.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            shown += n as u64;
        }
    })
    .await;
    assert!(read_all.is_ok(), "logs took too long: {shown} bytes");
    assert!(reader.wait().await.expect("logs").success());
    assert_eq!(shown, FLOOD, "logs showed {shown} bytes");
    let peak = peak.peak_mib();
    eprintln!(
        "logs of a {} MB log: agent {baseline:.1} -> peak {peak:.1} MiB",
        size / 1_000_000
    );
    assert!(
        peak - baseline < SERVING_GROWTH_MIB,
        "the agent grew from {baseline:.1} to {peak:.1} MiB serving logs"
    );
}

/// A container is reported Running only once its process runs the
/// container's command, not while it is still runc's init (a task's Start
/// returns before the exec), so that output it writes at once is in its log
/// by the time a client that saw Running asks (the upstream spec "should
/// support retrieving logs from the container over websockets" reads it
/// once, at once). A CPU limit of 1m (1 ms per 100 ms) holds the process
/// back between runc's release and the exec, so that moment is wide enough
/// to be seen.
#[tokio::test]
async fn running_is_reported_once_the_command_runs() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    for n in 0..5 {
        let name = format!("alive-{n}");
        let mut container = sh_container("main", "echo container is alive; sleep 10000");
        container["resources"] = serde_json::json!({"limits": {"cpu": "1m"}});
        agent
            .apply_yaml(&manifest(&pod(&name, "Never", vec![container])))
            .await;
        let pod = poll_until_running(&agent, &name).await;
        let id = container_id(&pod, "main").expect("a running container has an id");
        let pid = task_pid(&agent, &id).expect("a running container has a task");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            !stat.contains("(runc:[2:INIT])"),
            "{name} is reported Running while its process is still runc's init: {stat}"
        );
        agent
            .cli_ok(&["delete", "pod", &name, "--grace-period", "0", "--force"])
            .await;
    }
}

/// Polls the pod as fast as the API answers (the status is read at the
/// moment it changes, as a watch would see it) until its container runs.
async fn poll_until_running(agent: &AgentProcess, name: &str) -> serde_json::Value {
    let path = format!("/api/v1/namespaces/default/pods/{name}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pod) = agent.api_get_json(&path).await {
            if is_running(&pod, "main") {
                return pod;
            }
        }
        assert!(Instant::now() < deadline, "{name} did not run within 60 s");
    }
}

/// The shim spawns `berth-logger`, the small binary beside the agent, not
/// the agent's own binary: each container's logger maps a few hundred
/// kilobytes rather than the whole agent.
#[tokio::test]
async fn each_containers_logger_is_the_small_binary_beside_the_agent() {
    let Some((_containerd, agent)) = setup().await else {
        return;
    };
    agent
        .apply_yaml(&manifest(&pod(
            "quiet",
            "Never",
            vec![sh_container("main", "echo up; sleep 300")],
        )))
        .await;
    let running = wait_running(&agent, "quiet").await;
    let log = agent
        .log_dir()
        .join(format!("default_quiet_{}", uid(&running)))
        .join("main")
        .join("0.log");
    let loggers: Vec<std::path::PathBuf> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            (args.get(1) == Some(&&b"logger"[..])
                && args.get(2) == Some(&log.as_os_str().as_encoded_bytes()))
            .then(|| std::fs::read_link(entry.path().join("exe")).ok())?
        })
        .collect();
    let small = berth_testkit::agent::berth_bin().with_file_name("berth-logger");
    assert_eq!(loggers, [small], "the loggers of {}", log.display());
}
