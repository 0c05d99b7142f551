//! `berth-bench --cri [N] [ROUNDS]`: berth next to containerd's CRI plugin
//! (the kubelet's runtime path) on one private containerd, with the same CNI
//! configuration, pause image and busybox image, samples interleaved so
//! that machine noise hits both alike; `ctr run -d` is the floor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_integration::{manifest, pod, sh_container, term_handling_container};
use berth_testkit::api_watch::{api_request, ApiWatch};
use berth_testkit::{AgentProcess, CriPlugin, PrivateContainerd, TEST_IMAGE};
use futures::future::join_all;
use tokio::time::Instant;

use crate::cri::{Cri, CriPod};
use crate::measure::{ms, percentile};
use crate::{apply_all_and_wait, apply_and_wait, create_and_wait, POD_TIMEOUT};

/// The CRI plugin's sandbox image: berth's own pause, tagged for it.
const CRI_PAUSE: &str = "berth.local/pause:cri-bench";
const CRI_NAMESPACE: &str = "k8s.io";
const SLEEP: &str = "exec sleep 3600";
const TERM_HANDLING: &str = "trap 'exit 0' TERM; echo ready; while true; do sleep 0.1; done";

/// One measure on both paths.
#[derive(Default)]
struct Pair {
    berth: Vec<Duration>,
    cri: Vec<Duration>,
}

