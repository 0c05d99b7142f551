//! berth's test kit: busybox OCI images built from the host's static busybox,
//! a private containerd per test, and the real `berth` binary driven as a user
//! would drive it.
//!
//! Set-up failures panic with context: this crate only ever runs inside tests
//! and test tools (`ControlPlane::start` returns its error instead, for the
//! cluster-up tool).
//!
//! # Layout
//!
//! - `containerd`: `PrivateContainerd` (start, restart, clean-up on drop).
//! - `agent`: `AgentProcess`, the real binary with private paths;
//!   `api_watch`: its local API without a CLI process (a request with a
//!   body, a watch read event by event), for the benchmark.
//! - `control_plane`: `ControlPlane`, a real kube-apiserver with etcd, the
//!   controller manager and the scheduler, and node credentials for it.
//! - `panic_report`: a failing test's message beside its `FAILED` line.
//! - `busybox`: test images; `registry`, `proxy`: a registry and a faulty
//!   link to it; `net`: a pod network per test; `mounts`, `process`: clean-up.

pub mod agent;
pub mod api_watch;
pub mod busybox;
pub mod containerd;
pub mod control_plane;
pub mod mounts;
pub mod net;
pub mod node_netns;
pub mod panic_report;
pub mod process;
pub mod proxy;
pub mod registry;

pub use agent::{AgentOptions, AgentProcess};
pub use busybox::{busybox_image, busybox_image_from, write_busybox_archive};
pub use containerd::{CriPlugin, PrivateContainerd};
pub use control_plane::ControlPlane;
pub use node_netns::NodeNetns;
pub use registry::{LocalRegistry, PushOptions};

/// The image reference the test kit imports into every agent's namespace
/// (a tag other than `latest`, so the default pull policy is IfNotPresent).
pub const TEST_IMAGE: &str = "berth.test/busybox:1";
