//! Cold pulls from a registry on loopback: `berth image pull` (the client,
//! the agent, oci-client, containerd's content store and unpack) next to
//! `ctr pull` (containerd's own fetch and unpack) on the same containerd.
//! Every pull is of an image neither has seen: each has its own random,
//! incompressible layer, so no blob is shared.

use std::time::Duration;

use berth_testkit::registry::LocalRegistry;
use berth_testkit::{AgentOptions, AgentProcess, PrivateContainerd};
use tokio::time::Instant;

use crate::measure::{ms, percentile};

pub async fn run(containerd: &PrivateContainerd, n: usize, layer_mib: usize) -> anyhow::Result<()> {
    let Some(registry) = LocalRegistry::start_or_skip(None).await else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("registries.yaml");
    std::fs::write(
        &config,
        format!(
            "registries: {{\"{}\": {{plainHttp: true}}}}\n",
            registry.host()
        ),
    )?;
    let agent = AgentProcess::start_with(
        containerd,
        AgentOptions {
            extra_args: vec!["--registry-config".into(), config.display().to_string()],
            ..AgentOptions::default()
        },
    )
    .await;

    println!("pushing {} images with a {layer_mib} MiB layer each", 2 * n);
    let mut tags = Vec::new();
    for i in 0..2 * n {
        let archive = dir.path().join(format!("bench-{i}.tar"));
        let mut layer = vec![0u8; layer_mib << 20];
        rand::fill(&mut layer[..]);
        let image = berth_testkit::busybox_image("bench").file("data.bin", layer, 0o644);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&archive)?);
        image.write_oci_archive(&mut out)?;
        drop(out);
        let tag = format!("bench:{i}");
        registry.push(&archive, &tag).await;
        tags.push(registry.reference(&tag));
    }

    let (mut berth, mut ctr) = (Vec::new(), Vec::new());
    for i in 0..n {
        // Alternate, so that neither always runs on a warmer machine.
        let started = Instant::now();
        agent.cli_ok(&["image", "pull", &tags[2 * i]]).await;
        berth.push(started.elapsed());
        let started = Instant::now();
        let out = agent.ctr(&["images", "pull", "--plain-http", &tags[2 * i + 1]]);
        ctr.push(started.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "ctr pull: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    println!();
    println!("{:<36} {:>9} {:>9} {:>5}", "", "p50 ms", "max ms", "n");
    let row = |label: &str, samples: &[Duration]| {
        println!(
            "{label:<36} {:>9.1} {:>9.1} {:>5}",
            ms(percentile(samples, 50)),
            ms(percentile(samples, 100)),
            samples.len()
        );
    };
    row("berth image pull (cold)", &berth);
    row("ctr images pull --plain-http (cold)", &ctr);
    let base = percentile(&ctr, 50);
    if !base.is_zero() {
        println!(
            "ratio p50 berth/ctr: {:.2}x",
            percentile(&berth, 50).as_secs_f64() / base.as_secs_f64()
        );
    }
    Ok(())
}
