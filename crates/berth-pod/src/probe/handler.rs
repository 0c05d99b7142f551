//! The probe handlers (docs/kubelet-semantics.md §8.5): `exec` in the container,
//! `httpGet` (200–399 is success, a redirect elsewhere a warning),
//! `tcpSocket` (a connect) and `grpc` (the gRPC health checking protocol),
//! each within `timeoutSeconds`.

use std::time::Duration;

use berth_runtime::{ContainerId, ContainerRuntime, RuntimeErrorKind};
use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use reqwest::header::HeaderMap;
use reqwest::Url;
use tokio::net::TcpStream;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::http_get::{self, authority, go_dial_error};

/// The kubelet's `User-Agent` for probes (`kube-probe/<major>.<minor>`).
const PROBE_USER_AGENT: &str = "kube-probe/1.33";

/// The kubelet keeps at most this much of an exec probe's output.
const MAX_OUTPUT: usize = 10 * 1024;

/// One probe attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// Counts as success, with a `ProbeWarning` event (an HTTP redirect to
    /// another host, which the kubelet does not follow).
    Warning(String),
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
    Http(Result<(Url, HeaderMap), String>),
    Tcp {
        host: Option<String>,
        port: Result<u16, String>,
    },
    Grpc {
        address: Option<String>,
        service: String,
    },
    Unsupported(&'static str),
}

impl Handler {
    pub(crate) fn new(probe: &Probe, ports: &[ContainerPort], pod_ip: Option<String>) -> Self {
        if let Some(exec) = &probe.exec {
            Self::Exec(exec.command.clone().unwrap_or_default())
        } else if let Some(http) = &probe.http_get {
            Self::Http(http_get::request(
                http,
                ports,
                pod_ip.as_deref(),
                PROBE_USER_AGENT,
            ))
        } else if let Some(tcp) = &probe.tcp_socket {
            Self::Tcp {
                host: tcp.host.clone().filter(|h| !h.is_empty()).or(pod_ip),
                port: http_get::resolve_port(&tcp.port, ports),
            }
        } else if let Some(grpc) = &probe.grpc {
            // gRPC probes always target the pod IP (the field has no host).
            let port = u16::try_from(grpc.port).unwrap_or_default();
            Self::Grpc {
                address: pod_ip.map(|ip| authority(&ip, port)),
                service: grpc.service.clone().unwrap_or_default(),
            }
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
            Self::Http(Err(e)) => Outcome::Failure(e.clone()),
            Self::Http(Ok((url, headers))) => http(url, headers, timeout).await,
            Self::Tcp { host, port } => {
                let port = match port {
                    Ok(port) => *port,
                    Err(e) => return Outcome::Failure(e.clone()),
                };
                let Some(host) = host else {
                    return Outcome::Failure("the pod has no IP and no host is named".into());
                };
                tcp(host, port, timeout).await
            }
            Self::Grpc { address, service } => match address {
                Some(address) => grpc(address, service, timeout).await,
                None => Outcome::Failure("the pod has no IP".into()),
            },
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

/// httpGet: 2xx is success; a 3xx is what is left of a redirect to another
/// host, which the kubelet reports as a warning and counts as success.
async fn http(url: &Url, headers: &HeaderMap, timeout: Duration) -> Outcome {
    match http_get::get(url.clone(), headers.clone(), Some(timeout)).await {
        Ok(answer) if (200..300).contains(&answer.status) => Outcome::Success,
        Ok(answer) if (300..400).contains(&answer.status) => Outcome::Warning(format!(
            "Probe terminated redirects, Response body: {}",
            answer.body
        )),
        // The body is left out on purpose, as the kubelet does.
        Ok(answer) => Outcome::Failure(format!(
            "HTTP probe failed with statuscode: {}",
            answer.status
        )),
        Err(e) => Outcome::Failure(e),
    }
}

async fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let address = authority(host, port);
    let connect = TcpStream::connect((host.trim_matches(['[', ']']), port));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(_stream)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {address}: {}", go_dial_error(&e))),
        Err(_) => Outcome::Failure(format!("dial tcp {address}: i/o timeout")),
    }
}

/// grpc: `grpc.health.v1.Health/Check` over a fresh plaintext connection;
/// only SERVING is success. Messages are the kubelet's.
async fn grpc(address: &str, service: &str, timeout: Duration) -> Outcome {
    let go_timeout = berth_api::status::go_duration(timeout);
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(PROBE_USER_AGENT)
            .expect("the probe user agent is a valid header"),
        Err(e) => return Outcome::Failure(format!("error: invalid address {address:?}: {e}")),
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => {
            let cause = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
            return Outcome::Failure(format!(
                "error: failed to connect service at {address:?}: {cause}"
            ));
        }
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {address:?} within {go_timeout}: context deadline exceeded"
            ))
        }
    };
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let mut client = HealthClient::new(channel);
    let check = client.check(request);
    let status = match tokio::time::timeout(timeout, check).await {
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: health rpc did not complete within {go_timeout}"
            ))
        }
        Ok(Err(status)) => {
            return Outcome::Failure(match status.code() {
                tonic::Code::Unimplemented => format!(
                    "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    status.message()
                ),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                    format!("timeout: health rpc did not complete within {go_timeout}")
                }
                _ => format!(
                    "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
                    status.code(),
                    status.message()
                ),
            })
        }
        Ok(Ok(response)) => response.into_inner().status,
    };
    if status == ServingStatus::Serving as i32 {
        Outcome::Success
    } else {
        let name = ServingStatus::try_from(status)
            .map_or_else(|_| status.to_string(), |s| s.as_str_name().to_owned());
        Outcome::Failure(format!("service unhealthy (responded with {name:?})"))
    }
}

