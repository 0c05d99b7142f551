//! `berth-bench --faults`: churn, `kill -9` of the agent at random points of
//! pod starts, and containerd restarts, each followed by a count of
//! everything berth could leak (see `berth_integration::residue`), and of
//! restarted or duplicated containers. Unlike the other modes it judges: it
//! exits non-zero when anything leaked, restarted or ran twice.

mod churn;
mod crashes;
mod restarts;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use berth_integration::residue::{fd_count, rss_kib, Residue};
use berth_integration::{all_running, manifest, pod, restart_count, sh_container};
use berth_testkit::{AgentProcess, PrivateContainerd};
use serde_json::Value;
use tokio::time::Instant;

use crate::measure::{ms, percentile};

/// How long pods of one batch may take to run, or to go, on a busy machine.
const BATCH_TIMEOUT: Duration = Duration::from_secs(180);
/// How long shims, loggers and deferred removals may take to go after the
/// pods did.
const SETTLE: Duration = Duration::from_secs(20);

pub const USAGE: &str = "berth-bench --faults [--churn N (300)] [--batch N (15)] \
[--crashes N (10)] [--pods N (20)] [--restarts N (3)] [--seed N]";

/// What to run: a count of 0 skips its phase.
#[derive(Debug, Clone)]
pub struct Options {
    /// Pods created and deleted, `batch` at a time.
    pub churn: usize,
    /// Pods started at once, in churn and in each crash round.
    pub batch: usize,
    /// Rounds of `kill -9` during pod starts.
    pub crashes: usize,
    /// Pods running across containerd restarts.
    pub pods: usize,
    /// containerd restarts.
    pub restarts: usize,
    /// Seeds the crash delays, so a run can be repeated.
    pub seed: u64,
}

impl Options {
    /// Parses the arguments after `--faults`.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            churn: 300,
            batch: 15,
            crashes: 10,
            pods: 20,
            restarts: 3,
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
        };
        let mut rest = args.iter();
        while let Some(flag) = rest.next() {
            let mut value = || -> anyhow::Result<u64> {
                let v = rest
                    .next()
                    .with_context(|| format!("{flag} needs a number"))?;
                v.parse()
                    .with_context(|| format!("{flag}: bad number {v:?}"))
            };
            match flag.as_str() {
                "--churn" => options.churn = value()? as usize,
                "--batch" => options.batch = value()?.max(1) as usize,
                "--crashes" => options.crashes = value()? as usize,
                "--pods" => options.pods = value()?.max(1) as usize,
                "--restarts" => options.restarts = value()? as usize,
                "--seed" => options.seed = value()?,
                other => anyhow::bail!("unknown argument {other:?}\nusage: {USAGE}"),
            }
        }
        Ok(options)
    }
}

/// What the phases found, for the summary and the exit status.
#[derive(Debug, Default)]
pub struct Findings {
    pub leaks: usize,
    pub restarts: i64,
    pub duplicates: usize,
    pub api_back: Vec<Duration>,
    pub exec_after_restart: Vec<Duration>,
    /// One line per thing found, saying where.
    pub problems: Vec<String>,
}

impl Findings {
    /// Records what is above the baseline as leaks of `phase`.
    fn leaked(&mut self, phase: &str, excess: &[(&'static str, usize)]) {
        for (counter, n) in excess {
            self.leaks += n;
            self.problems.push(format!("{phase}: {n} {counter} leaked"));
        }
    }
}

pub async fn run(containerd: &mut PrivateContainerd, options: Options) -> anyhow::Result<()> {
    let mut agent = AgentProcess::start(containerd).await;
    println!("berth: {}", berth_testkit::agent::berth_bin().display());
    println!("{options:?}");
    // The first pod pays for the pause image and the bridge; count from after.
    let warmup = names("warmup", 1);
    start_batch(&agent, &warmup).await?;
    delete_batch(&agent, &warmup).await?;
    let baseline = Residue::of(&agent);
    let mut findings = Findings::default();
    if !baseline.excess_over(&Residue::default()).is_empty() {
        println!("before any pod: {baseline:?}");
    }

    if options.churn > 0 {
        churn::run(&agent, &baseline, &options, &mut findings).await?;
    }
    if options.crashes > 0 {
        crashes::run(&mut agent, &baseline, &options, &mut findings).await?;
    }
    if options.restarts > 0 {
        restarts::run(containerd, &agent, &baseline, &options, &mut findings).await?;
    }

    println!();
    println!(
        "faults: {} leaks, {} restarts, {} duplicates; API back p50 {} max {}; \
         exec after containerd restart p50 {} max {}",
        findings.leaks,
        findings.restarts,
        findings.duplicates,
        ms_or_none(&findings.api_back, 50),
        ms_or_none(&findings.api_back, 100),
        ms_or_none(&findings.exec_after_restart, 50),
        ms_or_none(&findings.exec_after_restart, 100),
    );
    if findings.problems.is_empty() {
        return Ok(());
    }
    for problem in &findings.problems {
        println!("  {problem}");
    }
    keep_logs(containerd, &agent);
    anyhow::bail!("{} problems found", findings.problems.len())
}

/// Copies the agent's and containerd's logs out of their directories
/// (removed on exit), so what was found can be traced.
fn keep_logs(containerd: &PrivateContainerd, agent: &AgentProcess) {
    let dir = std::env::temp_dir().join(format!("berth-bench-faults-{}", std::process::id()));
    let kept = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(dir.join("agent.log"), agent.agent_log())?;
        std::fs::copy(
            containerd.dir().join("containerd.log"),
            dir.join("containerd.log"),
        )
        .map(drop)
    });
    match kept {
        Ok(()) => println!("agent and containerd logs kept in {}", dir.display()),
        Err(e) => println!("could not keep the logs in {}: {e}", dir.display()),
    }
}

