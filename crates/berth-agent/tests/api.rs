//! The local API server against an in-memory `PodService`, over a real unix
//! socket; and the static pod source on a temporary directory.

mod client;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use berth_agent::manifests::{CONFIG_HASH_ANNOTATION, CONFIG_SOURCE_ANNOTATION};
use berth_agent::{
    api, watch_manifests, ApiError, LogOptions, LogTarget, ManifestEvent, PodService, WatchEvent,
};
use berth_pod::{TimelineEntry, TimelineStep};
use berth_runtime::{ExecOutput, ImageInfo};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use client::WAIT;

// ---- the fake service ----

#[derive(Default)]
struct State {
    pods: HashMap<(String, String), Pod>,
    deletes: Vec<(String, Option<i64>)>,
    logs: HashMap<String, LogTarget>,
    last_log_options: Option<LogOptions>,
    next_version: u64,
}

struct FakeService {
    state: Mutex<State>,
    events: broadcast::Sender<WatchEvent>,
}

impl FakeService {
    fn new() -> Arc<FakeService> {
        Arc::new(FakeService {
            state: Mutex::default(),
            events: broadcast::channel(64).0,
        })
    }

    fn set_log(&self, pod: &str, path: &Path, running: bool) {
        let target = LogTarget {
            path: path.to_owned(),
            running,
        };
        self.state
            .lock()
            .unwrap()
            .logs
            .insert(pod.to_owned(), target);
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("pods \"{name}\" not found"))
}

impl PodService for FakeService {
    async fn create(&self, namespace: &str, mut pod: Pod) -> Result<Pod, ApiError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
            return Err(ApiError::Invalid(format!(
                "Pod \"{name}\" is invalid: spec.containers: Required value"
            )));
        }
        let mut state = self.state.lock().unwrap();
        let key = (namespace.to_owned(), name.clone());
        if state.pods.contains_key(&key) {
            return Err(ApiError::AlreadyExists(format!(
                "pods \"{name}\" already exists"
            )));
        }
        state.next_version += 1;
        pod.metadata.uid = Some(format!("uid-{name}"));
        pod.metadata.resource_version = Some(state.next_version.to_string());
        state.pods.insert(key, pod.clone());
        let _ = self
            .events
            .send(WatchEvent::Added(std::sync::Arc::new(pod.clone())));
        Ok(pod)
    }

    async fn replace(&self, namespace: &str, name: &str, pod: Pod) -> Result<Pod, ApiError> {
        let mut state = self.state.lock().unwrap();
        let key = (namespace.to_owned(), name.to_owned());
        if !state.pods.contains_key(&key) {
            return Err(not_found(name));
        }
        state.pods.insert(key, pod.clone());
        let _ = self
            .events
            .send(WatchEvent::Modified(std::sync::Arc::new(pod.clone())));
        Ok(pod)
    }

    fn get(&self, namespace: &str, name: &str) -> Result<Pod, ApiError> {
        let state = self.state.lock().unwrap();
        let key = (namespace.to_owned(), name.to_owned());
        state.pods.get(&key).cloned().ok_or_else(|| not_found(name))
    }

    fn list(&self, namespace: Option<&str>) -> Vec<Pod> {
        let state = self.state.lock().unwrap();
        let mut pods: Vec<Pod> = state
            .pods
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .map(|(_, pod)| pod.clone())
            .collect();
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        pods
    }

    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        grace: Option<i64>,
    ) -> Result<Pod, ApiError> {
        let mut state = self.state.lock().unwrap();
        let key = (namespace.to_owned(), name.to_owned());
        let pod = state.pods.remove(&key).ok_or_else(|| not_found(name))?;
        state.deletes.push((name.to_owned(), grace));
        let _ = self
            .events
            .send(WatchEvent::Deleted(std::sync::Arc::new(pod.clone())));
        Ok(pod)
    }

    fn watch(&self) -> broadcast::Receiver<WatchEvent> {
        self.events.subscribe()
    }

    fn log_target(
        &self,
        _namespace: &str,
        name: &str,
        options: &LogOptions,
    ) -> Result<LogTarget, ApiError> {
        let mut state = self.state.lock().unwrap();
        state.last_log_options = Some(options.clone());
        state.logs.get(name).cloned().ok_or_else(|| not_found(name))
    }

    async fn exec(
        &self,
        _namespace: &str,
        name: &str,
        container: Option<&str>,
        command: Vec<String>,
    ) -> Result<ExecOutput, ApiError> {
        if name != "web" {
            return Err(not_found(name));
        }
        Ok(ExecOutput {
            exit_code: 3,
            stdout: format!("{}:{}", container.unwrap_or("-"), command.join(" ")).into_bytes(),
            stderr: vec![b'e', 0xff],
        })
    }

    async fn import_image(&self, path: PathBuf) -> Result<Vec<ImageInfo>, ApiError> {
        if !path.ends_with("busybox.tar") {
            return Err(ApiError::BadRequest(format!(
                "{} is not an image archive",
                path.display()
            )));
        }
        self.list_images().await
    }

    /// Every known pod has the same two steps.
    fn timeline(&self, namespace: &str, name: &str) -> Result<Vec<TimelineEntry>, ApiError> {
        self.get(namespace, name)?;
        let at: jiff::Timestamp = "2024-05-01T11:00:00.5Z".parse().expect("a timestamp");
        Ok(vec![
            TimelineEntry {
                at,
                container: None,
                step: TimelineStep::SandboxCreated,
                detail: String::new(),
            },
            TimelineEntry {
                at: at + jiff::SignedDuration::from_millis(1042),
                container: Some("c".into()),
                step: TimelineStep::ContainerStarted,
                detail: String::new(),
            },
        ])
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, ApiError> {
        Ok(vec![ImageInfo {
            reference: "docker.io/library/busybox:latest".into(),
            digest: "sha256:abc".into(),
            size: 42,
            config: Default::default(),
        }])
    }
}