pub async fn run(n: usize, rounds: usize) -> anyhow::Result<()> {
    let work = tempfile::Builder::new().prefix("berth-vs-cri-").tempdir()?;
    let cni_conf_dir = work.path().join("cni");
    let cri_logs = work.path().join("pods");
    std::fs::create_dir_all(&cni_conf_dir)?;
    std::fs::create_dir_all(&cri_logs)?;
    let containerd = PrivateContainerd::start_with_cri(&CriPlugin {
        sandbox_image: CRI_PAUSE.into(),
        cni_bin_dir: PathBuf::from("/usr/lib/cni"),
        cni_conf_dir: cni_conf_dir.clone(),
    })
    .await;
    let agent = AgentProcess::start(&containerd).await;
    println!("berth: {}", berth_testkit::agent::berth_bin().display());
    // The same network: the plugin watches its directory for the conflist.
    for entry in std::fs::read_dir(agent.cni_conf_dir())? {
        let entry = entry?;
        std::fs::copy(entry.path(), cni_conf_dir.join(entry.file_name()))?;
    }
    // berth's first pod imports its pause image; the plugin gets a copy.
    apply_and_wait(&agent, "warmup").await;
    share_images(&containerd, &agent, work.path())?;
    let cri = Cri::connect(containerd.socket(), &cri_logs).await?;
    let warm = cri.run_pod("warmup", TEST_IMAGE, &[SLEEP]).await?;
    cri.delete_pod(&warm, 0).await?;
    delete_berth(&agent, "warmup").await;

    let mut sequential = Pair::default();
    let mut timelines = Vec::new();
    for i in 0..n {
        let name = format!("seq-{i}");
        let applied = ms_of_day();
        sequential.berth.push(apply_and_wait(&agent, &name).await);
        if i + 1 == n {
            timelines.push((
                "one pod, sequential".to_owned(),
                timeline(&agent, &name, applied).await,
            ));
        }
        let started = Instant::now();
        let pod = cri.run_pod(&name, TEST_IMAGE, &[SLEEP]).await?;
        sequential.cri.push(started.elapsed());
        delete_berth(&agent, &name).await;
        cri.delete_pod(&pod, 0).await?;
    }

    let mut walls = Vec::new();
    for size in [10, 30] {
        let mut wall = Pair::default();
        for round in 0..rounds {
            // Who goes first alternates.
            for side in [round % 2, 1 - round % 2] {
                let names: Vec<String> =
                    (0..size).map(|i| format!("b{size}-{round}-{i}")).collect();
                let started = Instant::now();
                if side == 0 {
                    let applied = ms_of_day();
                    apply_all_and_wait(&agent, &names).await;
                    wall.berth.push(started.elapsed());
                    if round == 0 {
                        for name in [&names[0], &names[size - 1]] {
                            let what = format!("{size} at once, {name}");
                            timelines.push((what, timeline(&agent, name, applied).await));
                        }
                    }
                    join_all(names.iter().map(|name| delete_berth(&agent, name))).await;
                } else {
                    let pods = join_all(
                        names
                            .iter()
                            .map(|name| cri.run_pod(name, TEST_IMAGE, &[SLEEP])),
                    )
                    .await;
                    wall.cri.push(started.elapsed());
                    for pod in pods {
                        cri.delete_pod(&pod?, 0).await?;
                    }
                }
            }
        }
        walls.push((size, wall));
    }

    let mut delete = Pair::default();
    for i in 0..n {
        let name = format!("term-{i}");
        agent
            .apply_yaml(&manifest(&pod(
                &name,
                "Always",
                vec![term_handling_container("main")],
            )))
            .await;
        wait_berth_log(&agent, &name, "ready").await;
        let started = Instant::now();
        delete_berth_with(&agent, &name, "").await;
        delete.berth.push(started.elapsed());

        let pod = cri.run_pod(&name, TEST_IMAGE, &[TERM_HANDLING]).await?;
        wait_cri_log(&cri_logs, &name, "ready").await;
        let started = Instant::now();
        cri.delete_pod(&pod, 30).await?;
        delete.cri.push(started.elapsed());
    }

    let mut three = Pair::default();
    for i in 0..n {
        let name = format!("three-{i}");
        let containers = (0..3)
            .map(|c| sh_container(&format!("c{c}"), SLEEP))
            .collect();
        let selector = format!("&fieldSelector=metadata.name%3D{name}");
        let manifest = manifest(&pod(&name, "Always", containers));
        three.berth.extend(
            create_and_wait(&agent, std::slice::from_ref(&name), &[manifest], &selector).await,
        );
        let started = Instant::now();
        let pod = cri
            .run_pod(&name, TEST_IMAGE, &[SLEEP, SLEEP, SLEEP])
            .await?;
        three.cri.push(started.elapsed());
        delete_berth(&agent, &name).await;
        cri.delete_pod(&pod, 0).await?;
    }

    let mut floor = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("ctr-run-{i}");
        let started = Instant::now();
        let out = agent.ctr(&["run", "-d", TEST_IMAGE, &id, "sleep", "3600"]);
        floor.push(started.elapsed());
        if !out.status.success() {
            eprintln!("ctr run {id}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let _ = agent.ctr(&["task", "kill", "-s", "KILL", &id]);
    }

    println!();
    println!(
        "{:<38} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "", "berth p50", "p90", "CRI p50", "p90", "p50 x", "p90 x"
    );
    pair_row("one pod, apply -> Running, sequential", &sequential);
    for (size, wall) in &walls {
        pair_row(&format!("{size} pods at once, wall"), wall);
    }
    pair_row("delete -> gone, SIGTERM-handling pod", &delete);
    pair_row("3-container pod, apply -> Running", &three);
    println!(
        "{:<38} {:>9.1} {:>9.1}   (floor: no sandbox, no CNI, no logs)",
        "ctr run -d",
        ms(percentile(&floor, 50)),
        ms(percentile(&floor, 90))
    );
    println!("(n = {n} per side; walls: {rounds} rounds per side; ms; x = berth/CRI)");

    println!();
    println!("berth trace: ms after the apply (the first of the batch's applies)");
    for (what, lines) in &timelines {
        println!("  {what}:");
        for line in lines {
            println!("    {line}");
        }
    }

    memory_at_100(&containerd, &agent, &cri).await?;
    Ok(())
}

/// Now, in milliseconds since midnight UTC (the timeline's times are UTC).
fn ms_of_day() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_millis() % 86_400_000) as u64
}

/// `2024-05-01T11:00:00.123Z` in milliseconds since midnight.
fn time_of_day_ms(time: &str) -> Option<u64> {
    let clock = time.split_once('T')?.1.trim_end_matches('Z');
    let (hms, millis) = clock.split_once('.')?;
    let mut parts = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    Some(((h * 60 + m) * 60 + s) * 1000 + millis.parse::<u64>().ok()?)
}

