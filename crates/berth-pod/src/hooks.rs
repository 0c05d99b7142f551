//! Lifecycle hooks (docs/kubelet-semantics.md §2.5, §6): the `exec`, `httpGet` and
//! `sleep` handlers, and postStart, which holds a container (and every
//! container after it in spec order) until it returns. preStop runs inside the
//! kill path (kill.rs), within the grace period.

use berth_runtime::{ContainerId, ContainerKind, ContainerRuntime};
use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tracing::debug;

use crate::http_get;
use crate::plan::KillReason;
use crate::record::Waiting;
use crate::sink::{EventType, PodSink};
use crate::timeline::TimelineStep;
use crate::worker::Worker;

/// The kubelet's `User-Agent` for hook requests (`kube-lifecycle/<major>.<minor>`).
const HOOK_USER_AGENT: &str = "kube-lifecycle/1.33";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookKind {
    PostStart,
    PreStop,
}

/// One container's hook, with what its handler needs to run detached from the
/// worker (preStop runs in the kill task).
#[derive(Debug, Clone)]
pub(crate) struct Hook {
    handler: LifecycleHandler,
    /// The container's ports, for named `httpGet` ports.
    ports: Vec<ContainerPort>,
    /// The default `httpGet` host.
    pod_ip: Option<String>,
    container: String,
    /// `name_namespace(uid)`, for failure messages.
    pod: String,
}

impl Hook {
    /// What the handler does, for the timeline.
    pub(crate) fn describe(&self) -> String {
        let h = &self.handler;
        if let Some(exec) = &h.exec {
            format!("exec {:?}", exec.command.as_deref().unwrap_or_default())
        } else if let Some(http) = &h.http_get {
            let port = match &http.port {
                IntOrString::Int(n) => n.to_string(),
                IntOrString::String(s) => s.clone(),
            };
            let host = http
                .host
                .as_deref()
                .or(self.pod_ip.as_deref())
                .unwrap_or("");
            format!(
                "httpGet {}://{}:{port}{}",
                http.scheme
                    .as_deref()
                    .unwrap_or("HTTP")
                    .to_ascii_lowercase(),
                host,
                http.path.as_deref().unwrap_or("/")
            )
        } else if let Some(sleep) = &h.sleep {
            format!("sleep {}s", sleep.seconds)
        } else {
            "unsupported handler".into()
        }
    }

    /// Runs the handler. `Err` carries the kubelet's failure message, which
    /// the FailedPostStartHook / FailedPreStopHook event shows.
    pub(crate) async fn run<R: ContainerRuntime>(
        &self,
        rt: &R,
        id: &ContainerId,
    ) -> Result<(), String> {
        let (c, pod) = (&self.container, &self.pod);
        let h = &self.handler;
        if let Some(exec) = &h.exec {
            let command = exec.command.clone().unwrap_or_default();
            // The kubelet's ExecSync for hooks has no timeout.
            let (error, output) = match rt.exec(id, &command, None).await {
                Ok(out) if out.exit_code == 0 => return Ok(()),
                Ok(out) => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let error = format!(
                        "command '{}' exited with {}: {stderr}",
                        command.join(" "),
                        out.exit_code
                    );
                    let mut output = out.stdout;
                    output.extend_from_slice(&out.stderr);
                    (error, String::from_utf8_lossy(&output).into_owned())
                }
                Err(e) => (e.to_string(), String::new()),
            };
            return Err(format!(
                "Exec lifecycle hook ({}) for Container \"{c}\" in Pod \"{pod}\" failed - error: {error}, message: {output:?}",
                go_list(&command)
            ));
        }
        if let Some(http) = &h.http_get {
            let path = http.path.as_deref().unwrap_or("/");
            return self.http_get(http).await.map_err(|error| {
                format!("HTTP lifecycle hook ({path}) for Container \"{c}\" in Pod \"{pod}\" failed - error: {error}")
            });
        }
        if let Some(sleep) = &h.sleep {
            // Cancelled only by dropping this future (the grace period ran out).
            let seconds = u64::try_from(sleep.seconds).unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
            return Ok(());
        }
        // tcpSocket is accepted by validation for compatibility but fails at
        // runtime on the kubelet too.
        Err(format!(
            "Cannot run handler: invalid handler: {}",
            self.describe()
        ))
    }

    /// One GET; any HTTP answer is success, as the kubelet ignores the
    /// status code of a hook.
    async fn http_get(&self, action: &HTTPGetAction) -> Result<(), String> {
        let (url, headers) =
            http_get::request(action, &self.ports, self.pod_ip.as_deref(), HOOK_USER_AGENT)?;
        let answer = http_get::get(url, headers, None).await?;
        debug!(status = answer.status, "lifecycle hook answered");
        Ok(())
    }
}

