//! Container logs: CRI-format files in the kubelet's layout, read by `logs`.

use berth_integration::*;

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
}
