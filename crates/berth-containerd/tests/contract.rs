//! containerd keeps the runtime contract (the same checks run against the
//! in-memory runtime in `berth-runtime/tests/contract.rs`), on a private
//! containerd. Skips like the other containerd tests.
//!
//! The test binary doubles as the container log writer, as in `runtime.rs`.

use berth_containerd::{Containerd, ContainerdConfig};
use berth_runtime::contract::{self, Behaviour, Subject};
use berth_runtime::*;
use berth_testkit::{busybox_image, PrivateContainerd, TEST_IMAGE};

/// Runs only when the shim spawned this binary as the log writer.
#[test]
fn logger_process_entry() {
    berth_testkit::containerd::serve_as_logger_if_spawned();
}

struct Real {
    runtime: Containerd,
    image: ImageInfo,
    log_dir: std::path::PathBuf,
}

impl Subject for Real {
    type Runtime = Containerd;

    fn runtime(&self) -> &Containerd {
        &self.runtime
    }

    fn sandbox_config(&self, pod: &PodRef) -> SandboxConfig {
        contract::host_network_sandbox(pod, self.log_dir.join(&pod.name))
    }

    fn container_config(&self, pod: &PodRef, name: &str, behaviour: Behaviour) -> ContainerConfig {
        let script = match behaviour {
            Behaviour::Exits(code) => format!("exit {code}"),
            Behaviour::RunsUntilKilled => "trap '' TERM; while true; do sleep 1; done".into(),
        };
        let log = self.log_dir.join(&pod.name).join(name).join("0.log");
        let args = vec!["sh".into(), "-c".into(), script];
        contract::plain_container(pod, name, self.image.clone(), args, log)
    }
}

#[tokio::test]
async fn containerd_keeps_the_contract() {
    let Some(daemon) = PrivateContainerd::start_or_skip().await else {
        return;
    };
    let config = ContainerdConfig {
        root_dir: daemon.dir().join("berth"),
        logger_binary: std::env::current_exe().unwrap(),
        ..daemon.runtime_config()
    };
    let runtime = Containerd::connect(config).await.expect("connect");
    let archive = daemon.dir().join("busybox.tar");
    busybox_image(TEST_IMAGE)
        .write_oci_archive(std::fs::File::create(&archive).unwrap())
        .unwrap();
    runtime
        .import_archive(&archive)
        .await
        .expect("import busybox");
    let image = runtime
        .image_status(TEST_IMAGE)
        .await
        .unwrap()
        .expect("busybox is present after import");
    let real = Real {
        runtime,
        image,
        log_dir: daemon.dir().join("logs"),
    };
    contract::check_all(&real).await;
}