/// The pod's `berth trace`, each step's time after `applied`.
async fn timeline(agent: &AgentProcess, name: &str, applied: u64) -> Vec<String> {
    let path = format!("/apis/berth.io/v1/namespaces/default/pods/{name}/timeline");
    let Some(list) = agent.api_get_json(&path).await else {
        return vec!["(no timeline)".into()];
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let at = item["time"]
                .as_str()
                .and_then(time_of_day_ms)
                .unwrap_or(applied);
            format!(
                "+{:>5}  {:<4} {:<18} {}",
                at.saturating_sub(applied),
                item["container"].as_str().unwrap_or("-"),
                item["step"].as_str().unwrap_or_default(),
                item["detail"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn pair_row(label: &str, pair: &Pair) {
    let ratio = |p| {
        let cri = percentile(&pair.cri, p).as_secs_f64();
        if cri == 0.0 {
            f64::NAN
        } else {
            percentile(&pair.berth, p).as_secs_f64() / cri
        }
    };
    println!(
        "{label:<38} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6.2}x {:>6.2}x",
        ms(percentile(&pair.berth, 50)),
        ms(percentile(&pair.berth, 90)),
        ms(percentile(&pair.cri, 50)),
        ms(percentile(&pair.cri, 90)),
        ratio(50),
        ratio(90),
    );
}

/// Copies berth's pause image and the test image into the plugin's namespace.
fn share_images(
    containerd: &PrivateContainerd,
    agent: &AgentProcess,
    dir: &Path,
) -> anyhow::Result<()> {
    let ctr = |namespace: &str, args: &[&str]| {
        berth_testkit::containerd::ctr(containerd.socket(), namespace, args)
    };
    let listed = ctr(agent.namespace(), &["images", "ls", "-q"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let pause = listed
        .lines()
        .find(|l| l.starts_with("berth.local/pause:"))
        .ok_or_else(|| anyhow::anyhow!("berth's pause image is not in {listed:?}"))?
        .to_owned();
    let archive = dir.join("pause.tar");
    let archive_arg = archive.display().to_string();
    let steps: [(&str, Vec<&str>); 3] = [
        (
            agent.namespace(),
            vec!["images", "export", &archive_arg, &pause],
        ),
        (CRI_NAMESPACE, vec!["images", "import", &archive_arg]),
        (CRI_NAMESPACE, vec!["images", "tag", &pause, CRI_PAUSE]),
    ];
    for (namespace, args) in steps {
        let out = ctr(namespace, &args);
        anyhow::ensure!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let busybox = berth_testkit::write_busybox_archive(dir, TEST_IMAGE);
    let busybox = busybox.display().to_string();
    let out = ctr(CRI_NAMESPACE, &["images", "import", &busybox]);
    anyhow::ensure!(
        out.status.success(),
        "import busybox for CRI: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Removes a pod between samples, at once (grace period 0).
async fn delete_berth(agent: &AgentProcess, name: &str) {
    delete_berth_with(agent, name, "?gracePeriodSeconds=0").await;
}

/// `DELETE` of a pod through the agent's socket (with `query`), then waits
/// for its DELETED event on a watch of it: the API no longer knows it
/// (torn down).
async fn delete_berth_with(agent: &AgentProcess, name: &str, query: &str) {
    let socket = agent.socket();
    let path = format!("/api/v1/namespaces/default/pods/{name}");
    let watch_path =
        format!("/api/v1/namespaces/default/pods?watch=true&fieldSelector=metadata.name%3D{name}");
    let Some(mut watch) = ApiWatch::open(&socket, &watch_path).await else {
        eprintln!("delete {name}: no watch");
        return;
    };
    if api_request(
        &socket,
        "DELETE",
        &format!("{path}{query}"),
        "application/json",
        b"",
    )
    .await
    .is_none()
    {
        eprintln!("delete {name}: no answer");
        return;
    }
    let gone = async {
        while let Some(event) = watch.next().await {
            if event["type"] == "DELETED" {
                return true;
            }
        }
        false
    };
    if !tokio::time::timeout(POD_TIMEOUT, gone)
        .await
        .unwrap_or(false)
    {
        eprintln!("{name}: not gone after {POD_TIMEOUT:?}");
    }
}

async fn wait_berth_log(agent: &AgentProcess, name: &str, text: &str) {
    let path = format!("/api/v1/namespaces/default/pods/{name}/log?container=main");
    let started = Instant::now();
    while started.elapsed() < POD_TIMEOUT {
        if let Some((200, body)) = berth_testkit::agent::api_get(&agent.socket(), &path).await {
            if String::from_utf8_lossy(&body).contains(text) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("{name}: no {text:?} in its log after {POD_TIMEOUT:?}");
}

async fn wait_cri_log(root: &Path, name: &str, text: &str) {
    let started = Instant::now();
    while started.elapsed() < POD_TIMEOUT {
        let found = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("default_{name}_"))
            })
            .any(|e| {
                std::fs::read_to_string(e.path().join("c0/0.log"))
                    .is_ok_and(|log| log.contains(text))
            });
        if found {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("{name}: no {text:?} in its CRI log after {POD_TIMEOUT:?}");
}

/// PSS of a process in KiB (`smaps_rollup`), 0 when gone.
fn pss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Processes whose command line has every one of `words`, with their PSS.
fn processes_with(words: &[&str]) -> Vec<(i32, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if words.iter().all(|w| args.iter().any(|a| a.contains(w))) {
            found.push((pid, pss_kib(pid)));
        }
    }
    found
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Node-side memory with 100 single-container pods on each path, one path
/// at a time: what berth runs (agent, loggers, shims) and what containerd
/// grows by, against what the plugin's pods cost (containerd's growth and
/// the shims).
async fn memory_at_100(
    containerd: &PrivateContainerd,
    agent: &AgentProcess,
    cri: &Cri,
) -> anyhow::Result<()> {
    const PODS: usize = 100;
    let socket = containerd.socket().display().to_string();
    let agent_pid = agent.pid().expect("agent runs");
    let containerd_before = pss_kib(containerd.pid());
    let names: Vec<String> = (0..PODS).map(|i| format!("mem-{i}")).collect();
    for batch in names.chunks(10) {
        apply_all_and_wait(agent, batch).await;
    }
    let loggers = processes_with(&[
        &berth_testkit::agent::berth_bin().display().to_string(),
        "logger",
    ]);
    let berth_shims = processes_with(&["containerd-shim", &socket, agent.namespace()]);
    let berth = [
        ("agent", vec![(agent_pid, pss_kib(agent_pid))]),
        ("loggers", loggers),
        ("shims", berth_shims),
    ];
    let containerd_berth = pss_kib(containerd.pid()).saturating_sub(containerd_before);
    let agent_rss = rss_kib(agent_pid);
    for batch in names.chunks(10) {
        join_all(batch.iter().map(|name| delete_berth(agent, name))).await;
    }

    let containerd_before = pss_kib(containerd.pid());
    let mut pods: Vec<CriPod> = Vec::with_capacity(PODS);
    for batch in names.chunks(10) {
        for pod in join_all(
            batch
                .iter()
                .map(|name| cri.run_pod(name, TEST_IMAGE, &[SLEEP])),
        )
        .await
        {
            pods.push(pod?);
        }
    }
    let cri_shims = processes_with(&["containerd-shim", &socket, CRI_NAMESPACE]);
    let containerd_cri = pss_kib(containerd.pid()).saturating_sub(containerd_before);

    println!();
    println!("with {PODS} pods (PSS, MiB; one container each):");
    let mut berth_total = containerd_berth;
    for (what, processes) in &berth {
        let sum: u64 = processes.iter().map(|(_, pss)| pss).sum();
        berth_total += sum;
        println!(
            "  berth {what:<24} {:>8.1}  ({} processes)",
            mib(sum),
            processes.len()
        );
    }
    println!(
        "  berth containerd growth       {:>8.1}",
        mib(containerd_berth)
    );
    println!("  berth agent RSS               {:>8.1}", mib(agent_rss));
    let cri_shim_sum: u64 = cri_shims.iter().map(|(_, pss)| pss).sum();
    println!(
        "  CRI shims                     {:>8.1}  ({} processes)",
        mib(cri_shim_sum),
        cri_shims.len()
    );
    println!(
        "  CRI containerd growth         {:>8.1}",
        mib(containerd_cri)
    );
    let cri_total = cri_shim_sum + containerd_cri;
    println!(
        "  node-side total: berth {:.1}, CRI {:.1} ({:.2}x); per pod {:.2} vs {:.2}",
        mib(berth_total),
        mib(cri_total),
        berth_total as f64 / cri_total.max(1) as f64,
        mib(berth_total) / PODS as f64,
        mib(cri_total) / PODS as f64
    );
    for pod in &pods {
        cri.delete_pod(pod, 0).await?;
    }
    Ok(())
}