/// A command as Go's `%v` prints a string slice: `[sh -c exit 1]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

impl<R: ContainerRuntime, S: PodSink> Worker<R, S> {
    /// The pod's first IP (the node's with host network).
    pub(crate) fn pod_ip(&self) -> Option<String> {
        self.pod_ips().into_iter().next()
    }

    /// The pod's IPs as its status reports them: none before the sandbox
    /// is ready, the node's with host network.
    pub(crate) fn pod_ips(&self) -> Vec<String> {
        match self.sandbox.ready() {
            None => Vec::new(),
            Some(sandbox) if sandbox.host_network => vec![self.cfg.host_ip.clone()],
            Some(sandbox) => sandbox.ips.iter().map(|ip| ip.to_string()).collect(),
        }
    }

    /// The hook of container `i`, if its spec has one.
    pub(crate) fn hook(&self, i: usize, kind: HookKind) -> Option<Hook> {
        let container = self.spec_container(i)?;
        let lifecycle = container.lifecycle.as_ref()?;
        let handler = match kind {
            HookKind::PostStart => lifecycle.post_start.clone()?,
            HookKind::PreStop => lifecycle.pre_stop.clone()?,
        };
        Some(Hook {
            handler,
            ports: container.ports.clone().unwrap_or_default(),
            pod_ip: self.pod_ip(),
            container: container.name.clone(),
            pod: self.pod_ref.to_string(),
        })
    }

