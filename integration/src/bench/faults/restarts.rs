//! containerd restarts under running pods: the shims keep the containers,
//! so no container may restart or run twice, and exec must work as soon as
//! containerd answers again.

use std::time::Duration;

use berth_integration::residue::Residue;
use berth_integration::{all_running, running_tasks_by_owner, shims};
use berth_testkit::{AgentProcess, PrivateContainerd};
use tokio::time::Instant;

use super::{
    delete_batch, names, pods_by_name, print_table, restarts_of, start_batch, Findings, Footprint,
    Options, SETTLE,
};
use crate::measure::{ms, percentile};

/// How long exec may keep failing after containerd answers before the
/// round gives up on it.
const EXEC_DEADLINE: Duration = Duration::from_secs(30);
/// How long every pod is watched after a restart: a wait taken for an exit
/// restarts its container at once.
const WATCH: Duration = Duration::from_secs(5);

pub async fn run(
    containerd: &mut PrivateContainerd,
    agent: &AgentProcess,
    baseline: &Residue,
    options: &Options,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let names = names("ctrd", options.pods);
    for chunk in names.chunks(options.batch) {
        start_batch(agent, chunk).await?;
    }
    let before = Footprint::of(agent);
    let running_before = Residue::of(agent);
    let owners_before = running_tasks_by_owner(agent);

    println!();
    println!(
        "containerd restarts: {} with {} pods running",
        options.restarts, options.pods
    );
    println!(
        "  {:>7} {:>11} {:>9} {:>11} {:>5} {:>6}",
        "restart", "exec after", "restarts", "not running", "dups", "shims"
    );
    let mut exec_after = Vec::new();
    let (mut restarts, mut duplicates, mut not_running) = (0, 0, 0);
    for r in 0..options.restarts {
        containerd.restart().await;
        let answering = Instant::now();
        let target = &names[r % names.len()];
        let exec = loop {
            let out = agent.cli(&["exec", target, "--", "true"]).await;
            if out.status.success() {
                break Some(answering.elapsed());
            }
            if answering.elapsed() > EXEC_DEADLINE {
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                findings.problems.push(format!(
                    "containerd restart {r}: exec into {target} failing after {EXEC_DEADLINE:?}: {err}"
                ));
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        exec_after.extend(exec);

        let (mut round_restarts, mut round_down) = (0, 0);
        let watch_until = Instant::now() + WATCH;
        while Instant::now() < watch_until {
            let pods = pods_by_name(agent).await;
            let ours: Vec<_> = names.iter().filter_map(|n| pods.get(n)).collect();
            round_restarts = round_restarts.max(restarts_of(ours.iter().copied()));
            round_down =
                round_down.max(names.len() - ours.iter().filter(|p| all_running(p)).count());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let owners = running_tasks_by_owner(agent);
        let dups: usize = owners.values().map(|n| n.saturating_sub(1)).sum();
        let shims_now = shims(agent.namespace());
        println!(
            "  {r:>7} {:>8} ms {round_restarts:>9} {round_down:>11} {dups:>5} {shims_now:>6}",
            exec.map_or("-".into(), |d| format!("{:.0}", ms(d))),
        );
        if shims_now != running_before.shims {
            findings.problems.push(format!(
                "containerd restart {r}: {shims_now} shims, {} before",
                running_before.shims
            ));
        }
        if owners.len() != owners_before.len() {
            findings.problems.push(format!(
                "containerd restart {r}: {} containers running, {} before",
                owners.len(),
                owners_before.len()
            ));
        }
        // restartCount only grows: the latest count is the total so far.
        restarts = round_restarts;
        duplicates += dups;
        not_running += round_down;
    }
    let during = Footprint::of(agent);
    let running_after = Residue::of(agent);

    delete_batch(agent, &names).await?;
    let residue = Residue::settled(agent, baseline, SETTLE).await;
    let after = Footprint::of(agent);

    print_table(
        "containerd restarts: before / after (pods running)",
        (&running_before, before),
        (&running_after, during),
        &[],
    );
    print_table(
        "containerd restarts: before the pods / after deleting them",
        (baseline, before),
        (&residue, after),
        &[],
    );
    println!(
        "  exec after containerd answers: p50 {:.0} ms, max {:.0} ms; restarts {restarts}; \
         duplicates {duplicates}",
        ms(percentile(&exec_after, 50)),
        ms(percentile(&exec_after, 100)),
    );

    findings.exec_after_restart.extend(exec_after);
    findings.leaked("containerd restarts", &residue.excess_over(baseline));
    if restarts > 0 {
        findings.restarts += restarts;
        findings.problems.push(format!(
            "containerd restarts: {restarts} container restarts"
        ));
    }
    if duplicates > 0 {
        findings.duplicates += duplicates;
        findings
            .problems
            .push(format!("containerd restarts: {duplicates} duplicate tasks"));
    }
    if not_running > 0 {
        findings.problems.push(format!(
            "containerd restarts: pods seen not running {not_running} times"
        ));
    }
    Ok(())
}
