//! Churn: pods created and deleted a batch at a time. Nothing may be left,
//! and the agent's descriptors must come back to where they were.

use std::time::Duration;

use berth_integration::residue::Residue;
use berth_testkit::AgentProcess;
use tokio::time::Instant;

use super::{
    delete_batch, mib, names, print_table, restarts_of, start_batch, Findings, Footprint, Options,
    SETTLE,
};
use crate::measure::{ms, percentile};

pub async fn run(
    agent: &AgentProcess,
    baseline: &Residue,
    options: &Options,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let batches = options.churn.div_ceil(options.batch);
    println!();
    println!(
        "churn: {} pods, {} at once ({batches} batches)",
        options.churn, options.batch
    );
    let before = Footprint::of(agent);
    let (mut starts, mut deletes) = (Vec::new(), Vec::new());
    let mut peak = before;
    let mut restarts = 0;
    let report_every = batches.div_ceil(10);
    for b in 0..batches {
        let size = options.batch.min(options.churn - b * options.batch);
        let names = names(&format!("churn{b}"), size);
        let (took, pods) = start_batch(agent, &names).await?;
        starts.push(took);
        restarts += restarts_of(&pods);
        let now = Footprint::of(agent);
        peak.fds = peak.fds.max(now.fds);
        peak.rss_kib = peak.rss_kib.max(now.rss_kib);
        deletes.push(delete_batch(agent, &names).await?);
        if (b + 1) % report_every == 0 || b + 1 == batches {
            let now = Footprint::of(agent);
            println!(
                "  {:>5} pods done: agent fds {}, RSS {}",
                ((b + 1) * options.batch).min(options.churn),
                now.fds,
                mib(now.rss_kib)
            );
        }
    }
    let residue = Residue::settled(agent, baseline, SETTLE).await;
    let after = settled_footprint(agent, before.fds).await;

    print_table(
        "churn: before / after",
        (baseline, before),
        (&residue, after),
        &[
            ("agent fds, peak", String::new(), peak.fds.to_string()),
            ("agent RSS, peak", String::new(), mib(peak.rss_kib)),
            ("restarts", String::new(), restarts.to_string()),
        ],
    );
    println!(
        "  batch start p50 {:.0} ms p90 {:.0} ms; delete p50 {:.0} ms p90 {:.0} ms",
        ms(percentile(&starts, 50)),
        ms(percentile(&starts, 90)),
        ms(percentile(&deletes, 50)),
        ms(percentile(&deletes, 90)),
    );

    findings.leaked("churn", &residue.excess_over(baseline));
    if after.fds > before.fds {
        let grown = after.fds - before.fds;
        findings.leaks += grown;
        findings
            .problems
            .push(format!("churn: agent fds grew by {grown}"));
    }
    if restarts > 0 {
        findings.restarts += restarts;
        findings
            .problems
            .push(format!("churn: {restarts} container restarts"));
    }
    Ok(())
}

/// The footprint once the descriptors are back to `fds` or `SETTLE` passed:
/// a connection the API just served may still be closing.
async fn settled_footprint(agent: &AgentProcess, fds: usize) -> Footprint {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = Footprint::of(agent);
        if now.fds <= fds || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
