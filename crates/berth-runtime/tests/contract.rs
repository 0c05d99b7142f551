//! The in-memory runtime keeps the runtime contract (the same checks run
//! against containerd in `berth-containerd/tests/contract.rs`).

use std::time::Duration;

use berth_runtime::contract::{self, Behaviour, Subject};
use berth_runtime::fake::{FakeRuntime, Script};
use berth_runtime::*;

struct Fake(FakeRuntime);

const IMAGE: &str = "contract.local/image:1";

impl Subject for Fake {
    type Runtime = FakeRuntime;

    fn runtime(&self) -> &FakeRuntime {
        &self.0
    }

    fn sandbox_config(&self, pod: &PodRef) -> SandboxConfig {
        contract::host_network_sandbox(pod, std::env::temp_dir())
    }

    fn container_config(&self, pod: &PodRef, name: &str, behaviour: Behaviour) -> ContainerConfig {
        // The fake's containers behave by name: one name per pod and behaviour.
        let name = format!("{}-{name}", pod.name);
        let script = match behaviour {
            Behaviour::Exits(code) => Script::exits(code, Duration::ZERO),
            Behaviour::RunsUntilKilled => Script {
                ignores_stop: true,
                ..Script::default()
            },
        };
        self.0.script(&name, script);
        let image = ImageInfo {
            reference: IMAGE.into(),
            digest: "sha256:00".into(),
            size: 0,
            config: ImageConfig::default(),
        };
        let log = std::env::temp_dir().join("contract.log");
        contract::plain_container(pod, &name, image, vec!["run".into()], log)
    }
}

#[tokio::test]
async fn the_in_memory_runtime_keeps_the_contract() {
    let fake = FakeRuntime::new();
    fake.add_image(IMAGE, ImageConfig::default());
    contract::check_all(&Fake(fake)).await;
}