#[cfg(test)]
mod tests {
    use berth_runtime::fake::FakeRuntime;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::net::TcpListener;

    use k8s_openapi::api::core::v1::{GRPCAction, HTTPGetAction};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::tests::{http_server, one_shot_server};

    fn http(port: u16) -> Handler {
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".into()),
                port: IntOrString::Int(i32::from(port)),
                ..Default::default()
            }),
            ..Default::default()
        };
        Handler::new(&probe, &[], Some("127.0.0.1".into()))
    }

    #[tokio::test]
    async fn http_get_succeeds_on_2xx_and_3xx_and_fails_otherwise() {
        let rt = FakeRuntime::new();
        let id = ContainerId("c".into());
        let second = Duration::from_secs(1);
        for (status, expected) in [
            ("200 OK", Outcome::Success),
            (
                "302 Found",
                Outcome::Warning("Probe terminated redirects, Response body: ok".into()),
            ),
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

    fn redirect_to(location: &str) -> String {
        format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 5\r\n\r\nmoved")
    }

    #[tokio::test]
    async fn http_get_follows_redirects_on_the_same_host_only() {
        let rt = FakeRuntime::new();
        let id = ContainerId("c".into());
        let second = Duration::from_secs(1);

        // Same host: followed to the 200 (keep-alive off: a new connection).
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned();
        let (port, served) = http_server("127.0.0.1", vec![redirect_to("/ready"), ok]).await;
        assert_eq!(http(port).run(&rt, &id, second).await, Outcome::Success);
        let heads = served.await.unwrap();
        assert!(heads[1].starts_with("get /ready http/1.1\r\n"), "{heads:?}");

        // Another host: not followed; a warning that counts as success.
        let (other, _) = http_server("127.0.0.2", Vec::new()).await;
        let elsewhere = redirect_to(&format!("http://127.0.0.2:{other}/"));
        let (port, served) = http_server("127.0.0.1", vec![elsewhere]).await;
        assert_eq!(
            http(port).run(&rt, &id, second).await,
            Outcome::Warning("Probe terminated redirects, Response body: moved".into())
        );
        served.await.unwrap();

        // An endless loop on one host ends after 10 redirects, as a failure.
        let answers = (0..11).map(|_| redirect_to("/again")).collect();
        let (port, _served) = http_server("127.0.0.1", answers).await;
        assert_eq!(
            http(port).run(&rt, &id, second).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/again\": stopped after 10 redirects"
            ))
        );
    }

    #[tokio::test]
    async fn https_probes_do_not_verify_the_certificate() {
        let cert = rcgen::generate_simple_self_signed(vec!["pod.invalid".into()]).unwrap();
        let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(
            cert.signing_key.serialize_der(),
        )
        .unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = tls.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            tls.shutdown().await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                scheme: Some("HTTPS".into()),
                path: Some("/secure".into()),
                port: IntOrString::Int(i32::from(port)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let handler = Handler::new(&probe, &[], Some("127.0.0.1".into()));
        let outcome = handler
            .run(
                &FakeRuntime::new(),
                &ContainerId("c".into()),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(outcome, Outcome::Success);
        assert!(served
            .await
            .unwrap()
            .starts_with("GET /secure HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn grpc_probes_check_the_named_service() {
        use tonic_health::ServingStatus;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("ready", ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("draining", ServingStatus::NotServing)
            .await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        let grpc = |port: u16, service: &str| {
            let probe = Probe {
                grpc: Some(GRPCAction {
                    port: i32::from(port),
                    service: Some(service.into()),
                    mode: None,
                }),
                ..Default::default()
            };
            Handler::new(&probe, &[], Some("127.0.0.1".into()))
        };
        let rt = FakeRuntime::new();
        let id = ContainerId("c".into());
        let second = Duration::from_secs(1);
        assert_eq!(
            grpc(port, "ready").run(&rt, &id, second).await,
            Outcome::Success
        );
        assert_eq!(
            grpc(port, "draining").run(&rt, &id, second).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let Outcome::Failure(unknown) = grpc(port, "nothing").run(&rt, &id, second).await else {
            panic!("an unknown service must fail");
        };
        assert!(
            unknown.starts_with("error: health rpc probe failed: "),
            "{unknown}"
        );

        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let Outcome::Failure(refused) = grpc(closed, "").run(&rt, &id, second).await else {
            panic!("a closed port must fail");
        };
        assert!(
            refused.starts_with(&format!(
                "error: failed to connect service at \"127.0.0.1:{closed}\": "
            )),
            "{refused}"
        );
    }
}
