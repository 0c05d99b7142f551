//! The planner as a table, as the kubelet's `TestComputePodActions`: each
//! row is a pod as the worker knows it and what one plan does with it,
//! written as one line per action.

use std::time::Duration;

use berth_runtime::{ContainerId, ContainerKind, ExitInfo, ImageInfo, PodRef};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerRestartRule, ContainerRestartRuleOnExitCodes, Lifecycle, LifecycleHandler,
    PodSpec,
};
use tokio::time::Instant;

use super::*;
use crate::backoff::{Backoff, BackoffPolicy};
use crate::record::{ContainerRecord, Instance, InstanceState};
use crate::restart_policy::PodPhase;
use crate::stage::Stage;

/// A pod as the worker would know it, built up one fact at a time.
struct Pod {
    spec: PodSpec,
    records: Vec<ContainerRecord>,
    /// The ephemeral containers behind the last records.
    ephemeral: Vec<Container>,
    stage: Stage,
    sandbox: SandboxView,
    backoff: Backoff,
    deadline: Option<Instant>,
    /// Running containers whose startup probe has not passed yet.
    unstarted: Vec<String>,
    eviction: Option<String>,
    /// The clock every fact counts from; the plan is made `at` after it.
    t0: Instant,
    at: Duration,
}

/// A running pod with `restartPolicy` and no containers yet.
fn pod(restart_policy: &str) -> Pod {
    Pod {
        spec: PodSpec {
            restart_policy: Some(restart_policy.into()),
            ..Default::default()
        },
        records: Vec::new(),
        ephemeral: Vec::new(),
        stage: Stage::Running,
        sandbox: SandboxView::Ready,
        backoff: Backoff::new(BackoffPolicy::default()),
        deadline: None,
        unstarted: Vec::new(),
        eviction: None,
        t0: Instant::now(),
        at: Duration::ZERO,
    }
}

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox".into()),
        ..Default::default()
    }
}

impl Pod {
    fn init(mut self, name: &str) -> Self {
        self.spec
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(container(name));
        let at = self.spec.init_containers.as_ref().map_or(0, Vec::len) - 1;
        self.records.insert(
            at,
            ContainerRecord::new(name, ContainerKind::Init, Default::default()),
        );
        self
    }

    fn sidecar(mut self, name: &str) -> Self {
        self = self.init(name);
        let spec = self
            .spec
            .init_containers
            .as_mut()
            .unwrap()
            .last_mut()
            .unwrap();
        spec.restart_policy = Some("Always".into());
        self.record(name).kind = ContainerKind::Sidecar;
        self
    }

    fn app(mut self, name: &str) -> Self {
        self.spec.containers.push(container(name));
        self.records.push(ContainerRecord::new(
            name,
            ContainerKind::Regular,
            Default::default(),
        ));
        self
    }

    /// An ephemeral container added to the pod (`kubectl debug`).
    fn debug(mut self, name: &str) -> Self {
        self.ephemeral.push(container(name));
        self.records.push(ContainerRecord::new(
            name,
            ContainerKind::Ephemeral,
            Default::default(),
        ));
        self
    }

    fn record(&mut self, name: &str) -> &mut ContainerRecord {
        self.records.iter_mut().find(|r| r.name == name).unwrap()
    }

    fn instance(&mut self, name: &str, state: InstanceState) -> &mut Instance {
        let rec = self.record(name);
        let attempt = rec.next_attempt();
        rec.current = Some(Instance {
            id: ContainerId(format!("{name}-{attempt}")),
            attempt,
            image: ImageInfo {
                reference: "busybox".into(),
                digest: String::new(),
                size: 0,
                config: Default::default(),
            },
            state,
            termination_message_file: None,
            spec_image: Some("busybox".into()),
            actuated: Default::default(),
        });
        rec.current.as_mut().unwrap()
    }

