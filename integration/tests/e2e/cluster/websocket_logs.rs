//! A container's log read over a WebSocket through the API server, as the
//! upstream spec "should support retrieving logs from the container over
//! websockets" reads it: the API server reads the kubelet API's log response
//! and relays it, and its relay (`wsstream`) drops the bytes of any read that
//! also returns EOF. A node that sent the log's last chunk and the body's end
//! together got an empty log to the client about every other time.

use std::sync::Arc;

use futures::StreamExt;
use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use super::*;

/// Reads enough times that a one-in-two loss cannot slip through.
const READS: usize = 12;

/// The whole log of `pod`'s container of the same name (`kubectl run`'s), as the WebSocket client gets it.
async fn log_over_websocket(cp: &ControlPlane, pod: &str) -> String {
    let server = cp.server();
    let port: u16 = server
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the API server's port");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cp.ca_cert_path()).expect("read the CA") {
        roots.add(cert.expect("a CA certificate")).unwrap();
    }
    let (cert, key) = cp.admin_identity();
    let chain: Vec<_> = CertificateDer::pem_file_iter(&cert)
        .expect("read the admin certificate")
        .map(|c| c.expect("a certificate"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).expect("read the admin key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .expect("the admin identity");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the API server");
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS to the API server");

    let url =
        format!("wss://127.0.0.1:{port}/api/v1/namespaces/default/pods/{pod}/log?container={pod}");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "binary.k8s.io".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("the API server upgrades the log request");
    let mut log = Vec::new();
    let read_all = async {
        while let Some(message) = socket.next().await {
            match message.expect("a WebSocket message") {
                Message::Binary(data) => log.extend_from_slice(&data),
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(CLUSTER_TIMEOUT, read_all)
        .await
        .expect("the log ends");
    String::from_utf8(log).expect("the log is text")
}

#[tokio::test]
async fn a_log_read_over_a_websocket_through_the_api_server_is_whole_every_time() {
    let Some(c) = cluster("berth-node-wslog").await else {
        return;
    };
    c.kubectl_ok(&[
        "run",
        "alive",
        &format!("--image={TEST_IMAGE}"),
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        "echo container is alive; sleep 3600",
    ]);
    c.wait_pod_phase("alive", "Running").await;
    c.wait_for("the container's first line", |c| {
        (stdout(&c.kubectl(&["logs", "alive"])) == "container is alive\n").then_some(())
    })
    .await;
    for read in 1..=READS {
        let log = log_over_websocket(&c.cp, "alive").await;
        assert_eq!(
            log, "container is alive\n",
            "read {read} of {READS} over the WebSocket"
        );
    }
}
