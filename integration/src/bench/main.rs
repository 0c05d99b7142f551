//! `berth-bench [N] [--rss]`: how long berth takes from a pod's POST to the
//! local API to the pod Running (seen on a watch), for N pods one after
//! another and N at once, next to `ctr run
//! -d` of the same image on the same private containerd. With `--rss`, also
//! the agent's resident memory with 100 pods: when the last is Running,
//! and again 15 s later, with the agent idle.
//!
//! `berth-bench --cri [N] [ROUNDS]`: berth next to containerd's CRI plugin
//! (the kubelet's runtime path), interleaved, with berth/CRI ratios and
//! node-side memory at 100 pods (see `versus`).
//!
//! `berth-bench --probes N [SECONDS]`: N pods with 3 probes each at period
//! 1 s; the agent's CPU and memory and the probes' period drift.
//!
//! `berth-bench --pulls [N] [LAYER_MIB]`: N cold pulls from a registry on
//! loopback, `berth image pull` next to `ctr pull`.
//!
//! `berth-bench --faults [--churn N] [--crashes N] [--restarts N] ...`: pod
//! churn, `kill -9` of the agent during pod starts and containerd restarts,
//! with everything berth could leak counted before and after. This mode
//! judges: it exits non-zero on a leak, a restart or a duplicate.
//!
//! The other modes report and never judge. Run the release build as root: `cargo build
//! --release --bin berth --bin berth-logger --bin berth-bench && target/release/berth-bench 20`.

mod cri;
mod faults;
mod measure;
mod probes;
mod pulls;
mod versus;

use std::time::Duration;

use berth_integration::{all_running, manifest, pod, sh_container};
use berth_testkit::api_watch::{api_request, ApiWatch};
use berth_testkit::{AgentProcess, PrivateContainerd, TEST_IMAGE};
use futures::future::join_all;
use measure::{ms, percentile, vm_rss};
use tokio::time::Instant;

