//! The image pull and removal endpoints, end to end through the local API
//! socket to the supervisor on the in-memory runtime.

mod client;
mod common;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use berth_agent::{api, PodService, Supervisor};
use berth_runtime::fake::{Call, FakeRuntime};
use berth_runtime::{ImageConfig, ImageInfo, RuntimeError};
use http::{Method, StatusCode};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use client::WAIT;
const PULL: &str = "/apis/berth.io/v1/images/pull";

struct Agent {
    rt: FakeRuntime,
    supervisor: Arc<Supervisor<FakeRuntime>>,
    socket: PathBuf,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Result<Agent> {
        let dir = tempfile::tempdir()?;
        let rt = common::runtime();
        let supervisor = common::supervisor(&rt, dir.path());
        let socket = dir.path().join("berth.sock");
        let shutdown = CancellationToken::new();
        let listener = api::bind(&socket)?;
        tokio::spawn(api::serve_listener(
            listener,
            supervisor.clone(),
            shutdown.clone(),
        ));
        Ok(Agent {
            rt,
            supervisor,
            socket,
            shutdown,
            _dir: dir,
        })
    }

    /// A whole answer: status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let (status, _, bytes) = client::call(&self.socket, method, path, body).await?;
        Ok((status, bytes))
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        client::json(&self.socket, method, path, body).await
    }

    /// A pull's status and its stream, one value per line.
    async fn pull(&self, reference: &str) -> Result<(StatusCode, Vec<Value>)> {
        let (status, bytes) = self
            .call(Method::POST, PULL, Some(json!({"reference": reference})))
            .await?;
        let text = String::from_utf8(bytes.to_vec())?;
        assert!(text.ends_with('\n'), "unterminated stream: {text:?}");
        let lines = text
            .lines()
            .map(|line| serde_json::from_str(line).with_context(|| format!("bad line {line:?}")))
            .collect::<Result<_>>()?;
        Ok((status, lines))
    }

    async fn images(&self) -> Vec<String> {
        let images = self.supervisor.list_images().await.expect("list images");
        images.into_iter().map(|i| i.reference).collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn image(digest: &str, size: u64) -> ImageInfo {
    ImageInfo {
        reference: String::new(),
        digest: digest.into(),
        size,
        config: ImageConfig::default(),
    }
}

fn assert_status(value: &Value, code: u16, reason: &str) {
    assert_eq!(value["kind"], "Status", "{value}");
    assert_eq!(value["status"], "Failure", "{value}");
    assert_eq!(value["code"], code, "{value}");
    assert_eq!(value["reason"], reason, "{value}");
}

#[tokio::test]
async fn pull_streams_progress_then_the_image_and_knows_when_it_is_up_to_date() -> Result<()> {
    let agent = Agent::start()?;
    agent
        .rt
        .add_pullable("r.example/app:1", image("sha256:aa", 5000));

    let (status, lines) = agent.pull("r.example/app:1").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        lines,
        vec![
            json!({"progress": {"layer": "sha256:aa", "done": 5000, "total": 5000}}),
            json!({"image": {"reference": "r.example/app:1", "digest": "sha256:aa", "size": 5000}, "upToDate": false}),
        ]
    );
    assert!(agent
        .images()
        .await
        .contains(&"r.example/app:1".to_string()));

    let (_, lines) = agent.pull("r.example/app:1").await?;
    assert_eq!(lines.last().unwrap()["upToDate"], true, "{lines:?}");

    // The tag moved in the registry: a new image, not up to date.
    agent
        .rt
        .add_pullable("r.example/app:1", image("sha256:bb", 6000));
    let (_, lines) = agent.pull("r.example/app:1").await?;
    let last = lines.last().unwrap();
    assert_eq!(last["upToDate"], false, "{lines:?}");
    assert_eq!(last["image"]["digest"], "sha256:bb");
    Ok(())
}

