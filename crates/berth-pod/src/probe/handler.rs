//! The probe handlers (kubelet-semantics §8.5): `exec` in the container,
//! `httpGet` (200–399 is success) and `tcpSocket` (a connect), each within
//! `timeoutSeconds`.

use std::time::Duration;

use berth_runtime::{ContainerId, ContainerRuntime, RuntimeErrorKind};
use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, Probe};
use tokio::net::TcpStream;

/// The kubelet's `User-Agent` for probes (`kube-probe/<major>.<minor>`).
const PROBE_USER_AGENT: &str = "kube-probe/1.33";

/// The kubelet keeps at most this much of an exec probe's output.
const MAX_OUTPUT: usize = 10 * 1024;

/// One probe attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// Failure, with the output the Unhealthy event shows.
    Failure(String),
    /// The prober itself failed (e.g. the runtime is unreachable): the
    /// kubelet discards the attempt.
    Error(String),
}

/// What a probe runs, resolved from the spec when the prober starts.
#[derive(Debug, Clone)]
pub(crate) enum Handler {
    Exec(Vec<String>),
    Http {
        action: HTTPGetAction,
        ports: Vec<ContainerPort>,
        pod_ip: Option<String>,
    },
    Tcp {
        host: Option<String>,
        port: Result<u16, String>,
    },
    Unsupported(&'static str),
}

impl Handler {
    pub(crate) fn new(probe: &Probe, ports: &[ContainerPort], pod_ip: Option<String>) -> Self {
        if let Some(exec) = &probe.exec {
            Self::Exec(exec.command.clone().unwrap_or_default())
        } else if let Some(http) = &probe.http_get {
            Self::Http {
                action: http.clone(),
                ports: ports.to_vec(),
                pod_ip,
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            Self::Tcp {
                host: tcp.host.clone().filter(|h| !h.is_empty()).or(pod_ip),
                port: crate::hooks::resolve_port(&tcp.port, ports),
            }
        } else if probe.grpc.is_some() {
            Self::Unsupported("grpc probes are not supported by berth yet")
        } else {
            Self::Unsupported("the probe has no handler")
        }
    }

    /// Runs one attempt, never longer than `timeout`.
    pub(crate) async fn run<R: ContainerRuntime>(
        &self,
        rt: &R,
        id: &ContainerId,
        timeout: Duration,
    ) -> Outcome {
        match self {
            Self::Exec(command) => exec(rt, id, command, timeout).await,
            Self::Http {
                action,
                ports,
                pod_ip,
            } => {
                let get =
                    crate::hooks::http_get(action, ports, pod_ip.as_deref(), PROBE_USER_AGENT);
                match tokio::time::timeout(timeout, get).await {
                    Ok(Ok(status)) if (200..400).contains(&status.as_u16()) => Outcome::Success,
                    Ok(Ok(status)) => Outcome::Failure(format!(
                        "HTTP probe failed with statuscode: {}",
                        status.as_u16()
                    )),
                    Ok(Err(e)) => Outcome::Failure(e),
                    Err(_) => Outcome::Failure(format!(
                        "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                        url(action, pod_ip.as_deref())
                    )),
                }
            }
            Self::Tcp { host, port } => {
                let port = match port {
                    Ok(port) => *port,
                    Err(e) => return Outcome::Failure(e.clone()),
                };
                let Some(host) = host else {
                    return Outcome::Failure("the pod has no IP and no host is named".into());
                };
                let address = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                let connect = TcpStream::connect((host.trim_matches(['[', ']']), port));
                match tokio::time::timeout(timeout, connect).await {
                    Ok(Ok(_stream)) => Outcome::Success,
                    Ok(Err(e)) => {
                        Outcome::Failure(format!("dial tcp {address}: {}", go_dial_error(&e)))
                    }
                    Err(_) => Outcome::Failure(format!("dial tcp {address}: i/o timeout")),
                }
            }
            Self::Unsupported(why) => Outcome::Failure((*why).into()),
        }
    }
}

/// exec: exit 0 is success; an overrun is a failure (ExecProbeTimeout). The
/// runtime enforces the timeout too; the local one guards against a runtime
/// that does not.
async fn exec<R: ContainerRuntime>(
    rt: &R,
    id: &ContainerId,
    command: &[String],
    timeout: Duration,
) -> Outcome {
    let timed_out = || Outcome::Failure(format!("command {:?} timed out", command.join(" ")));
    match tokio::time::timeout(timeout, rt.exec(id, command, Some(timeout))).await {
        Err(_) => timed_out(),
        Ok(Err(e)) if e.kind == RuntimeErrorKind::Timeout => timed_out(),
        Ok(Err(e)) => Outcome::Error(e.to_string()),
        Ok(Ok(out)) if out.exit_code == 0 => Outcome::Success,
        Ok(Ok(out)) => {
            let mut output = out.stdout;
            output.extend_from_slice(&out.stderr);
            output.truncate(MAX_OUTPUT);
            Outcome::Failure(String::from_utf8_lossy(&output).into_owned())
        }
    }
}

fn url(action: &HTTPGetAction, pod_ip: Option<&str>) -> String {
    let host = action
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .or(pod_ip)
        .unwrap_or("");
    let port = match &action.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    };
    let scheme = action
        .scheme
        .as_deref()
        .unwrap_or("HTTP")
        .to_ascii_lowercase();
    let path = action.path.as_deref().unwrap_or("/");
    format!("{scheme}://{host}:{port}{path}")
}

/// A connect error in Go's words, as the kubelet's messages carry them
/// (`connect: connection refused`).
fn go_dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => {
            // std's "No route to host (os error 113)" → "connect: no route to host".
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            format!("connect: {}", text.to_lowercase())
        }
    }
}

#[cfg(test)]
mod tests {
    use berth_runtime::fake::FakeRuntime;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::net::TcpListener;

    use super::*;
    use crate::tests::one_shot_server;

    fn http(port: u16) -> Handler {
        Handler::Http {
            action: HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(i32::from(port)),
                ..Default::default()
            },
            ports: Vec::new(),
            pod_ip: Some("127.0.0.1".into()),
        }
    }

    #[tokio::test]
    async fn http_get_succeeds_on_2xx_and_3xx_and_fails_otherwise() {
        let rt = FakeRuntime::new();
        let id = ContainerId("c".into());
        let second = Duration::from_secs(1);
        for (status, expected) in [
            ("200 OK", Outcome::Success),
            ("302 Found", Outcome::Success),
            (
                "404 Not Found",
                Outcome::Failure("HTTP probe failed with statuscode: 404".into()),
            ),
        ] {
            let (port, served) = one_shot_server(status).await;
            assert_eq!(http(port).run(&rt, &id, second).await, expected, "{status}");
            let head = served.await.unwrap();
            assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
            assert!(head.contains("user-agent: kube-probe/1.33\r\n"), "{head}");
        }
    }

    #[tokio::test]
    async fn tcp_socket_connects_or_fails() {
        let rt = FakeRuntime::new();
        let id = ContainerId("c".into());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = |port| Handler::Tcp {
            host: Some("127.0.0.1".into()),
            port: Ok(port),
        };
        let second = Duration::from_secs(1);
        assert_eq!(tcp(port).run(&rt, &id, second).await, Outcome::Success);
        drop(listener);
        let Outcome::Failure(output) = tcp(port).run(&rt, &id, second).await else {
            panic!("a closed port must fail");
        };
        assert!(
            output.starts_with(&format!("dial tcp 127.0.0.1:{port}: ")),
            "{output}"
        );
    }
}
