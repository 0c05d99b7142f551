//! Small builders for table tests.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, EnvVar, EnvVarSource, ObjectFieldSelector, Pod,
    PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// A pod named `name` in `default` with one container `c` (busybox).
pub fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container("c", "busybox")],
            ..Default::default()
        }),
        status: None,
    }
}

/// A pod with the given init and regular containers.
pub fn pod_with(name: &str, init: Vec<Container>, containers: Vec<Container>) -> Pod {
    let mut p = pod(name);
    let spec = p.spec.as_mut().unwrap();
    spec.init_containers = (!init.is_empty()).then_some(init);
    spec.containers = containers;
    p
}

pub fn container(name: &str, image: &str) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        ..Default::default()
    }
}

pub fn sidecar(name: &str) -> Container {
    Container {
        restart_policy: Some("Always".into()),
        ..container(name, "busybox")
    }
}

pub fn spec_with(init: Vec<Container>, containers: Vec<Container>, policy: &str) -> PodSpec {
    PodSpec {
        init_containers: (!init.is_empty()).then_some(init),
        containers,
        restart_policy: Some(policy.into()),
        ..Default::default()
    }
}

pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: path.into(),
            }),
            ..Default::default()
        }),
    }
}

/// Seconds since the epoch as an API time.
pub fn at(secs: i64) -> Time {
    Time(Timestamp::from_second(secs).unwrap())
}

fn status(name: &str, state: ContainerState) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        state: Some(state),
        ..Default::default()
    }
}

pub fn running(name: &str) -> ContainerStatus {
    let mut s = status(
        name,
        ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(at(1_000)),
            }),
            ..Default::default()
        },
    );
    s.started = Some(true);
    s
}

pub fn ready(name: &str) -> ContainerStatus {
    ContainerStatus {
        ready: true,
        ..running(name)
    }
}

/// Running but not yet started (startup probe pending).
pub fn running_unstarted(name: &str) -> ContainerStatus {
    ContainerStatus {
        started: Some(false),
        ..running(name)
    }
}

pub fn waiting(name: &str, reason: &str) -> ContainerStatus {
    let mut s = status(
        name,
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: (!reason.is_empty()).then(|| reason.into()),
                message: None,
            }),
            ..Default::default()
        },
    );
    s.started = Some(false);
    s
}

pub fn terminated_state(code: i32, reason: &str) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: code,
            reason: (!reason.is_empty()).then(|| reason.into()),
            started_at: Some(at(1_000)),
            finished_at: Some(at(2_000)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn terminated(name: &str, code: i32, reason: &str) -> ContainerStatus {
    let mut s = status(name, terminated_state(code, reason));
    s.started = Some(false);
    // The kubelet marks a regular init container ready once it exited 0.
    s.ready = false;
    s
}

/// `status` with a previous termination in `lastState`.
pub fn after_exit(mut status: ContainerStatus, code: i32) -> ContainerStatus {
    status.last_state = Some(terminated_state(
        code,
        if code == 0 { "Completed" } else { "Error" },
    ));
    status
}

pub fn with_status(mut pod: Pod, status: PodStatus) -> Pod {
    pod.status = Some(status);
    pod
}