    /// `name` runs, but its startup probe has not passed yet.
    fn unstarted(mut self, name: &str) -> Self {
        self.unstarted.push(name.into());
        self
    }

    fn running(mut self, name: &str) -> Self {
        self.instance(
            name,
            InstanceState::Running {
                started_at: Timestamp::now(),
            },
        );
        self
    }

    /// Exited with `code` at `t0`.
    fn exited(mut self, name: &str, code: i32) -> Self {
        let observed = self.t0;
        self.instance(
            name,
            InstanceState::Exited {
                started_at: None,
                exit: ExitInfo {
                    exit_code: code,
                    finished_at: Timestamp::now(),
                    oom_killed: false,
                },
                reason: "Error".into(),
                message: None,
                observed,
            },
        );
        self
    }

    /// Runs from an image its spec no longer names.
    fn image_changed(mut self, name: &str) -> Self {
        self = self.running(name);
        self.record(name).current.as_mut().unwrap().spec_image = Some("busybox:old".into());
        self
    }

    /// Adopted from before berth kept the spec's image with the instance.
    fn image_unknown(mut self, name: &str) -> Self {
        self = self.running(name);
        self.record(name).current.as_mut().unwrap().spec_image = None;
        self
    }

    /// Killed for its new definition (the kill took).
    fn killed_for_new_image(mut self, name: &str) -> Self {
        self = self.exited(name, 137);
        self.record(name).definition_changed = true;
        self
    }

    /// A probe or hook of its current instance failed.
    fn failed(mut self, name: &str, reason: KillReason) -> Self {
        self.record(name).kill_pending = Some(reason);
        self
    }

    /// Restarted once before: the next crash is held back 10 s.
    fn crashed_before(mut self, name: &str) -> Self {
        self.backoff.advance((name.into(), "busybox".into()));
        self
    }

    /// Its last start failed; the next try is `secs` after `t0`.
    fn retry_in(mut self, name: &str, secs: u64) -> Self {
        let at = self.t0 + Duration::from_secs(secs);
        self.record(name).retry_at = Some(at);
        self
    }

    fn deadline_in(mut self, secs: u64) -> Self {
        self.deadline = Some(self.t0 + Duration::from_secs(secs));
        self
    }

    fn evicted(mut self, message: &str) -> Self {
        self.eviction = Some(message.into());
        self
    }

    fn at(mut self, secs: u64) -> Self {
        self.at = Duration::from_secs(secs);
        self
    }

    /// Not set up yet: no volumes, no sandbox.
    fn new_pod(mut self) -> Self {
        self.stage = Stage::Preparing;
        self.sandbox = SandboxView::Absent;
        self
    }

    fn sandbox(mut self, sandbox: SandboxView) -> Self {
        self.sandbox = sandbox;
        self
    }

    fn terminal(mut self) -> Self {
        self.stage = Stage::Finished {
            phase: PodPhase::Failed,
        };
        self
    }

    /// Being deleted with a grace period of `secs`.
    fn deleted(mut self, secs: u64) -> Self {
        self.stage = self.stage.terminating(Duration::from_secs(secs));
        self
    }

