use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::testutil::{
    after_exit, at, container, pod_with, ready, running, running_unstarted, sidecar, terminated,
    waiting, with_status,
};

fn cond(type_: &str, status: &str) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        ..Default::default()
    }
}

fn phase_status(
    phase: &str,
    init: Vec<ContainerStatus>,
    regular: Vec<ContainerStatus>,
) -> PodStatus {
    PodStatus {
        phase: Some(phase.into()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: (!regular.is_empty()).then_some(regular),
        ..Default::default()
    }
}

fn two() -> Vec<Container> {
    vec![container("a", "busybox"), container("b", "busybox")]
}

fn inits(n: usize) -> Vec<Container> {
    (1..=n)
        .map(|i| container(&format!("i{i}"), "busybox"))
        .collect()
}

fn signal(mut s: ContainerStatus, sig: i32) -> ContainerStatus {
    let t = s.state.as_mut().unwrap().terminated.as_mut().unwrap();
    t.signal = Some(sig);
    s
}

fn ok_init(name: &str) -> ContainerStatus {
    ContainerStatus {
        ready: true,
        ..terminated(name, 0, "Completed")
    }
}

struct Case {
    name: &'static str,
    pod: Pod,
    ready: &'static str,
    status: &'static str,
}

fn case(
    name: &'static str,
    init: Vec<Container>,
    status: PodStatus,
    ready: &'static str,
    want: &'static str,
) -> Case {
    Case {
        name,
        pod: with_status(pod_with("p", init, two()), status),
        ready,
        status: want,
    }
}

fn cases() -> Vec<Case> {
    let deleting = |mut c: Case| {
        c.pod.metadata.deletion_timestamp = Some(at(5));
        c
    };
    let mut gated = phase_status("Pending", vec![], vec![]);
    gated.conditions = Some(vec![PodCondition {
        reason: Some("SchedulingGated".into()),
        ..cond("PodScheduled", "False")
    }]);
    let mut completed_ready = phase_status(
        "Running",
        vec![],
        vec![ready("a"), terminated("b", 0, "Completed")],
    );
    completed_ready.conditions = Some(vec![cond("Ready", "True")]);
    let mut evicted = phase_status("Failed", vec![], vec![]);
    evicted.reason = Some("Evicted".into());
    let mut node_lost = phase_status("Running", vec![], vec![ready("a"), ready("b")]);
    node_lost.reason = Some("NodeLost".into());
    let mut sidecar_crash = phase_status(
        "Running",
        vec![after_exit(waiting("s", "CrashLoopBackOff"), 1)],
        vec![ready("a"), ready("b")],
    );
    sidecar_crash.conditions = Some(vec![cond("Initialized", "True")]);
    vec![
        case(
            "pending without statuses",
            vec![],
            phase_status("Pending", vec![], vec![]),
            "0/2",
            "Pending",
        ),
        case(
            "creating",
            vec![],
            phase_status(
                "Pending",
                vec![],
                vec![
                    waiting("a", "ContainerCreating"),
                    waiting("b", "ContainerCreating"),
                ],
            ),
            "0/2",
            "ContainerCreating",
        ),
        case(
            "running, all ready",
            vec![],
            phase_status("Running", vec![], vec![ready("a"), ready("b")]),
            "2/2",
            "Running",
        ),
        case(
            "running, one not ready",
            vec![],
            phase_status("Running", vec![], vec![ready("a"), running("b")]),
            "1/2",
            "Running",
        ),
        case(
            "crash loop",
            vec![],
            phase_status(
                "Running",
                vec![],
                vec![ready("a"), after_exit(waiting("b", "CrashLoopBackOff"), 1)],
            ),
            "1/2",
            "CrashLoopBackOff",
        ),
        case(
            "first container in spec order wins",
            vec![],
            phase_status(
                "Pending",
                vec![],
                vec![
                    waiting("a", "CrashLoopBackOff"),
                    waiting("b", "ImagePullBackOff"),
                ],
            ),
            "0/2",
            "CrashLoopBackOff",
        ),
        case(
            "config error",
            vec![],
            phase_status(
                "Pending",
                vec![],
                vec![ready("a"), waiting("b", "CreateContainerConfigError")],
            ),
            "1/2",
            "CreateContainerConfigError",
        ),
        case(
            "completed",
            vec![],
            phase_status(
                "Succeeded",
                vec![],
                vec![
                    terminated("a", 0, "Completed"),
                    terminated("b", 0, "Completed"),
                ],
            ),
            "0/2",
            "Completed",
        ),
        case(
            "error",
            vec![],
            phase_status(
                "Failed",
                vec![],
                vec![terminated("a", 1, "Error"), terminated("b", 0, "Completed")],
            ),
            "0/2",
            "Error",
        ),
        // The walk is backwards, so the first container's reason is the one shown.
        case(
            "error hidden behind an earlier Completed",
            vec![],
            phase_status(
                "Failed",
                vec![],
                vec![terminated("a", 0, "Completed"), terminated("b", 1, "Error")],
            ),
            "0/2",
            "Completed",
        ),
        case(
            "oom",
            vec![],
            phase_status(
                "Running",
                vec![],
                vec![ready("a"), terminated("b", 137, "OOMKilled")],
            ),
            "1/2",
            "OOMKilled",
        ),
        case(
            "exit code without reason",
            vec![],
            phase_status(
                "Failed",
                vec![],
                vec![terminated("a", 2, ""), terminated("b", 0, "Completed")],
            ),
            "0/2",
            "ExitCode:2",
        ),
        case(
            "signal without reason",
            vec![],
            phase_status(
                "Failed",
                vec![],
                vec![
                    signal(terminated("a", 137, ""), 9),
                    terminated("b", 0, "Completed"),
                ],
            ),
            "0/2",
            "Signal:9",
        ),
        case(
            "completed while another runs, Ready",
            vec![],
            completed_ready,
            "1/2",
            "Running",
        ),
        case(
            "completed while another runs, not Ready",
            vec![],
            phase_status(
                "Running",
                vec![],
                vec![ready("a"), terminated("b", 0, "Completed")],
            ),
            "1/2",
            "NotReady",
        ),
        case(
            "init 0/2",
            inits(2),
            phase_status(
                "Pending",
                vec![
                    waiting("i1", "PodInitializing"),
                    waiting("i2", "PodInitializing"),
                ],
                vec![
                    waiting("a", "PodInitializing"),
                    waiting("b", "PodInitializing"),
                ],
            ),
            "0/2",
            "Init:0/2",
        ),
        case(
            "init 1/2 running",
            inits(2),
            phase_status(
                "Pending",
                vec![ok_init("i1"), running("i2")],
                vec![
                    waiting("a", "PodInitializing"),
                    waiting("b", "PodInitializing"),
                ],
            ),
            "0/2",
            "Init:1/2",
        ),
        case(
            "init waiting without reason",
            inits(1),
            phase_status("Pending", vec![waiting("i1", "")], vec![]),
            "0/2",
            "Init:0/1",
        ),
        case(
            "init error",
            inits(2),
            phase_status(
                "Failed",
                vec![ok_init("i1"), terminated("i2", 1, "Error")],
                vec![
                    waiting("a", "PodInitializing"),
                    waiting("b", "PodInitializing"),
                ],
            ),
            "0/2",
            "Init:Error",
        ),
        case(
            "init oom",
            inits(1),
            phase_status("Pending", vec![terminated("i1", 137, "OOMKilled")], vec![]),
            "0/2",
            "Init:OOMKilled",
        ),
        case(
            "init exit code",
            inits(1),
            phase_status("Pending", vec![terminated("i1", 3, "")], vec![]),
            "0/2",
            "Init:ExitCode:3",
        ),
        case(
            "init signal",
            inits(1),
            phase_status(
                "Pending",
                vec![signal(terminated("i1", 137, ""), 9)],
                vec![],
            ),
            "0/2",
            "Init:Signal:9",
        ),
        case(
            "init crash loop",
            inits(1),
            phase_status(
                "Pending",
                vec![after_exit(waiting("i1", "CrashLoopBackOff"), 1)],
                vec![],
            ),
            "0/2",
            "Init:CrashLoopBackOff",
        ),
        case(
            "init image pull",
            inits(1),
            phase_status("Pending", vec![waiting("i1", "ErrImagePull")], vec![]),
            "0/2",
            "Init:ErrImagePull",
        ),
        case(
            "inits done, containers running",
            inits(2),
            phase_status(
                "Running",
                vec![ok_init("i1"), ok_init("i2")],
                vec![ready("a"), ready("b")],
            ),
            "2/2",
            "Running",
        ),
        case(
            "sidecar not started",
            vec![sidecar("s")],
            phase_status(
                "Pending",
                vec![running_unstarted("s")],
                vec![
                    waiting("a", "PodInitializing"),
                    waiting("b", "PodInitializing"),
                ],
            ),
            "0/3",
            "Init:0/1",
        ),
        case(
            "sidecar started and ready",
            vec![sidecar("s")],
            phase_status("Running", vec![ready("s")], vec![ready("a"), ready("b")]),
            "3/3",
            "Running",
        ),
        case(
            "sidecar started, unready",
            vec![sidecar("s")],
            phase_status("Running", vec![running("s")], vec![ready("a"), ready("b")]),
            "2/3",
            "Running",
        ),
        case(
            "sidecar crash after init",
            vec![sidecar("s")],
            sidecar_crash,
            "2/3",
            "Init:CrashLoopBackOff",
        ),
        deleting(case(
            "terminating",
            vec![],
            phase_status("Running", vec![], vec![ready("a"), ready("b")]),
            "2/2",
            "Terminating",
        )),
        deleting(case(
            "deleted after completion",
            vec![],
            phase_status(
                "Succeeded",
                vec![],
                vec![
                    terminated("a", 0, "Completed"),
                    terminated("b", 0, "Completed"),
                ],
            ),
            "0/2",
            "Completed",
        )),
        deleting(case(
            "deleted on lost node",
            vec![],
            node_lost,
            "2/2",
            "Unknown",
        )),
        case("evicted", vec![], evicted, "0/2", "Evicted"),
        case("scheduling gated", vec![], gated, "0/2", "SchedulingGated"),
    ]
}

#[test]
fn ready_and_status_columns() {
    for c in cases() {
        assert_eq!(status_column(&c.pod), c.status, "STATUS of {:?}", c.name);
        assert_eq!(ready_column(&c.pod), c.ready, "READY of {:?}", c.name);
    }
}

fn restarted(mut s: ContainerStatus, count: i32, finished: i64) -> ContainerStatus {
    s.restart_count = count;
    let mut last = crate::testutil::terminated_state(1, "Error");
    last.terminated.as_mut().unwrap().finished_at = Some(at(finished));
    s.last_state = Some(last);
    s
}

#[test]
fn restarts_column_cases() {
    let now = at(10_000).0;
    let plain =
        |init: Vec<Container>, status: PodStatus| with_status(pod_with("p", init, two()), status);
    let cases = vec![
        (
            "no restarts",
            plain(
                vec![],
                phase_status("Running", vec![], vec![ready("a"), ready("b")]),
            ),
            "0",
        ),
        (
            "newest finish wins",
            plain(
                vec![],
                phase_status(
                    "Running",
                    vec![],
                    vec![
                        restarted(ready("a"), 1, 9_000),
                        restarted(ready("b"), 2, 9_700),
                    ],
                ),
            ),
            "3 (5m ago)",
        ),
        (
            "count without a finish time",
            plain(
                vec![],
                phase_status(
                    "Running",
                    vec![],
                    vec![
                        ContainerStatus {
                            restart_count: 4,
                            ..ready("a")
                        },
                        ready("b"),
                    ],
                ),
            ),
            "4",
        ),
        (
            "while initializing, init restarts count",
            plain(
                inits(1),
                phase_status(
                    "Pending",
                    vec![restarted(waiting("i1", "CrashLoopBackOff"), 5, 9_990)],
                    vec![],
                ),
            ),
            "5 (10s ago)",
        ),
        (
            "after init, finished inits no longer count",
            plain(
                inits(1),
                phase_status(
                    "Running",
                    vec![restarted(ok_init("i1"), 5, 9_000)],
                    vec![restarted(ready("a"), 1, 9_880), ready("b")],
                ),
            ),
            "1 (2m ago)",
        ),
        (
            "after init, sidecar restarts count",
            plain(
                vec![sidecar("s")],
                phase_status(
                    "Running",
                    vec![restarted(ready("s"), 2, 9_997)],
                    vec![ready("a"), ready("b")],
                ),
            ),
            "2 (3s ago)",
        ),
    ];
    for (name, pod, want) in cases {
        assert_eq!(restarts_column(&pod, now), want, "{name}");
    }
}

#[test]
fn age_column_cases() {
    let mut pod = crate::testutil::pod("p");
    assert_eq!(age_column(&pod, at(100).0), "<unknown>");
    let created = |p: &mut Pod, t: Time| p.metadata.creation_timestamp = Some(t);
    created(&mut pod, at(1_000));
    let cases = [
        (1_000, "0s"),
        (1_045, "45s"),
        (1_000 + 303, "5m3s"),
        (1_000 + 3 * 3600 + 1200, "3h20m"),
        (1_000 + 3 * 86_400, "3d"),
        (999, "0s"),
        (995, "<invalid>"),
    ];
    for (now, want) in cases {
        assert_eq!(age_column(&pod, at(now).0), want, "now {now}");
    }
}