    /// Runs container `i`'s postStart hook right after its start. The
    /// container stays Waiting and the worker (so every later container)
    /// waits until the hook returns; after a failure the next plan kills the
    /// container and leaves the restart to restartPolicy. A termination
    /// request abandons the hook.
    pub(crate) async fn run_post_start(&mut self, i: usize) {
        let Some(id) = self.records[i]
            .current
            .as_ref()
            .filter(|c| c.is_running())
            .map(|c| c.id.clone())
        else {
            return;
        };
        let Some(hook) = self.hook(i, HookKind::PostStart) else {
            return;
        };
        let name = self.records[i].name.clone();
        let has_init = self
            .records
            .iter()
            .any(|r| r.kind != ContainerKind::Regular);
        self.records[i].waiting = Some(Waiting {
            reason: if has_init {
                "PodInitializing"
            } else {
                "ContainerCreating"
            }
            .into(),
            message: String::new(),
        });
        self.step(Some(&name), TimelineStep::PostStartStarted, hook.describe());
        let rt = self.rt.clone();
        // A clone, so that the worker loop still sees the request as news.
        let mut term_rx = self.term_rx.clone();
        let outcome = tokio::select! {
            result = hook.run(&*rt, &id) => Some(result),
            _ = async { let _ = term_rx.wait_for(Option::is_some).await; } => None,
        };
        self.records[i].waiting = None;
        match outcome {
            None => self.step(
                Some(&name),
                TimelineStep::PostStartAbandoned,
                "the pod is terminating".into(),
            ),
            Some(Ok(())) => self.step(Some(&name), TimelineStep::PostStartSucceeded, String::new()),
            Some(Err(message)) => {
                debug!(pod = %self.pod_ref, container = %name, "postStart failed: {message}");
                self.event(
                    EventType::Warning,
                    crate::reasons::FAILED_POST_START_HOOK,
                    self.field_path(i),
                    message.clone(),
                );
                self.step(Some(&name), TimelineStep::PostStartFailed, message);
                self.records[i].kill_pending = Some(KillReason::PostStartFailed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use berth_runtime::fake::FakeRuntime;
    use k8s_openapi::api::core::v1::{HTTPHeader, SleepAction};
    use tokio::net::TcpListener;

    use super::*;
    use crate::tests::one_shot_server;

    fn http_hook(action: HTTPGetAction, ports: Vec<ContainerPort>) -> Hook {
        Hook {
            handler: LifecycleHandler {
                http_get: Some(action),
                ..Default::default()
            },
            ports,
            pod_ip: Some("127.0.0.1".into()),
            container: "app".into(),
            pod: "web_default(uid-1)".into(),
        }
    }

    #[tokio::test]
    async fn http_get_ignores_the_status_code_and_sends_path_headers_and_a_named_port() {
        let (port, served) = one_shot_server("500 Internal Server Error").await;
        let hook = http_hook(
            HTTPGetAction {
                path: Some("/hooks/start?x=1".into()),
                port: IntOrString::String("admin".into()),
                http_headers: Some(vec![
                    HTTPHeader {
                        name: "X-Hook".into(),
                        value: "post-start".into(),
                    },
                    HTTPHeader {
                        name: "Accept".into(),
                        value: "text/plain".into(),
                    },
                ]),
                ..Default::default()
            },
            vec![ContainerPort {
                name: Some("admin".into()),
                container_port: i32::from(port),
                ..Default::default()
            }],
        );
        let rt = FakeRuntime::new();
        hook.run(&rt, &ContainerId("c".into())).await.unwrap();
        let head = served.await.unwrap();
        assert!(
            head.starts_with("get /hooks/start?x=1 http/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        assert!(head.contains("x-hook: post-start\r\n"), "{head}");
        assert!(head.contains("accept: text/plain\r\n"), "{head}");
        assert!(!head.contains("accept: */*"), "{head}");
        assert!(
            head.contains("user-agent: kube-lifecycle/1.33\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn http_get_fails_on_a_refused_connection_and_an_unknown_port_name() {
        // Bound then dropped: nothing listens there any more.
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rt = FakeRuntime::new();
        let id = ContainerId("c".into());
        let refused = http_hook(
            HTTPGetAction {
                path: Some("/stop".into()),
                port: IntOrString::Int(i32::from(port)),
                ..Default::default()
            },
            Vec::new(),
        );
        let error = refused.run(&rt, &id).await.unwrap_err();
        assert_eq!(
            error,
            format!(
                "HTTP lifecycle hook (/stop) for Container \"app\" in Pod \"web_default(uid-1)\" failed - error: \
                 Get \"http://127.0.0.1:{port}/stop\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
        let unnamed = http_hook(
            HTTPGetAction {
                port: IntOrString::String("admin".into()),
                ..Default::default()
            },
            Vec::new(),
        );
        let error = unnamed.run(&rt, &id).await.unwrap_err();
        assert!(error.contains("couldn't find port: admin"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_waits_its_seconds() {
        let hook = Hook {
            handler: LifecycleHandler {
                sleep: Some(SleepAction { seconds: 7 }),
                ..Default::default()
            },
            ports: Vec::new(),
            pod_ip: None,
            container: "app".into(),
            pod: "web_default(uid-1)".into(),
        };
        let begin = Instant::now();
        hook.run(&FakeRuntime::new(), &ContainerId("c".into()))
            .await
            .unwrap();
        assert_eq!(Instant::now() - begin, std::time::Duration::from_secs(7));
        assert_eq!(hook.describe(), "sleep 7s");
    }
}