    /// Has a preStop hook.
    fn pre_stop(mut self, name: &str) -> Self {
        let all = self.spec.init_containers.iter_mut().flatten();
        let spec = all
            .chain(&mut self.spec.containers)
            .find(|c| c.name == name)
            .unwrap();
        spec.lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler::default()),
            ..Default::default()
        });
        self
    }

    fn spec_of(&mut self, name: &str) -> &mut Container {
        let all = self.spec.init_containers.iter_mut().flatten();
        all.chain(&mut self.spec.containers)
            .find(|c| c.name == name)
            .unwrap()
    }

    /// Sets the container's own `restartPolicy`.
    fn policy(mut self, name: &str, policy: &str) -> Self {
        self.spec_of(name).restart_policy = Some(policy.into());
        self
    }

    /// Adds a restart rule: `action` on exit codes `operator` `values`.
    fn rule(mut self, name: &str, action: &str, operator: &str, values: &[i32]) -> Self {
        let rule = ContainerRestartRule {
            action: action.into(),
            exit_codes: Some(ContainerRestartRuleOnExitCodes {
                operator: operator.into(),
                values: Some(values.to_vec()),
            }),
        };
        let spec = self.spec_of(name);
        spec.restart_policy_rules
            .get_or_insert_with(Vec::new)
            .push(rule);
        self
    }

    /// Exited once before its current instance ran.
    fn restarted(mut self, name: &str) -> Self {
        self = self.exited(name, 1);
        let rec = self.record(name);
        rec.previous = rec.current.take();
        self
    }

    /// A restart of all containers removed it; its next instance is `attempt`.
    fn was_reset(mut self, name: &str, attempt: u32) -> Self {
        self.record(name).reset = Some(attempt);
        self
    }

    /// The plan, one line per action.
    fn plan(&self) -> Vec<String> {
        let pod = PodRef {
            uid: "uid-1".into(),
            namespace: "default".into(),
            name: "web".into(),
        };
        let view = PodView {
            spec: &self.spec,
            pod: &pod,
            records: &self.records,
            ephemeral: &self.ephemeral,
            probed: self
                .records
                .iter()
                .map(|r| {
                    let started = !self.unstarted.contains(&r.name);
                    (started, started)
                })
                .collect(),
            stage: self.stage,
            sandbox: self.sandbox,
            backoff: &self.backoff,
            deadline: self.deadline,
            eviction: self.eviction.as_deref(),
        };
        let now = self.t0 + self.at;
        describe(&plan(&view, now), &self.records, now)
    }
}

fn describe(plan: &Plan, records: &[ContainerRecord], now: Instant) -> Vec<String> {
    let name = |i: usize| records[i].name.clone();
    let start = |what: &str, s: &Start| {
        let counted = if s.backoff.is_some() {
            " (back-off)"
        } else {
            ""
        };
        format!("start {what} {}{counted}", name(s.index))
    };
    let mut lines = Vec::new();
    lines.extend(plan.failure.as_ref().map(|f| format!("fail {f:?}")));
    lines.extend(plan.restart_all.iter().flatten().map(|r| {
        let kill = if r.kill { "kill and " } else { "" };
        format!("{kill}remove {}", name(r.index))
    }));
    lines.extend(
        plan.kills
            .iter()
            .map(|k| format!("kill {} {:?}", name(k.index), k.reason)),
    );
    if plan.prepare_volumes {
        lines.push("volumes".into());
    }
    lines.extend(plan.sandbox.map(|s| format!("sandbox {s:?}")));
    lines.extend(plan.ephemeral.iter().map(|s| start("ephemeral", s)));
    lines.extend(plan.init.iter().map(|s| start("init", s)));
    lines.extend(plan.sidecars.iter().map(|s| start("sidecar", s)));
    lines.extend(plan.regular.iter().map(|s| start("app", s)));
    lines.extend(
        plan.waiting
            .iter()
            .map(|(i, w)| format!("wait {} {}: {}", name(*i), w.reason, w.message)),
    );
    lines.extend(plan.finish.map(|p| format!("finish {}", p.as_str())));
    lines.extend(
        plan.wake_at
            .map(|at| format!("wake +{}s", (at - now).as_secs())),
    );
    if let Some(end) = &plan.terminate {
        lines.push(format!("grace {}s", end.stop.grace.as_secs()));
        lines.extend(
            end.stop
                .pre_stop
                .iter()
                .map(|&i| format!("preStop {}", name(i))),
        );
        let names = |list: &[usize]| list.iter().map(|&i| name(i)).collect::<Vec<_>>().join(", ");
        lines.extend(
            end.stop
                .turns
                .iter()
                .map(|turn| format!("stop {}", names(turn))),
        );
        if !end.remove.is_empty() {
            lines.push(format!("remove {}", names(&end.remove)));
        }
        lines.extend(end.sandbox.map(|s| format!("sandbox {s:?}")));
    }
    lines
}