// ---- a server on a temporary socket, and a client ----

struct Server {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    service: Arc<FakeService>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("run/berth.sock");
        let service = FakeService::new();
        let shutdown = CancellationToken::new();
        let listener = api::bind(&socket)?;
        let task = tokio::spawn(api::serve_listener(
            listener,
            service.clone(),
            shutdown.clone(),
        ));
        Ok(Server {
            _dir: dir,
            socket,
            service,
            shutdown,
            task,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<hyper::Response<Incoming>> {
        client::send(&self.socket, method, path, content_type, body).await
    }

    /// A whole response: status, content type and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, String, Bytes)> {
        client::call(&self.socket, method, path, body).await
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        client::json(&self.socket, method, path, body).await
    }

    /// POSTs `pod` to the pods of `namespace`.
    async fn create(&self, namespace: &str, pod: Value) -> Result<(StatusCode, Value)> {
        let path = format!("/api/v1/namespaces/{namespace}/pods");
        self.json(Method::POST, &path, Some(pod)).await
    }

    /// `method` on `/api/v1/namespaces/default/pods/{pod}`; `pod` may name a
    /// subresource (`web/exec`).
    async fn pod(
        &self,
        method: Method,
        pod: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let path = format!("/api/v1/namespaces/default/pods/{pod}");
        self.json(method, &path, body).await
    }
}

/// Reads a streamed body piece by piece.
struct BodyStream {
    body: Incoming,
    buffer: Vec<u8>,
}

impl BodyStream {
    fn new(response: hyper::Response<Incoming>) -> BodyStream {
        BodyStream {
            body: response.into_body(),
            buffer: Vec::new(),
        }
    }

    /// Reads until `buffer` holds `want` (or the body ends); returns the buffer.
    async fn read_until(&mut self, want: impl Fn(&[u8]) -> bool) -> Result<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !want(&self.buffer) {
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .with_context(|| {
                    format!(
                        "timed out; have {:?}",
                        String::from_utf8_lossy(&self.buffer)
                    )
                })?;
            match frame {
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                None => bail!(
                    "body ended; have {:?}",
                    String::from_utf8_lossy(&self.buffer)
                ),
            }
        }
        Ok(String::from_utf8_lossy(&self.buffer).into_owned())
    }

    /// The next newline-terminated JSON line.
    async fn next_json(&mut self) -> Result<Value> {
        self.read_until(|b| b.contains(&b'\n')).await?;
        let newline = self
            .buffer
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or_default();
        let line: Vec<u8> = self.buffer.drain(..=newline).collect();
        Ok(serde_json::from_slice(&line)?)
    }

    /// Waits for the end of the body; returns everything not consumed.
    async fn end(mut self) -> Result<String> {
        loop {
            match tokio::time::timeout(WAIT, self.body.frame()).await? {
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
                None => return Ok(String::from_utf8_lossy(&self.buffer).into_owned()),
            }
        }
    }
}