#[tokio::test]
async fn pull_failures_end_the_stream_with_the_registry_message() -> Result<()> {
    let agent = Agent::start()?;
    let (status, lines) = agent.pull("r.example/app:nope").await?;
    assert_eq!(status, StatusCode::OK);
    let [line] = lines.as_slice() else {
        panic!("one error line expected: {lines:?}");
    };
    let error = &line["error"];
    assert_status(error, 500, "InternalError");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("manifest unknown"), "{message}");
    assert_eq!(error["details"]["name"], "r.example/app:nope");

    agent
        .rt
        .add_pullable("r.example/app:1", image("sha256:aa", 1));
    agent.rt.fail_pull(
        "r.example/app:1",
        Some(RuntimeError::other("unexpected status 401 Unauthorized")),
    );
    let (_, lines) = agent.pull("r.example/app:1").await?;
    assert_eq!(
        lines.last().unwrap()["error"]["message"],
        "unexpected status 401 Unauthorized"
    );
    Ok(())
}

#[tokio::test]
async fn pull_requests_without_a_valid_reference_are_refused_before_the_stream() -> Result<()> {
    let agent = Agent::start()?;
    for body in [
        json!({}),
        json!({"reference": ""}),
        json!({"reference": "Bad Ref"}),
    ] {
        let (status, value) = agent.json(Method::POST, PULL, Some(body.clone())).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_status(&value, 400, "BadRequest");
    }
    let (_, value) = agent
        .json(
            Method::POST,
            PULL,
            Some(json!({"reference": "library/BusyBox"})),
        )
        .await?;
    assert!(
        value["message"]
            .as_str()
            .unwrap()
            .contains("must be lowercase"),
        "{value}"
    );
    let (status, _) = agent.call(Method::GET, PULL, None).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        !agent
            .rt
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Pull { .. })),
        "nothing may be pulled"
    );
    Ok(())
}

#[tokio::test]
async fn remove_deletes_the_image_and_404s_when_absent() -> Result<()> {
    let agent = Agent::start()?;
    agent
        .rt
        .add_pullable("127.0.0.1:5000/app:1", image("sha256:aa", 1));
    agent.pull("127.0.0.1:5000/app:1").await?;
    let path = "/apis/berth.io/v1/images/127.0.0.1%3A5000%2Fapp%3A1";
    let (status, value) = agent.json(Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value, json!({"deleted": "127.0.0.1:5000/app:1"}));
    assert!(!agent
        .images()
        .await
        .contains(&"127.0.0.1:5000/app:1".to_string()));

    let (status, value) = agent.json(Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_status(&value, 404, "NotFound");
    assert_eq!(value["message"], "image \"127.0.0.1:5000/app:1\" not found");
    assert_eq!(value["details"]["name"], "127.0.0.1:5000/app:1");

    let (status, _) = agent
        .json(Method::DELETE, "/apis/berth.io/v1/images/a%20b", None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn an_image_a_running_container_uses_is_not_removed() -> Result<()> {
    let agent = Agent::start()?;
    let pod: Pod = berth_api::manifest::parse_pods(common::WEB)?.remove(0);
    agent.supervisor.create("default", pod).await?;
    agent
        .rt
        .wait_for_calls(|calls| calls.iter().any(|c| matches!(c, Call::Start { .. })))
        .await;

    let path = "/apis/berth.io/v1/images/busybox";
    let (status, value) = agent.json(Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    assert_status(&value, 409, "Conflict");
    let message = value["message"].as_str().unwrap();
    assert!(message.contains("\"default/web\""), "{message}");
    assert!(message.contains("\"app\""), "{message}");
    assert!(agent.images().await.contains(&"busybox".to_string()));

    // Once the pod is gone the image may go.
    agent.supervisor.delete("default", "web", Some(0)).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !agent.supervisor.list(None).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the pod never went");
        let mut changes = agent.supervisor.watch();
        if agent.supervisor.list(None).is_empty() {
            break;
        }
        let _ = tokio::time::timeout_at(deadline, changes.recv()).await;
    }
    let (status, value) = agent.json(Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(value, json!({"deleted": "busybox"}));
    Ok(())
}