const CRASH_LOOP: &str = "wait app CrashLoopBackOff: back-off 10s restarting failed container=app pod=web_default(uid-1)";

/// The rows: a name, the pod, the plan. One line each, so not formatted.
#[rustfmt::skip]
fn rows() -> Vec<(&'static str, Pod, Vec<&'static str>)> {
    vec![
        // restartPolicy for regular containers
        ("Always restarts exit 0", pod("Always").app("app").exited("app", 0), vec!["start app app (back-off)"]),
        ("Always restarts exit 1", pod("Always").app("app").exited("app", 1), vec!["start app app (back-off)"]),
        ("OnFailure leaves exit 0: Succeeded", pod("OnFailure").app("app").exited("app", 0), vec!["finish Succeeded"]),
        ("OnFailure restarts exit 1", pod("OnFailure").app("app").exited("app", 1), vec!["start app app (back-off)"]),
        ("Never leaves exit 0: Succeeded", pod("Never").app("app").exited("app", 0), vec!["finish Succeeded"]),
        ("Never leaves exit 1: Failed", pod("Never").app("app").exited("app", 1), vec!["finish Failed"]),
        ("a running pod needs nothing", pod("Always").app("app").running("app"), vec![]),
        ("Never waits for the last container", pod("Never").app("a").app("b").exited("a", 0).running("b"), vec![]),
        // a container's own restartPolicy and rules (ContainerRestartRules)
        ("container Always overrides the pod's Never", pod("Never").app("app").policy("app", "Always").exited("app", 0), vec!["start app app (back-off)"]),
        ("container Never overrides the pod's Always: Failed", pod("Always").app("app").policy("app", "Never").exited("app", 1), vec!["finish Failed"]),
        ("container OnFailure leaves exit 0: Succeeded", pod("Always").app("app").policy("app", "OnFailure").exited("app", 0), vec!["finish Succeeded"]),
        ("one container restarting keeps the pod going", pod("Never").app("a").app("b").policy("b", "Always").exited("a", 0).exited("b", 0), vec!["start app b (back-off)"]),
        ("rule: a matching In rule restarts", pod("Never").app("app").policy("app", "Never").rule("app", "Restart", "In", &[42]).exited("app", 42), vec!["start app app (back-off)"]),
        ("rule: no match, the container's policy decides", pod("Never").app("app").policy("app", "Never").rule("app", "Restart", "In", &[42]).exited("app", 1), vec!["finish Failed"]),
        ("rule: NotIn matches the other codes", pod("Never").app("app").policy("app", "Never").rule("app", "Restart", "NotIn", &[0]).exited("app", 3), vec!["start app app (back-off)"]),
        ("rule: NotIn leaves the listed ones", pod("Never").app("app").policy("app", "Never").rule("app", "Restart", "NotIn", &[0]).exited("app", 0), vec!["finish Succeeded"]),
        ("rule: the sidecar stays while a rule restarts the main one", pod("Never").sidecar("side").app("app").policy("app", "Never").rule("app", "Restart", "In", &[2]).running("side").exited("app", 2), vec!["start app app (back-off)"]),
        ("init rule: a matching failure restarts under Never", pod("Never").init("init").policy("init", "Never").rule("init", "Restart", "In", &[3]).app("app").exited("init", 3), vec!["start init init (back-off)"]),
        ("init Never fails the pod under Always", pod("Always").init("init").policy("init", "Never").app("app").exited("init", 1), vec![]),
        ("init OnFailure restarts a failure under Never", pod("Never").init("init").policy("init", "OnFailure").app("app").exited("init", 1), vec!["start init init (back-off)"]),
        // the RestartAllContainers action (RestartAllContainersOnContainerExits)
        ("restart all: a regular container's exit; the others, init containers, then it", pod("Never").init("init").sidecar("side").app("source").app("regular").policy("source", "Never").rule("source", "RestartAllContainers", "In", &[42]).exited("init", 0).running("side").exited("source", 42).running("regular"),
            vec!["kill and remove regular", "remove init", "kill and remove side", "remove source"]),
        ("restart all: a sidecar's exit, not its own restart", pod("Never").sidecar("side").sidecar("source").app("regular").rule("source", "RestartAllContainers", "In", &[42]).running("side").exited("source", 42).running("regular"),
            vec!["kill and remove regular", "kill and remove side", "remove source"]),
        ("restart all: an init container's exit; a container that never ran is left", pod("Never").sidecar("side").init("init").init("source").app("regular").policy("source", "Never").rule("source", "RestartAllContainers", "In", &[42]).running("side").exited("init", 0).exited("source", 42),
            vec!["kill and remove side", "remove init", "remove source"]),
        ("restart all: a restarted container's old instance goes too", pod("Always").app("source").app("regular").policy("source", "Always").rule("source", "RestartAllContainers", "In", &[42]).restarted("source").exited("source", 42).running("regular"),
            vec!["kill and remove regular", "remove source"]),
        ("restart all: two exits asking for it, both last", pod("Never").app("a").app("b").app("c").policy("a", "Never").policy("b", "Never").rule("a", "RestartAllContainers", "In", &[42]).rule("b", "RestartAllContainers", "NotIn", &[0]).exited("a", 42).exited("b", 3).exited("c", 0),
            vec!["remove c", "remove a", "remove b"]),
        ("restart all: a Never pod done but for it is not finished", pod("Never").app("a").app("source").policy("source", "Never").rule("source", "RestartAllContainers", "In", &[42]).exited("a", 1).exited("source", 42),
            vec!["remove a", "remove source"]),
        ("restart all: an unmatched exit, the container's policy decides", pod("Never").app("source").policy("source", "Never").rule("source", "RestartAllContainers", "In", &[42]).exited("source", 1), vec!["finish Failed"]),
        ("restart all: a rule needs the container's own policy", pod("Never").app("source").rule("source", "RestartAllContainers", "In", &[42]).exited("source", 42), vec!["finish Failed"]),
        ("restart all: removed, the pod runs again from its first init container, no back-off", pod("Never").init("init").app("source").was_reset("init", 1).was_reset("source", 1).crashed_before("source"), vec!["start init init"]),
        ("restart all: then the regular containers, no back-off", pod("Never").init("init").app("source").app("regular").was_reset("source", 1).was_reset("regular", 1).was_reset("init", 1).exited("init", 0).crashed_before("source"),
            vec!["start app source", "start app regular"]),
        ("restart all: the deadline comes first", pod("Never").app("source").policy("source", "Never").rule("source", "RestartAllContainers", "In", &[42]).exited("source", 42).deadline_in(3).at(3), vec!["fail DeadlineExceeded", "finish Failed"]),
        // restartPolicy for init containers
        ("init: Always restarts a failure", pod("Always").init("init").app("app").exited("init", 1), vec!["start init init (back-off)"]),
        ("init: OnFailure restarts a failure", pod("OnFailure").init("init").app("app").exited("init", 1), vec!["start init init (back-off)"]),
        ("init: Never leaves a failure, the pod fails", pod("Never").init("init").app("app").exited("init", 1), vec![]),
        // init order
        ("init: the first one starts alone", pod("Always").init("one").init("two").app("app"), vec!["start init one"]),
        ("init: one at a time", pod("Always").init("one").init("two").app("app").running("one"), vec![]),
        ("init: the next after a success", pod("Always").init("one").init("two").app("app").exited("one", 0), vec!["start init two"]),
        ("init: all done, the regular containers start", pod("Always").init("one").app("a").app("b").exited("one", 0), vec!["start app a", "start app b"]),
        ("init: not run again once a regular container started", pod("Always").init("one").app("app").exited("one", 1).running("app"), vec![]),
        // sidecars
        ("sidecar: starts before the next init", pod("Always").sidecar("side").init("one").app("app"), vec!["start sidecar side"]),
        ("sidecar: running lets the next init go", pod("Always").sidecar("side").init("one").app("app").running("side"), vec!["start init one"]),
        ("sidecar: running before its startup probe passed holds the next back", pod("Always").sidecar("side").app("app").running("side").unstarted("side"), vec![]),
        ("sidecar: in spec order", pod("Always").sidecar("s1").sidecar("s2").app("app").running("s1"), vec!["start sidecar s2"]),
        ("sidecar: restarted after exit 0 whatever the policy", pod("Never").sidecar("side").app("app").exited("side", 0).running("app"), vec!["start sidecar side (back-off)"]),
        ("sidecar: stopped once the main containers are done", pod("Never").sidecar("side").app("app").running("side").exited("app", 0), vec!["kill side SidecarsAfterMainDone"]),
        ("sidecar: not restarted once the main containers are done", pod("Never").sidecar("side").app("app").exited("side", 1).exited("app", 0), vec!["finish Succeeded"]),
        // CrashLoopBackOff and failed starts
        ("back-off: a crash inside the delay waits", pod("Always").app("app").exited("app", 1).crashed_before("app").at(1), vec![CRASH_LOOP, "wake +9s"]),
        ("back-off: restarted once the delay is over", pod("Always").app("app").exited("app", 1).crashed_before("app").at(10), vec!["start app app (back-off)"]),
        ("back-off: a failed start waits for its retry", pod("Always").app("app").retry_in("app", 10), vec!["wake +10s"]),
        ("back-off: a failed start is tried again on time", pod("Always").app("app").retry_in("app", 10).at(10), vec!["start app app"]),
        // image changes
        ("image change: killed and started again", pod("Always").app("app").app("side").image_changed("app").running("side"), vec!["kill app DefinitionChanged", "start app app"]),
        ("image change: restarted whatever the policy, no back-off", pod("Never").app("app").killed_for_new_image("app").crashed_before("app").at(1), vec!["start app app"]),
        ("image change: an instance of unknown spec is left alone", pod("Always").app("app").image_unknown("app"), vec![]),
        ("image change: a sidecar too", pod("Always").sidecar("side").app("app").image_changed("side").running("app"), vec!["kill side DefinitionChanged", "start sidecar side"]),
        ("image change: an init container with Never fails the pod", pod("Never").init("init").app("app").image_changed("init"), vec!["kill init DefinitionChanged"]),
        // failed probes and hooks
        ("probe: a failed liveness probe kills", pod("Always").app("app").running("app").failed("app", KillReason::Liveness), vec!["kill app Liveness"]),
        ("probe: a failed startup probe kills", pod("Never").app("app").running("app").failed("app", KillReason::Startup), vec!["kill app Startup"]),
        ("probe: a sidecar's failure kills it", pod("Always").sidecar("side").app("app").running("side").running("app").failed("side", KillReason::Liveness), vec!["kill side Liveness"]),
        ("probe: a verdict on an exited instance kills nothing", pod("Always").app("app").exited("app", 137).failed("app", KillReason::Liveness), vec!["start app app (back-off)"]),
        ("hook: a failed postStart kills", pod("OnFailure").app("app").running("app").failed("app", KillReason::PostStartFailed), vec!["kill app PostStartFailed"]),
        // activeDeadlineSeconds
        ("deadline: woken at it", pod("Always").app("app").running("app").deadline_in(30), vec!["wake +30s"]),
        ("deadline: passed, the pod fails and everything stops", pod("Always").sidecar("side").app("app").running("side").running("app").deadline_in(30).at(30),
            vec!["fail DeadlineExceeded", "kill side DeadlineExceeded", "kill app DeadlineExceeded", "finish Failed"]),
        ("deadline: passed before the sandbox exists, the pod fails", pod("Always").app("app").new_pod().deadline_in(3).at(3), vec!["fail DeadlineExceeded", "finish Failed"]),
        ("deadline: passed, nothing starts", pod("Always").app("app").exited("app", 1).deadline_in(30).at(31), vec!["fail DeadlineExceeded", "finish Failed"]),
        // eviction (the kubelet's evictPod)
        ("evicted: the pod fails and everything stops", pod("Always").sidecar("side").app("app").running("side").running("app").evicted("m"),
            vec!["fail Evicted(\"m\")", "kill side Evicted", "kill app Evicted", "finish Failed"]),
        ("evicted: no restart, whatever the policy", pod("Always").app("app").exited("app", 1).evicted("m"), vec!["fail Evicted(\"m\")", "finish Failed"]),
        ("evicted: a terminal pod stays as it is", pod("Never").app("app").exited("app", 1).terminal().evicted("m"), vec![]),
        ("evicted while deleted: the deletion", pod("Always").app("app").running("app").evicted("m").deleted(30),
            vec!["grace 30s", "stop app", "remove app", "sandbox Remove"]),
        // ephemeral containers (computePodActions' EphemeralContainersToStart)
        ("ephemeral: started once added", pod("Always").app("app").running("app").debug("dbg"), vec!["start ephemeral dbg"]),
        ("ephemeral: started before the pod is initialized", pod("Always").init("one").app("app").running("one").debug("dbg"), vec!["start ephemeral dbg"]),
        ("ephemeral: not before the sandbox exists", pod("Always").app("app").new_pod().debug("dbg"), vec!["volumes", "sandbox Create", "start app app"]),
        ("ephemeral: never restarted, whatever the policy", pod("Always").app("app").running("app").debug("dbg").exited("dbg", 1), vec![]),
        ("ephemeral: exit 0 is not restarted either", pod("Always").app("app").running("app").debug("dbg").exited("dbg", 0), vec![]),
        ("ephemeral: a running one needs nothing", pod("Always").app("app").running("app").debug("dbg").running("dbg"), vec![]),
        ("ephemeral: a failed start waits for its retry", pod("Always").app("app").running("app").debug("dbg").retry_in("dbg", 10), vec!["wake +10s"]),
        ("ephemeral: a failed start is tried again on time", pod("Always").app("app").running("app").debug("dbg").retry_in("dbg", 10).at(10), vec!["start ephemeral dbg"]),
        ("ephemeral: ignored for the phase: Succeeded while it runs, and stopped", pod("Never").app("app").exited("app", 0).debug("dbg").running("dbg"), vec!["kill dbg SidecarsAfterMainDone"]),
        ("ephemeral: an exited one leaves the pod Succeeded", pod("Never").app("app").exited("app", 0).debug("dbg").exited("dbg", 1), vec!["finish Succeeded"]),
        ("ephemeral: a failed one leaves a running pod Running", pod("Never").app("app").running("app").debug("dbg").exited("dbg", 1), vec![]),
        ("ephemeral: stopped with the pod", pod("Always").app("app").running("app").debug("dbg").running("dbg").deleted(30),
            vec!["grace 30s", "stop app, dbg", "remove app, dbg", "sandbox Remove"]),
        // the pod as a whole
        ("terminal: nothing is planned", pod("Always").app("app").exited("app", 1).deadline_in(0).terminal(), vec![]),
        ("new pod: volumes, sandbox, then the containers", pod("Always").app("a").app("b").new_pod(), vec!["volumes", "sandbox Create", "start app a", "start app b"]),
        ("new pod: volumes and sandbox before the first init", pod("Always").init("one").app("app").new_pod(), vec!["volumes", "sandbox Create", "start init one"]),
        ("sandbox: a failed creation is tried again", pod("Always").app("app").sandbox(SandboxView::Absent), vec!["sandbox Create", "start app app"]),
        ("dead sandbox: recreated", pod("Always").app("app").sandbox(SandboxView::Dead), vec!["sandbox Recreate", "start app app"]),
        ("dead sandbox under OnFailure: recreated, the exited container started again", pod("OnFailure").app("app").exited("app", 137).sandbox(SandboxView::Dead),
            vec!["sandbox Recreate", "start app app (back-off)"]),
        ("dead sandbox under Never after a run: none made, the pod ends", pod("Never").app("app").exited("app", 137).sandbox(SandboxView::Dead), vec!["finish Failed"]),
        ("dead sandbox under Never, its container still running: it waits for the exit", pod("Never").app("app").running("app").sandbox(SandboxView::Dead), vec![]),
        ("dead sandbox under Never before any run: made again", pod("Never").app("app").sandbox(SandboxView::Dead), vec!["sandbox Recreate", "start app app"]),
        // deletion (the kubelet's killPodWithSyncResult)
        ("delete: every running container at once, then containers and sandbox removed", pod("Always").app("a").app("b").running("a").running("b").deleted(30),
            vec!["grace 30s", "stop a, b", "remove a, b", "sandbox Remove"]),
        ("delete: the request's grace period, not the pod's", pod("Always").app("app").running("app").deleted(3),
            vec!["grace 3s", "stop app", "remove app", "sandbox Remove"]),
        ("delete: preStop first for the containers that have one", pod("Always").app("a").app("b").pre_stop("b").running("a").running("b").deleted(30),
            vec!["grace 30s", "preStop b", "stop a, b", "remove a, b", "sandbox Remove"]),
        ("delete with grace 0: no preStop, SIGKILL at once", pod("Always").app("app").pre_stop("app").running("app").deleted(0),
            vec!["grace 0s", "stop app", "remove app", "sandbox Remove"]),
        ("delete: sidecars after the regular containers, the last started first", pod("Always").sidecar("s1").sidecar("s2").app("app").pre_stop("s1").running("s1").running("s2").running("app").deleted(30),
            vec!["grace 30s", "preStop s1", "stop app", "stop s2", "stop s1", "remove s1, s2, app", "sandbox Remove"]),
        ("delete: exited containers are not stopped, only removed", pod("Never").app("a").app("b").exited("a", 0).running("b").deleted(30),
            vec!["grace 30s", "stop b", "remove a, b", "sandbox Remove"]),
        ("delete: a restarted container's previous instance is removed too", pod("Always").app("app").restarted("app").deleted(30),
            vec!["grace 30s", "remove app", "sandbox Remove"]),
        ("delete during init: the running init container stops, nothing starts", pod("Always").sidecar("side").init("one").app("app").running("side").running("one").deleted(30),
            vec!["grace 30s", "stop one", "stop side", "remove side, one", "sandbox Remove"]),
        ("delete before the sandbox exists: nothing to stop or remove", pod("Always").app("app").new_pod().deleted(30), vec!["grace 30s"]),
        ("delete with a dead sandbox: it goes with its containers", pod("Always").app("app").sandbox(SandboxView::Dead).deleted(30), vec!["grace 30s", "sandbox RemoveDead"]),
        ("delete a finished pod: nothing runs, everything is removed", pod("Never").app("app").exited("app", 1).terminal().deleted(30),
            vec!["grace 30s", "remove app", "sandbox Remove"]),
        ("delete past the deadline: the deletion, not the deadline", pod("Always").app("app").running("app").deadline_in(3).at(5).deleted(30),
            vec!["grace 30s", "stop app", "remove app", "sandbox Remove"]),
    ]
}

#[test]
fn plans() {
    let rows = rows();
    let mut failures = Vec::new();
    for (name, pod, want) in &rows {
        let got = pod.plan();
        if got != *want {
            failures.push(format!("{name}:\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
