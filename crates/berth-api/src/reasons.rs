//! The kubelet's event reasons (`pkg/kubelet/events/event.go`, and the
//! handlers that record their own), one place for the worker, describe and
//! the tests.

/// A container was created (`CreatedContainer`).
pub const CREATED: &str = "Created";
/// A container was started (`StartedContainer`).
pub const STARTED: &str = "Started";
/// A container failed to be created or started, or an image to be pulled
/// (`FailedToCreateContainer`, `FailedToStartContainer`, `FailedToPullImage`).
pub const FAILED: &str = "Failed";
/// A container is being stopped (`KillingContainer`).
pub const KILLING: &str = "Killing";
/// A restart or a pull is held back (`BackOffStartContainer`, `BackOffPullImage`).
pub const BACK_OFF: &str = "BackOff";
/// An image pull began (`PullingImage`).
pub const PULLING: &str = "Pulling";
/// An image is there, pulled or present (`PulledImage`).
pub const PULLED: &str = "Pulled";
/// An absent image with pull policy Never (`ErrImageNeverPullPolicy`).
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
/// Warning: some of the pod's image pull secrets could not be read.
pub const FAILED_TO_RETRIEVE_IMAGE_PULL_SECRET: &str = "FailedToRetrieveImagePullSecret";
/// The pod's volumes could not be set up (`FailedMountVolume`).
pub const FAILED_MOUNT: &str = "FailedMount";
/// The sandbox could not be created (`FailedCreatePodSandBox`).
pub const FAILED_CREATE_POD_SANDBOX: &str = "FailedCreatePodSandBox";
/// The sandbox died and is made again (`SandboxChanged`).
pub const SANDBOX_CHANGED: &str = "SandboxChanged";
/// The pod's containers could not be stopped (`FailedToKillPod`).
pub const FAILED_KILL_POD: &str = "FailedKillPod";
/// A probe failed (`ContainerUnhealthy`).
pub const UNHEALTHY: &str = "Unhealthy";
/// A probe succeeded with a warning (`ContainerProbeWarning`).
pub const PROBE_WARNING: &str = "ProbeWarning";
/// A postStart hook failed (`FailedPostStartHook`).
pub const FAILED_POST_START_HOOK: &str = "FailedPostStartHook";
/// A preStop hook failed (`FailedPreStopHook`).
pub const FAILED_PRE_STOP_HOOK: &str = "FailedPreStopHook";
/// A pod ran past its `activeDeadlineSeconds` (`activeDeadlineHandler`).
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// The node evicted a pod: its status reason and the Warning event's
/// (kubelet `pkg/kubelet/eviction` `Reason`).
pub const EVICTED: &str = "Evicted";
/// ClusterFirst fell back to the host's resolver: no cluster DNS is set.
pub const MISSING_CLUSTER_DNS: &str = "MissingClusterDNS";
/// Image garbage collection freed less than it had to (`FreeDiskSpaceFailed`).
pub const FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";
/// Image garbage collection failed twice in a row (`ImageGCFailed`).
pub const IMAGE_GC_FAILED: &str = "ImageGCFailed";
/// A resize was accepted and is being applied (`ResizeStarted`).
pub const RESIZE_STARTED: &str = "ResizeStarted";
/// A resize is applied (`ResizeCompleted`).
pub const RESIZE_COMPLETED: &str = "ResizeCompleted";
/// A resize waits for room on the node (`ResizeDeferred`).
pub const RESIZE_DEFERRED: &str = "ResizeDeferred";
/// A resize the node can never apply (`ResizeInfeasible`).
pub const RESIZE_INFEASIBLE: &str = "ResizeInfeasible";
/// Applying an accepted resize failed (`ResizeError`).
pub const RESIZE_ERROR: &str = "ResizeError";