fn pod_json(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

fn assert_status(value: &Value, code: u16, reason: &str) {
    assert_eq!(value["kind"], "Status", "{value}");
    assert_eq!(value["apiVersion"], "v1", "{value}");
    assert_eq!(value["status"], "Failure", "{value}");
    assert_eq!(value["code"], code, "{value}");
    assert_eq!(value["reason"], reason, "{value}");
    assert!(
        value["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{value}"
    );
}

// ---- pods ----

#[tokio::test]
async fn socket_is_private_and_healthz_answers() -> Result<()> {
    let server = Server::start().await?;
    let mode = std::fs::metadata(&server.socket)?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (status, content_type, body) = server.call(Method::GET, "/healthz", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"));
    assert_eq!(body, "ok");

    // A live server's socket is not taken over.
    assert!(api::bind(&server.socket).is_err());

    server.shutdown.cancel();
    tokio::time::timeout(WAIT, server.task).await???;
    assert!(!server.socket.exists(), "socket file removed on shutdown");
    Ok(())
}

#[tokio::test]
async fn stale_socket_is_replaced() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("berth.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket)?);
    assert!(socket.exists());
    let listener = api::bind(&socket)?;
    drop(listener);

    let file = dir.path().join("plain");
    std::fs::write(&file, "x")?;
    assert!(api::bind(&file).is_err(), "a regular file is never removed");
    Ok(())
}

#[tokio::test]
async fn create_get_list_replace_delete() -> Result<()> {
    let server = Server::start().await?;
    let (status, pod) = server.create("default", pod_json("web")).await?;
    assert_eq!(status, StatusCode::CREATED, "{pod}");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(
        pod["metadata"]["namespace"], "default",
        "path namespace fills the body's"
    );
    assert_eq!(pod["metadata"]["uid"], "uid-web");

    let (status, pod) = server.pod(Method::GET, "web", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pod["metadata"]["name"], "web");

    // YAML bodies too.
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db\n  namespace: other\nspec:\n  containers:\n  - name: c\n    image: busybox\n";
    let response = server
        .send(
            Method::POST,
            "/api/v1/namespaces/other/pods",
            Some("application/yaml"),
            yaml,
        )
        .await?;
    assert_eq!(response.status(), StatusCode::CREATED);

    let (status, list) = server.json(Method::GET, "/api/v1/pods", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    assert!(list["metadata"]["resourceVersion"].is_string(), "{list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    let (_, list) = server
        .json(Method::GET, "/api/v1/namespaces/other/pods", None)
        .await?;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["items"][0]["metadata"]["name"], "db");

    let mut changed = pod_json("web");
    changed["metadata"]["labels"] = json!({"a": "b"});
    let (status, pod) = server
        .pod(Method::PUT, "web", Some(changed.clone()))
        .await?;
    assert_eq!(status, StatusCode::OK, "{pod}");
    assert_eq!(pod["metadata"]["labels"]["a"], "b");
    let (status, failure) = server.pod(Method::PUT, "other", Some(changed)).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_status(&failure, 400, "BadRequest");

    // DeleteOptions in the body; then the query parameter form.
    let options = json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 7, "propagationPolicy": "Background"});
    let (status, pod) = server.pod(Method::DELETE, "web", Some(options)).await?;
    assert_eq!(status, StatusCode::OK, "{pod}");
    assert_eq!(pod["metadata"]["name"], "web");
    let response = server
        .send(
            Method::DELETE,
            "/api/v1/namespaces/other/pods/db?gracePeriodSeconds=0",
            None,
            "",
        )
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let deletes = server.service.state.lock().unwrap().deletes.clone();
    assert_eq!(
        deletes,
        vec![("web".to_owned(), Some(7)), ("db".to_owned(), Some(0))]
    );
    Ok(())
}

#[tokio::test]
async fn failures_are_kubernetes_statuses() -> Result<()> {
    let server = Server::start().await?;
    let pods = "/api/v1/namespaces/default/pods";

    let (status, failure) = server.pod(Method::GET, "nope", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_status(&failure, 404, "NotFound");
    assert_eq!(failure["message"], "pods \"nope\" not found");
    assert_eq!(failure["details"]["name"], "nope");
    assert_eq!(failure["details"]["kind"], "pods");

    let mut no_containers = pod_json("bad");
    no_containers["spec"]["containers"] = json!([]);
    let (status, failure) = server.json(Method::POST, pods, Some(no_containers)).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(&failure, 422, "Invalid");

    server
        .json(Method::POST, pods, Some(pod_json("web")))
        .await?;
    let (status, failure) = server
        .json(Method::POST, pods, Some(pod_json("web")))
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_status(&failure, 409, "AlreadyExists");

    let mut elsewhere = pod_json("x");
    elsewhere["metadata"]["namespace"] = json!("kube-system");
    let (status, failure) = server.json(Method::POST, pods, Some(elsewhere)).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_status(&failure, 400, "BadRequest");
    assert_eq!(
        failure["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );

    let response = server
        .send(Method::POST, pods, Some("text/plain"), "x")
        .await?;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut unknown_field = pod_json("x");
    unknown_field["spec"]["contaners"] = json!([]);
    let (status, failure) = server.json(Method::POST, pods, Some(unknown_field)).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(message.contains("spec.contaners"), "{failure}");
    let response = server
        .send(Method::POST, pods, Some("application/json"), "{not json")
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, failure) = server
        .json(
            Method::POST,
            pods,
            Some(json!({"apiVersion": "v1", "kind": "Service"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        failure["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Service"),
        "{failure}"
    );

    let huge = vec![b' '; api::MAX_BODY_BYTES + 1];
    let response = server
        .send(Method::POST, pods, Some("application/json"), huge)
        .await?;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let (status, failure) = server.json(Method::GET, "/api/v1/nodes", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_status(&failure, 404, "NotFound");

    let (status, failure) = server.pod(Method::POST, "web", None).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_status(&failure, 405, "MethodNotAllowed");

    // PATCH: a body that is no patch type, then a malformed patch.
    let (status, failure) = server.pod(Method::PATCH, "web", None).await?;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_status(&failure, 415, "UnsupportedMediaType");
    let path = "/api/v1/namespaces/default/pods/web";
    let response = server
        .send(
            Method::PATCH,
            path,
            Some("application/merge-patch+json"),
            "{oops",
        )
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = response.into_body().collect().await?.to_bytes();
    assert_status(&serde_json::from_slice(&body)?, 400, "BadRequest");

    // A UID precondition that does not hold.
    let options = json!({"preconditions": {"uid": "someone-else"}});
    let (status, failure) = server.pod(Method::DELETE, "web", Some(options)).await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_status(&failure, 409, "Conflict");
    Ok(())
}

/// A deeply nested Pod, as YAML that is not JSON (libyaml's slow path).
fn deep_pod(levels: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {}",
        "[".repeat(levels)
    )
}

// Two workers, as the agent runs: a parse on a worker would stall it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_refused_quickly_and_stalls_no_other_request() -> Result<()> {
    let server = Server::start().await?;
    server.create("default", pod_json("web")).await?;
    let pods = "/api/v1/namespaces/default/pods";
    let started = tokio::time::Instant::now();
    let posts: Vec<_> = (0..4)
        .map(|_| {
            let socket = server.socket.clone();
            tokio::spawn(async move {
                let response = client::send(
                    &socket,
                    Method::POST,
                    pods,
                    Some("application/yaml"),
                    deep_pod(100_000),
                )
                .await?;
                let status = response.status();
                let body = tokio::time::timeout(WAIT, response.into_body().collect())
                    .await??
                    .to_bytes();
                anyhow::Ok((status, serde_json::from_slice::<Value>(&body)?))
            })
        })
        .collect();
    let get_started = tokio::time::Instant::now();
    let (status, pod) = server.pod(Method::GET, "web", None).await?;
    let get_took = get_started.elapsed();
    assert_eq!(status, StatusCode::OK, "{pod}");
    assert!(get_took < Duration::from_secs(1), "GET took {get_took:?}");
    for post in posts {
        let (status, failure) = post.await??;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{failure}");
        assert_status(&failure, 400, "BadRequest");
        assert_eq!(
            failure["message"],
            "cannot decode the Pod: document 1: line 4, column 109: exceeded max depth of 100"
        );
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    Ok(())
}

#[tokio::test]
async fn watch_streams_current_pods_then_changes() -> Result<()> {
    let server = Server::start().await?;
    server.create("default", pod_json("first")).await?;

    let response = server
        .send(
            Method::GET,
            "/api/v1/namespaces/default/pods?watch=true",
            None,
            "",
        )
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let mut watch = BodyStream::new(response);
    let all = server
        .send(Method::GET, "/api/v1/pods?watch=1", None, "")
        .await?;
    let mut watch_all = BodyStream::new(all);

    let event = watch.next_json().await?;
    assert_eq!(event["type"], "ADDED");
    assert_eq!(event["object"]["metadata"]["name"], "first");
    assert_eq!(event["object"]["kind"], "Pod");
    assert_eq!(
        watch_all.next_json().await?["object"]["metadata"]["name"],
        "first"
    );

    // A pod in another namespace only reaches the all-namespaces watch.
    let mut other = pod_json("other");
    other["metadata"]["namespace"] = json!("kube-system");
    server.create("kube-system", other).await?;
    server.create("default", pod_json("second")).await?;
    server.pod(Method::DELETE, "first", None).await?;

    let event = watch.next_json().await?;
    assert_eq!(
        (
            event["type"].as_str(),
            event["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("second"))
    );
    let event = watch.next_json().await?;
    assert_eq!(
        (
            event["type"].as_str(),
            event["object"]["metadata"]["name"].as_str()
        ),
        (Some("DELETED"), Some("first"))
    );

    let names: Vec<Value> = [
        watch_all.next_json().await?,
        watch_all.next_json().await?,
        watch_all.next_json().await?,
    ]
    .iter()
    .map(|e| e["object"]["metadata"]["name"].clone())
    .collect();
    assert_eq!(names, vec![json!("other"), json!("second"), json!("first")]);

    // Stopping the server ends open watches.
    server.shutdown.cancel();
    watch.end().await?;
    tokio::time::timeout(WAIT, server.task).await???;
    Ok(())
}

// ---- logs ----

const TS: &str = "2024-05-01T10:00:00.000000001Z";

#[tokio::test]
async fn a_selected_watch_sees_pods_come_into_and_leave_its_selection() -> Result<()> {
    let server = Server::start().await?;
    let mut web = pod_json("web");
    web["metadata"]["labels"] = json!({"app": "web"});
    server.create("default", web).await?;
    server.create("default", pod_json("plain")).await?;

    let response = server
        .send(
            Method::GET,
            "/api/v1/namespaces/default/pods?watch=true&labelSelector=app%3Dweb",
            None,
            "",
        )
        .await?;
    let mut watch = BodyStream::new(response);
    let seen = |event: &Value| {
        (
            event["type"].as_str().unwrap_or_default().to_owned(),
            event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    assert_eq!(
        seen(&watch.next_json().await?),
        ("ADDED".into(), "web".into())
    );

    let label = |app: &str| format!(r#"{{"metadata":{{"labels":{{"app":"{app}"}}}}}}"#);
    for (pod, app) in [("web", "db"), ("plain", "web"), ("plain", "web")] {
        let path = format!("/api/v1/namespaces/default/pods/{pod}");
        let response = server
            .send(
                Method::PATCH,
                &path,
                Some("application/merge-patch+json"),
                label(app),
            )
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // web leaves the selection, plain comes into it, then changes within it.
    assert_eq!(
        seen(&watch.next_json().await?),
        ("DELETED".into(), "web".into())
    );
    assert_eq!(
        seen(&watch.next_json().await?),
        ("ADDED".into(), "plain".into())
    );
    assert_eq!(
        seen(&watch.next_json().await?),
        ("MODIFIED".into(), "plain".into())
    );
    Ok(())
}

fn append(path: &Path, lines: &[&str]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for line in lines {
        writeln!(file, "{TS} {line}")?;
    }
    Ok(())
}

#[tokio::test]
async fn log_content_and_tail() -> Result<()> {
    let server = Server::start().await?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("0.log");
    append(
        &log,
        &[
            "stdout F one",
            "stderr F two",
            "stdout P thr",
            "stdout F ee",
            "stdout F four",
        ],
    )?;
    server.service.set_log("web", &log, false);

    let (status, content_type, body) = server
        .call(Method::GET, "/api/v1/namespaces/default/pods/web/log", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"));
    assert_eq!(body, "one\ntwo\nthree\nfour\n");

    let path = "/api/v1/namespaces/default/pods/web/log?container=c&previous=true&tailLines=2";
    let (_, _, body) = server.call(Method::GET, path, None).await?;
    assert_eq!(body, "three\nfour\n");
    let options = server
        .service
        .state
        .lock()
        .unwrap()
        .last_log_options
        .clone()
        .unwrap();
    assert_eq!(options.container.as_deref(), Some("c"));
    assert!(options.previous && !options.follow);
    assert_eq!(options.tail_lines, Some(2));

    let (_, _, body) = server
        .call(
            Method::GET,
            "/api/v1/namespaces/default/pods/web/log?tailLines=1&timestamps=true",
            None,
        )
        .await?;
    assert_eq!(body, format!("{TS} four\n"));

    let (status, failure) = server.pod(Method::GET, "none/log", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_status(&failure, 404, "NotFound");
    Ok(())
}

#[tokio::test]
async fn log_since_limit_bytes_and_a_last_line_without_newline() -> Result<()> {
    let server = Server::start().await?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("0.log");
    let old = "2024-05-01T10:00:00Z stdout F old\n";
    let now = jiff::Timestamp::now();
    let recent = format!("{now} stdout F recent\n{now} stdout P DO\n{now} stdout P NE\n");
    std::fs::write(&log, format!("{old}{recent}"))?;
    server.service.set_log("web", &log, false);
    let server = &server;
    let get = |query: &str| {
        let path = format!("/api/v1/namespaces/default/pods/web/log?{query}");
        async move { server.call(Method::GET, &path, None).await }
    };

    let (_, _, body) = get("").await?;
    assert_eq!(body, "old\nrecent\nDONE");
    let (_, _, body) = get("sinceSeconds=3600").await?;
    assert_eq!(body, "recent\nDONE");
    let (_, _, body) = get("sinceTime=2024-05-01T10:00:01Z").await?;
    assert_eq!(body, "recent\nDONE");
    let (_, _, body) = get("limitBytes=6").await?;
    assert_eq!(body, "old\nre");
    let (_, _, body) = get("tailLines=1&timestamps=true").await?;
    assert_eq!(body, format!("{now:.9} DONE"));

    // Refused as the API server refuses them.
    for (query, message) in [
        (
            "limitBytes=-1",
            "PodLogOptions \"web\" is invalid: limitBytes: Invalid value: -1: must be greater than 0",
        ),
        (
            "sinceSeconds=0",
            "PodLogOptions \"web\" is invalid: sinceSeconds: Invalid value: 0: must be greater than 0",
        ),
        (
            "tailLines=-1",
            "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "sinceSeconds=5&sinceTime=2024-05-01T10:00:01Z",
            "PodLogOptions \"web\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
        ),
    ] {
        let path = format!("web/log?{query}");
        let (status, failure) = server.pod(Method::GET, &path, None).await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_status(&failure, 422, "Invalid");
        assert_eq!(failure["message"], message);
    }
    let (status, _) = server
        .pod(Method::GET, "web/log?sinceTime=yesterday", None)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn log_options_are_validated_as_the_api_server_does() -> Result<()> {
    let server = Server::start().await?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("0.log");
    append(&log, &["stdout F one"])?;
    server.service.set_log("web", &log, false);
    let invalid = [
        (
            "sinceSeconds=-1",
            "sinceSeconds: Invalid value: -1: must be greater than 0",
        ),
        (
            "sinceSeconds=0",
            "sinceSeconds: Invalid value: 0: must be greater than 0",
        ),
        (
            "limitBytes=-1",
            "limitBytes: Invalid value: -1: must be greater than 0",
        ),
        (
            "tailLines=-1",
            "tailLines: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            "sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z",
            ": Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
        ),
    ];
    for (query, message) in invalid {
        let path = format!("/api/v1/namespaces/default/pods/web/log?{query}");
        let (status, failure) = server.json(Method::GET, &path, None).await?;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {failure}"
        );
        assert_status(&failure, 422, "Invalid");
        assert_eq!(
            failure["message"],
            format!("PodLogOptions \"web\" is invalid: {message}"),
            "{query}"
        );
    }
    for query in ["sinceSeconds=x", "limitBytes=1.5", "sinceTime=yesterday"] {
        let path = format!("/api/v1/namespaces/default/pods/web/log?{query}");
        let (status, failure) = server.json(Method::GET, &path, None).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {failure}");
        assert_status(&failure, 400, "BadRequest");
    }
    Ok(())
}

#[tokio::test]
async fn log_follow_streams_until_the_container_stops() -> Result<()> {
    let server = Server::start().await?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("0.log");
    append(&log, &["stdout F old", "stdout F last"])?;
    server.service.set_log("web", &log, true);

    let path = "/api/v1/namespaces/default/pods/web/log?follow=true&tailLines=1";
    let response = server.send(Method::GET, path, None, "").await?;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = BodyStream::new(response);
    assert_eq!(body.read_until(|b| b.ends_with(b"last\n")).await?, "last\n");

    append(&log, &["stdout P new ", "stdout F line"])?;
    body.read_until(|b| b.ends_with(b"new line\n")).await?;
    append(&log, &["stderr F more"])?;
    body.read_until(|b| b.ends_with(b"more\n")).await?;

    // Written just before the exit, then the container stops: drained, then the end.
    append(&log, &["stdout F final"])?;
    server.service.set_log("web", &log, false);
    assert_eq!(body.end().await?, "last\nnew line\nmore\nfinal\n");
    Ok(())
}

// ---- exec and images ----

#[tokio::test]
async fn exec_returns_exit_code_and_output() -> Result<()> {
    let server = Server::start().await?;
    let request = json!({"command": ["sh", "-c", "exit 3"], "container": "c"});
    let (status, out) = server.pod(Method::POST, "web/exec", Some(request)).await?;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        out,
        json!({"exitCode": 3, "stdout": "c:sh -c exit 3", "stderr": "e\u{fffd}"})
    );

    let (status, failure) = server
        .pod(Method::POST, "web/exec", Some(json!({"command": []})))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_status(&failure, 400, "BadRequest");
    let (status, _) = server
        .pod(
            Method::POST,
            "gone/exec",
            Some(json!({"command": ["true"]})),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn image_endpoints() -> Result<()> {
    let server = Server::start().await?;
    let expected = json!({"items": [{"reference": "docker.io/library/busybox:latest", "digest": "sha256:abc", "size": 42}]});
    let (status, list) = server
        .json(Method::GET, "/apis/berth.io/v1/images", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, expected);
    let import = "/apis/berth.io/v1/images/import";
    let (status, list) = server
        .json(
            Method::POST,
            import,
            Some(json!({"path": "/tmp/busybox.tar"})),
        )
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, expected);
    let (status, failure) = server
        .json(
            Method::POST,
            import,
            Some(json!({"path": "/tmp/other.tar"})),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_status(&failure, 400, "BadRequest");
    let (status, _) = server
        .json(Method::POST, import, Some(json!({"file": "x"})))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

// ---- static pod manifests ----

const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

/// `watch_manifests` on a directory, for node `node1`.
struct Source {
    rx: mpsc::Receiver<ManifestEvent>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Source {
    fn start(dir: &Path) -> Source {
        let (tx, rx) = mpsc::channel(16);
        let shutdown = CancellationToken::new();
        let task = watch_manifests(
            dir.to_owned(),
            "node1".into(),
            Vec::new(),
            tx,
            shutdown.clone(),
        );
        Source { rx, shutdown, task }
    }

    async fn next(&mut self) -> Result<ManifestEvent> {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await?
            .context("manifest source ended")
    }

    /// Stops the source and checks that no event is left unread.
    async fn stop(mut self) -> Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task).await??;
        assert!(self.rx.try_recv().is_err(), "no stray events");
        Ok(())
    }
}

/// Writes a file the way editors do: to a temporary name, then renamed.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[tokio::test]
async fn manifests_add_change_remove() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let manifests = dir.path().join("manifests");
    let existing = manifests.join("web.yaml");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(&existing, MANIFEST)?;
    std::fs::write(manifests.join(".hidden.yaml"), MANIFEST)?;
    std::fs::write(manifests.join("notes.txt"), "not a manifest")?;

    let mut source = Source::start(&manifests);

    let ManifestEvent::Pods { path, pods } = source.next().await? else {
        bail!("expected the existing file's pods");
    };
    assert_eq!(path, existing);
    assert_eq!(pods.len(), 1);
    let meta = &pods[0].metadata;
    assert_eq!(meta.name.as_deref(), Some("web-node1"));
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    let first_uid = meta.uid.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    assert_eq!(annotations[CONFIG_HASH_ANNOTATION], first_uid);
    assert_eq!(annotations[CONFIG_SOURCE_ANNOTATION], "file");

    // A new file, two pods in it.
    let added = manifests.join("pair.yml");
    write_atomically(
        &added,
        &format!("{MANIFEST}---\n{}", MANIFEST.replace("web", "db")),
    )?;
    let ManifestEvent::Pods { path, pods } = source.next().await? else {
        bail!("expected the new file's pods");
    };
    assert_eq!(path, added);
    let names: Vec<_> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["web-node1", "db-node1"]);

    // Changing the pod gives a new UID; only one event per change.
    std::fs::write(
        &existing,
        MANIFEST.replace("image: busybox", "image: busybox:1"),
    )?;
    let ManifestEvent::Pods { path, pods } = source.next().await? else {
        bail!("expected the changed pods");
    };
    assert_eq!(path, existing);
    let second_uid = pods[0].metadata.uid.clone().unwrap_or_default();
    assert_ne!(second_uid, first_uid);

    std::fs::remove_file(&existing)?;
    let ManifestEvent::Removed { path } = source.next().await? else {
        bail!("expected the removal");
    };
    assert_eq!(path, existing);

    // Nothing else is pending (no duplicate events for one write).
    std::fs::write(
        manifests.join("z.json"),
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#,
    )?;
    let ManifestEvent::Pods { path, .. } = source.next().await? else {
        bail!("expected the JSON manifest");
    };
    assert_eq!(path, manifests.join("z.json"));

    source.stop().await?;
    Ok(())
}

#[tokio::test]
async fn invalid_manifest_reports_only_invalid() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The directory does not exist yet: the source creates it.
    let manifests = dir.path().join("absent");
    let mut source = Source::start(&manifests);

    // Created by the source; poll for it with a deadline.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !manifests.is_dir() {
        if tokio::time::Instant::now() > deadline {
            bail!("manifest directory was not created");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Wait for the initial scan to finish: a first file gives its event.
    std::fs::write(manifests.join("good.yaml"), MANIFEST)?;
    assert!(matches!(source.next().await?, ManifestEvent::Pods { .. }));

    let bad = manifests.join("bad.yaml");
    write_atomically(&bad, "apiVersion: v1\nkind: Pod\nmetadata: [broken\n")?;
    let ManifestEvent::Invalid { path, error } = source.next().await? else {
        bail!("expected Invalid");
    };
    assert_eq!(path, bad);
    assert!(!error.is_empty());

    // Fixing it yields its pods; a following good file proves nothing came between.
    write_atomically(&bad, &MANIFEST.replace("web", "fixed"))?;
    let ManifestEvent::Pods { path, pods } = source.next().await? else {
        bail!("expected Pods after the fix");
    };
    assert_eq!(path, bad);
    assert_eq!(pods[0].metadata.name.as_deref(), Some("fixed-node1"));

    source.stop().await?;
    Ok(())
}

#[tokio::test]
async fn unbounded_and_invalid_manifests_are_refused_naming_the_problem() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests)?;
    let mut source = Source::start(&manifests);
    std::fs::write(manifests.join("good.yaml"), MANIFEST)?;
    assert!(matches!(source.next().await?, ManifestEvent::Pods { .. }));

    let refused = |name: &str, text: String| {
        let path = manifests.join(name);
        write_atomically(&path, &text).map(|()| path)
    };
    let deep = refused("deep.yaml", deep_pod(100_000))?;
    let started = tokio::time::Instant::now();
    let ManifestEvent::Invalid { path, error } = source.next().await? else {
        bail!("expected the deep file to be refused");
    };
    assert_eq!(path, deep);
    assert_eq!(
        error,
        "document 1: line 4, column 109: exceeded max depth of 100"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "refused after {took:?}");

    let huge = refused(
        "huge.yaml",
        format!("{MANIFEST}# {}\n", "x".repeat(api::MAX_BODY_BYTES)),
    )?;
    let ManifestEvent::Invalid { path, error } = source.next().await? else {
        bail!("expected the huge file to be refused");
    };
    assert_eq!(path, huge);
    assert_eq!(error, "file is larger than 3145728 bytes");

    // Valid YAML, but not a valid Pod: refused as the API server would.
    let limits = refused(
        "limits.yaml",
        format!("{MANIFEST}    resources:\n      limits:\n        memory: 512MB\n"),
    )?;
    let ManifestEvent::Invalid { path, error } = source.next().await? else {
        bail!("expected the bad quantity to be refused");
    };
    assert_eq!(path, limits);
    assert_eq!(
        error,
        "Pod \"web-node1\" is invalid: spec.containers[0].resources.limits[memory]: Invalid value: \"512MB\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );
    source.stop().await?;
    Ok(())
}

// ---- timeline ----

#[tokio::test]
async fn timeline_lists_steps_with_millisecond_times() -> Result<()> {
    let server = Server::start().await?;
    server.create("default", pod_json("web")).await?;
    let path = "/apis/berth.io/v1/namespaces/default/pods/web/timeline";
    let (status, list) = server.json(Method::GET, path, None).await?;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list,
        json!({"items": [
            {"time": "2024-05-01T11:00:00.500Z", "container": null, "step": "SandboxCreated", "detail": ""},
            {"time": "2024-05-01T11:00:01.542Z", "container": "c", "step": "ContainerStarted", "detail": ""},
        ]})
    );

    let missing = "/apis/berth.io/v1/namespaces/default/pods/nope/timeline";
    let (status, failure) = server.json(Method::GET, missing, None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_status(&failure, 404, "NotFound");
    assert_eq!(failure["message"], "pods \"nope\" not found");

    let (status, _) = server.json(Method::DELETE, path, None).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    Ok(())
}