const POD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `--rss` lets the agent idle before it measures again.
const SETTLE: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(rest) = args.strip_prefix(&["--faults".to_owned()]) {
        let options = faults::Options::parse(rest)?;
        let Some(mut containerd) = PrivateContainerd::start_or_skip().await else {
            return Ok(());
        };
        return faults::run(&mut containerd, options).await;
    }
    let mut numbers = Vec::new();
    let mut rss = false;
    let mut probe_mode = false;
    let mut pull_mode = false;
    let mut cri_mode = false;
    for arg in args {
        match arg.as_str() {
            "--rss" => rss = true,
            "--probes" => probe_mode = true,
            "--pulls" => pull_mode = true,
            "--cri" => cri_mode = true,
            "-h" | "--help" => {
                println!("usage: berth-bench [N (default 10)] [--rss]");
                println!("       berth-bench --cri [N (default 10)] [ROUNDS (default 3)]");
                println!("       berth-bench --probes [PODS (default 50)] [SECONDS (default 30)]");
                println!("       berth-bench --pulls [N (default 5)] [LAYER_MIB (default 32)]");
                println!("       {}", faults::USAGE);
                return Ok(());
            }
            _ => numbers.push(
                arg.parse::<usize>()
                    .map_err(|_| anyhow::anyhow!("bad number {arg:?}"))?,
            ),
        }
    }
    if cri_mode {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: not root");
            return Ok(());
        }
        let n = numbers.first().copied().unwrap_or(10);
        let rounds = numbers.get(1).copied().unwrap_or(3);
        return versus::run(n, rounds).await;
    }
    let Some(containerd) = PrivateContainerd::start_or_skip().await else {
        return Ok(());
    };
    if probe_mode {
        let pods = numbers.first().copied().unwrap_or(50);
        let seconds = numbers.get(1).copied().unwrap_or(30) as u64;
        return probes::run(&containerd, pods, Duration::from_secs(seconds)).await;
    }
    if pull_mode {
        let n = numbers.first().copied().unwrap_or(5);
        let layer_mib = numbers.get(1).copied().unwrap_or(32);
        return pulls::run(&containerd, n, layer_mib).await;
    }
    let n = numbers.first().copied().unwrap_or(10);
    let agent = AgentProcess::start(&containerd).await;
    println!("berth: {}", berth_testkit::agent::berth_bin().display());

    // Warm-up: the first pod pays for the sandbox image and the CNI bridge.
    apply_and_wait(&agent, "warmup").await;
    if rss {
        let pid = agent.pid().expect("agent runs");
        println!("agent RSS with 1 pod: {}", vm_rss(pid));
    }

    let mut sequential = Vec::with_capacity(n);
    for i in 0..n {
        sequential.push(apply_and_wait(&agent, &format!("seq-{i}")).await);
    }

    let concurrent_start = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("conc-{i}")).collect();
    let concurrent = apply_all_and_wait(&agent, &names).await;
    let concurrent_wall = concurrent_start.elapsed();

    let mut ctr_runs = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("ctr-run-{i}");
        let started = Instant::now();
        let out = agent.ctr(&["run", "-d", TEST_IMAGE, &id, "sleep", "3600"]);
        ctr_runs.push(started.elapsed());
        if !out.status.success() {
            eprintln!("ctr run {id}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    println!();
    println!("{:<34} {:>9} {:>9} {:>5}", "", "p50 ms", "p90 ms", "n");
    row("berth apply -> Running, sequential", &sequential);
    row("berth apply -> Running, concurrent", &concurrent);
    row("ctr run -d (no CNI, no pause)", &ctr_runs);
    println!(
        "{:<34} {:>9.1} ms for {n} pods",
        "concurrent batch, wall clock",
        ms(concurrent_wall)
    );
    let base = percentile(&ctr_runs, 50);
    if !base.is_zero() {
        println!(
            "ratio p50 berth/ctr: sequential {:.2}x, concurrent {:.2}x",
            percentile(&sequential, 50).as_secs_f64() / base.as_secs_f64(),
            percentile(&concurrent, 50).as_secs_f64() / base.as_secs_f64()
        );
    }

    if rss {
        let have = 1 + 2 * n;
        let wanted = 100usize.saturating_sub(have);
        let more = (0..wanted).map(|i| {
            let agent = &agent;
            async move { apply_and_wait(agent, &format!("rss-{i}")).await }
        });
        // Ten at a time, to keep a 2-core machine responsive.
        let mut pending = more;
        loop {
            let batch: Vec<_> = pending.by_ref().take(10).collect();
            if batch.is_empty() {
                break;
            }
            join_all(batch).await;
        }
        let pid = agent.pid().expect("agent runs");
        let pods = have + wanted;
        println!("agent RSS with {pods} pods: {}", vm_rss(pid));
        // Once the burst is over: tokio's idle blocking threads go after
        // 10 s, and with them their stacks.
        tokio::time::sleep(SETTLE).await;
        println!(
            "agent RSS with {pods} pods, {} s later: {}",
            SETTLE.as_secs(),
            vm_rss(pid)
        );
    }
    Ok(())
}

fn sleeper(name: &str) -> String {
    manifest(&pod(
        name,
        "Always",
        vec![sh_container("main", "exec sleep 3600")],
    ))
}

/// Creates pods all at once and returns, per pod, the time until the API
/// shows it Running. As the CRI side is driven in-process, so is this one:
/// each pod is one POST to the local API (no CLI process per pod), and
/// Running is seen on one watch (no list every few milliseconds taking the
/// CPU from what is measured).
async fn apply_all_and_wait(agent: &AgentProcess, names: &[String]) -> Vec<Duration> {
    let manifests: Vec<String> = names.iter().map(|name| sleeper(name)).collect();
    create_and_wait(agent, names, &manifests, "").await
}

/// [`apply_all_and_wait`] for pods of any manifests (YAML, one pod each);
/// `selector` narrows the watch (a `&fieldSelector=...` query, or empty).
pub(crate) async fn create_and_wait(
    agent: &AgentProcess,
    names: &[String],
    manifests: &[String],
    selector: &str,
) -> Vec<Duration> {
    let socket = agent.socket();
    let path = format!("/api/v1/namespaces/default/pods?watch=true{selector}");
    let mut watch = ApiWatch::open(&socket, &path)
        .await
        .expect("the agent serves a pod watch");
    let started = Instant::now();
    let creates = join_all(manifests.iter().map(|m| {
        api_request(
            &socket,
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/yaml",
            m.as_bytes(),
        )
    }));
    let running = async {
        let mut done: Vec<Option<Duration>> = vec![None; names.len()];
        let read = async {
            while done.iter().any(Option::is_none) {
                let Some(event) = watch.next().await else {
                    break;
                };
                let pod = &event["object"];
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                if let Some(i) = names.iter().position(|n| n == name) {
                    if done[i].is_none() && all_running(pod) {
                        done[i] = Some(started.elapsed());
                    }
                }
            }
        };
        if tokio::time::timeout(POD_TIMEOUT, read).await.is_err() {
            eprintln!(
                "not all of {} pods Running after {POD_TIMEOUT:?}",
                names.len()
            );
        }
        done.into_iter()
            .map(|d| d.unwrap_or_else(|| started.elapsed()))
            .collect::<Vec<_>>()
    };
    let (created, times) = tokio::join!(creates, running);
    for (name, reply) in names.iter().zip(created) {
        if !matches!(reply, Some((201 | 200, _))) {
            eprintln!("create {name}: {reply:?}");
        }
    }
    times
}

/// Creates a `sleep 3600` pod and returns the time until the API shows it
/// Running (as [`apply_all_and_wait`], on a watch of that pod alone).
async fn apply_and_wait(agent: &AgentProcess, name: &str) -> Duration {
    let selector = format!("&fieldSelector=metadata.name%3D{name}");
    create_and_wait(agent, &[name.to_owned()], &[sleeper(name)], &selector).await[0]
}

fn row(label: &str, samples: &[Duration]) {
    println!(
        "{label:<34} {:>9.1} {:>9.1} {:>5}",
        ms(percentile(samples, 50)),
        ms(percentile(samples, 90)),
        samples.len()
    );
}
