//! `kill -9` of the agent at a random point of a batch of pod starts, then
//! a new agent: its API must answer at once, the pods that ran must run on
//! untouched, none may run twice, and once the pods are deleted nothing of
//! the interrupted starts may be left.

use std::time::Duration;

use berth_integration::residue::Residue;
use berth_integration::{
    all_running, container_id, leases, logger_ids, restart_count, running_tasks_by_owner,
    sandboxes_pinned, shim_ids,
};
use berth_testkit::AgentProcess;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::{
    apply_batch, delete_batch, names, pods_by_name, print_table, restarts_of, wait_all_running,
    Findings, Footprint, Options, SETTLE,
};
use crate::measure::{ms, percentile};

pub async fn run(
    agent: &mut AgentProcess,
    baseline: &Residue,
    options: &Options,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let before = Footprint::of(agent);
    // The start window: from `berth apply` returning to the batch running.
    let calibration = names("crashcal", options.batch);
    apply_batch(agent, &calibration).await;
    let applied = Instant::now();
    wait_all_running(agent, &calibration).await?;
    let window = applied.elapsed();
    delete_batch(agent, &calibration).await?;
    Residue::settled(agent, baseline, SETTLE).await;

    println!();
    println!(
        "kill -9 during pod starts: {} rounds of {} pods, kill at a random point \
         of the {:.0} ms start window (seed {})",
        options.crashes,
        options.batch,
        ms(window),
        options.seed
    );
    println!(
        "  {:>5} {:>8} {:>8} {:>6} {:>8} {:>9} {:>9} {:>5} {:>5}",
        "round", "kill at", "running", "pins", "API back", "restarts", "mid-start", "dups", "leaks"
    );
    let mut rng = StdRng::seed_from_u64(options.seed);
    let (mut survivor_restarts, mut mid_start_restarts, mut duplicates) = (0, 0, 0);
    let mut api_back = Vec::new();
    let mut residue = *baseline;
    for round in 0..options.crashes {
        let names = names(&format!("crash{round}"), options.batch);
        let delay = Duration::from_millis(rng.random_range(0..=window.as_millis() as u64));
        apply_batch(agent, &names).await;
        tokio::time::sleep(delay).await;
        let at_kill = pods_by_name(agent).await;
        let pins = sandboxes_pinned(agent);
        agent.kill().await;
        let relaunched = Instant::now();
        agent.launch().await;
        let back = relaunched.elapsed();
        api_back.push(back);

        let after = wait_all_running(agent, &names).await?;
        let survivors: Vec<_> = at_kill
            .values()
            .filter(|p| names.iter().any(|n| p["metadata"]["name"] == n.as_str()))
            .filter(|p| all_running(p))
            .collect();
        let changes: Vec<String> = survivors
            .iter()
            .filter_map(|s| {
                let name = s["metadata"]["name"].as_str().unwrap_or_default();
                let now = after.iter().find(|p| p["metadata"]["name"] == name)?;
                let (id_before, id_now) = (container_id(s, "main"), container_id(now, "main"));
                let (count_before, count_now) =
                    (restart_count(s, "main"), restart_count(now, "main"));
                (id_before != id_now || count_before != count_now).then(|| {
                    format!(
                        "{name}: container {} -> {}, restartCount {count_before} -> {count_now}",
                        short(id_before),
                        short(id_now)
                    )
                })
            })
            .collect();
        let touched = changes.len() as i64;
        survivor_restarts += touched;
        let restarts = restarts_of(&after);
        mid_start_restarts += restarts - touched.min(restarts);
        let dups: usize = running_tasks_by_owner(agent)
            .values()
            .map(|n| n.saturating_sub(1))
            .sum();
        duplicates += dups;

        delete_batch(agent, &names).await?;
        residue = Residue::settled(agent, baseline, SETTLE).await;
        let excess = residue.excess_over(baseline);
        let round_leaks: usize = excess.iter().map(|(_, n)| n).sum();
        println!(
            "  {round:>5} {:>5} ms {:>8} {:>6} {:>5} ms {:>9} {:>9} {dups:>5} {round_leaks:>5}",
            delay.as_millis(),
            format!("{}/{}", survivors.len(), names.len()),
            pins,
            ms(back).round(),
            touched,
            restarts - touched.min(restarts),
        );
        for change in &changes {
            println!("        {change}");
        }
        if !excess.is_empty() {
            println!("        leaked: {excess:?}");
            explain_strays(agent);
            findings.leaked(&format!("kill -9 round {round}"), &excess);
        }
    }
    let after = Footprint::of(agent);

    print_table(
        "kill -9 during pod starts: before / after",
        (baseline, before),
        (&residue, after),
        &[],
    );
    println!(
        "  API back after kill -9: p50 {:.0} ms, max {:.0} ms; restarts of pods that ran: \
         {survivor_restarts}; restarts of pods mid-start (as the kubelet counts a container \
         it finds created but not started): {mid_start_restarts}; duplicates {duplicates}",
        ms(percentile(&api_back, 50)),
        ms(percentile(&api_back, 100)),
    );

    findings.api_back.extend(api_back);
    if survivor_restarts > 0 {
        findings.restarts += survivor_restarts;
        findings.problems.push(format!(
            "kill -9: {survivor_restarts} pods running at the kill restarted or changed container"
        ));
    }
    if duplicates > 0 {
        findings.duplicates += duplicates;
        findings
            .problems
            .push(format!("kill -9: {duplicates} duplicate tasks"));
    }
    Ok(())
}

fn short(id: Option<String>) -> String {
    id.map_or("none".into(), |id| id.chars().take(12).collect())
}

/// Names the leases left, and the containers whose shims and loggers are
/// left with what the agent logged about them, so a leak can be traced.
fn explain_strays(agent: &AgentProcess) {
    for lease in leases(agent) {
        println!("        lease left: {lease}");
    }
    let log = agent.agent_log();
    let mut ids = shim_ids(agent.namespace());
    ids.extend(logger_ids(agent.namespace()));
    ids.sort();
    ids.dedup();
    for id in ids {
        println!("        left running for container {id}; the agent logged:");
        for line in log.lines().filter(|l| l.contains(&id)).take(12) {
            println!("          {line}");
        }
    }
}