fn ms_or_none(samples: &[Duration], p: usize) -> String {
    match samples.is_empty() {
        true => "-".into(),
        false => format!("{:.0} ms", ms(percentile(samples, p))),
    }
}

/// `PREFIX-0` .. `PREFIX-(n-1)`.
fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A pod whose one container stops at once on SIGTERM, so deleting it takes
/// the graceful path without waiting out a grace period.
fn idle_pod(name: &str) -> String {
    manifest(&pod(
        name,
        "Always",
        vec![sh_container(
            "main",
            "trap 'exit 0' TERM; sleep 3600 & wait",
        )],
    ))
}

/// Creates the pods with one `berth apply` (returns once the API took them).
async fn apply_batch(agent: &AgentProcess, names: &[String]) {
    let docs: Vec<String> = names.iter().map(|n| idle_pod(n)).collect();
    agent.apply_yaml(&docs.join("\n---\n")).await;
}

/// Creates the pods and waits until they all run; returns how long it took,
/// and the pods.
async fn start_batch(
    agent: &AgentProcess,
    names: &[String],
) -> anyhow::Result<(Duration, Vec<Value>)> {
    let started = Instant::now();
    apply_batch(agent, names).await;
    let pods = wait_all_running(agent, names).await?;
    Ok((started.elapsed(), pods))
}

/// The pods of `default` by name, as the API lists them (empty when the API
/// does not answer).
async fn pods_by_name(agent: &AgentProcess) -> HashMap<String, Value> {
    let list = agent
        .api_get_json("/api/v1/namespaces/default/pods")
        .await
        .unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            (name.to_owned(), p.clone())
        })
        .collect()
}

/// Polls the pod list until every pod of `names` runs; returns them.
async fn wait_all_running(agent: &AgentProcess, names: &[String]) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + BATCH_TIMEOUT;
    loop {
        let pods = pods_by_name(agent).await;
        let running: Vec<Value> = names
            .iter()
            .filter_map(|n| pods.get(n).filter(|p| all_running(p)).cloned())
            .collect();
        if running.len() == names.len() {
            return Ok(running);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} pods running after {BATCH_TIMEOUT:?}",
            running.len(),
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `berth delete pod NAMES... --wait`; returns how long it took.
async fn delete_batch(agent: &AgentProcess, names: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut args = vec!["delete", "pod"];
    args.extend(names.iter().map(String::as_str));
    args.push("--wait");
    let out = tokio::time::timeout(BATCH_TIMEOUT, agent.cli(&args))
        .await
        .with_context(|| format!("pods not deleted within {BATCH_TIMEOUT:?}"))?;
    anyhow::ensure!(
        out.status.success(),
        "berth delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(started.elapsed())
}

/// The sum of every container's restartCount.
fn restarts_of<'a>(pods: impl IntoIterator<Item = &'a Value>) -> i64 {
    pods.into_iter().map(|p| restart_count(p, "main")).sum()
}

/// The agent's open descriptors and resident memory.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    fds: usize,
    rss_kib: u64,
}

impl Footprint {
    fn of(agent: &AgentProcess) -> Self {
        let pid = agent.pid().expect("the agent runs");
        Self {
            fds: fd_count(pid),
            rss_kib: rss_kib(pid),
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The before/after table of a phase: the agent's footprint, then every
/// leak counter with what it gained.
fn print_table(
    title: &str,
    before: (&Residue, Footprint),
    after: (&Residue, Footprint),
    extra: &[(&str, String, String)],
) {
    println!();
    println!("{title}");
    println!(
        "  {:<24} {:>10} {:>10} {:>7}",
        "", "before", "after", "leaked"
    );
    println!(
        "  {:<24} {:>10} {:>10}",
        "agent RSS",
        mib(before.1.rss_kib),
        mib(after.1.rss_kib)
    );
    println!(
        "  {:<24} {:>10} {:>10}",
        "agent fds", before.1.fds, after.1.fds
    );
    for (label, b, a) in extra {
        println!("  {label:<24} {b:>10} {a:>10}");
    }
    for ((name, b), (_, a)) in before.0.counters().into_iter().zip(after.0.counters()) {
        println!("  {name:<24} {b:>10} {a:>10} {:>7}", a.saturating_sub(b));
    }
}
