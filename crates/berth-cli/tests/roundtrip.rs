//! The client verbs against a small in-process fake of the local API on a
//! temporary unix socket: request shapes, server answers, printed output.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::reasons;
use berth_cli::{run_with, Command, Streams};
use clap::Parser;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::UnixListener;
use tokio::sync::broadcast;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

type Body = BoxBody<Bytes, Infallible>;

#[derive(Default)]
struct State {
    pods: BTreeMap<(String, String), Value>,
    /// Every request, as "METHOD path".
    requests: Vec<String>,
    /// Bodies of POST/PUT/DELETE requests.
    bodies: Vec<Value>,
    next_uid: u32,
    /// The events the API keeps; `None`: no events endpoint (404).
    events: Option<Vec<Value>>,
}

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<String>,
    /// How long a deleted pod stays terminating before it is removed.
    grace: Duration,
}

fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

fn event(kind: &str, pod: &Value) -> String {
    format!("{}\n", json!({"type": kind, "object": pod}))
}

impl Fake {
    fn new(grace: Duration) -> Self {
        Self {
            state: Arc::default(),
            events: broadcast::channel(64).0,
            grace,
        }
    }

    fn insert(&self, pod: Value) {
        let mut state = self.state.lock().unwrap();
        let key = (
            pod["metadata"]["namespace"].as_str().unwrap().to_string(),
            pod["metadata"]["name"].as_str().unwrap().to_string(),
        );
        state.pods.insert(key, pod);
    }

    /// exec over WebSocket (v5): `NAME:ARG1` on stdout, `warn` on
    /// stderr, exit code 3.
    fn exec(&self, mut request: Request<Incoming>) -> Response<Body> {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role};
        let uri = request.uri().clone();
        self.state
            .lock()
            .unwrap()
            .requests
            .push(format!("{} {uri}", request.method()));
        let key = request.headers()["sec-websocket-key"].as_bytes().to_vec();
        let name = uri.path().rsplit('/').nth(1).unwrap().to_string();
        let arg = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|p| p.strip_prefix("command="))
            .nth(1)
            .unwrap_or_default()
            .to_string();
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let upgraded = upgrade.await.unwrap();
            let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            let status = json!({"status": "Failure", "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}});
            for (channel, bytes) in [
                (1u8, format!("{name}:{arg}\n").into_bytes()),
                (2, b"warn\n".to_vec()),
                (3, status.to_string().into_bytes()),
            ] {
                let mut data = vec![channel];
                data.extend(bytes);
                socket.send(data.into()).await.unwrap();
            }
            let _ = socket.close(None).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", derive_accept_key(&key))
            .header("sec-websocket-protocol", "v5.channel.k8s.io")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap()
    }

    fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    async fn handle(self, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        if request.uri().path().ends_with("/exec") {
            return Ok(self.exec(request));
        }
        let method = request.method().clone();
        let uri = request.uri().clone();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        {
            let mut state = self.state.lock().unwrap();
            state.requests.push(format!("{method} {uri}"));
            if !body.is_null() {
                state.bodies.push(body.clone());
            }
        }
        let path = uri.path().to_string();
        let query = uri.query().unwrap_or_default().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        Ok(match (method.as_str(), segments.as_slice()) {
            ("GET", ["api", "v1", "pods"]) if query.contains("watch=true") => self.watch(None),
            ("GET", ["api", "v1", "namespaces", ns, "pods"]) if query.contains("watch=true") => {
                self.watch(Some(ns.to_string()))
            }
            ("GET", ["api", "v1", "pods"]) => self.list(None),
            ("GET", ["api", "v1", "namespaces", ns, "pods"]) => self.list(Some(ns)),
            ("POST", ["api", "v1", "namespaces", ns, "pods"]) => self.create(ns, body),
            ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => match self.get(ns, name) {
                Some(pod) => json_response(StatusCode::OK, &pod),
                None => not_found(name),
            },
            ("PUT", ["api", "v1", "namespaces", ns, "pods", name]) => self.replace(ns, name, body),
            ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => self.delete(ns, name),
            ("GET", ["api", "v1", "namespaces", _, "pods", name, "log"]) => {
                Response::new(Full::new(Bytes::from(format!("log of {name} ({query})\n"))).boxed())
            }
            ("GET", ["api", "v1", "namespaces", ns, "events"]) => self.list_events(Some(ns)),
            ("GET", ["api", "v1", "events"]) => self.list_events(None),
            ("GET", ["apis", "berth.io", "v1", "namespaces", ns, "pods", name, "timeline"]) => {
                match self.get(ns, name) {
                    Some(_) => json_response(StatusCode::OK, &timeline_of(name)),
                    None => not_found(name),
                }
            }
            _ => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route {path}"),
            ),
        })
    }

    fn get(&self, ns: &str, name: &str) -> Option<Value> {
        let key = (ns.to_string(), name.to_string());
        self.state.lock().unwrap().pods.get(&key).cloned()
    }

    fn list(&self, ns: Option<&str>) -> Response<Body> {
        let state = self.state.lock().unwrap();
        let items: Vec<Value> = state
            .pods
            .iter()
            .filter(|((pod_ns, _), _)| ns.is_none_or(|ns| ns == pod_ns))
            .map(|(_, pod)| pod.clone())
            .collect();
        json_response(
            StatusCode::OK,
            &json!({"kind": "PodList", "apiVersion": "v1", "items": items}),
        )
    }

    fn list_events(&self, ns: Option<&str>) -> Response<Body> {
        let state = self.state.lock().unwrap();
        let Some(events) = &state.events else {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource".into(),
            );
        };
        let items: Vec<&Value> = events
            .iter()
            .filter(|e| ns.is_none_or(|ns| e["metadata"]["namespace"] == ns))
            .collect();
        json_response(
            StatusCode::OK,
            &json!({"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": items}),
        )
    }

    fn create(&self, ns: &str, mut pod: Value) -> Response<Body> {
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if pod["spec"]["containers"][0]["image"].is_null() {
            return json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
                        "message": format!("Pod \"{name}\" is invalid: spec.containers[0].image: Required value"),
                        "details": {"name": name, "kind": "Pod", "causes": [
                            {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}]}}),
            );
        }
        let uid = {
            let mut state = self.state.lock().unwrap();
            state.next_uid += 1;
            format!("uid-{}", state.next_uid)
        };
        pod["metadata"]["uid"] = json!(uid);
        pod["metadata"]["namespace"] = json!(ns);
        pod["metadata"]["creationTimestamp"] = json!("2024-05-01T11:00:00Z");
        pod["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        pod["status"] = json!({"phase": "Pending"});
        self.insert(pod.clone());
        let _ = self.events.send(event("ADDED", &pod));
        json_response(StatusCode::CREATED, &pod)
    }

    fn replace(&self, ns: &str, name: &str, pod: Value) -> Response<Body> {
        if self.get(ns, name).is_none() {
            return not_found(name);
        }
        self.insert(pod.clone());
        let _ = self.events.send(event("MODIFIED", &pod));
        json_response(StatusCode::OK, &pod)
    }

    fn delete(&self, ns: &str, name: &str) -> Response<Body> {
        let Some(mut pod) = self.get(ns, name) else {
            return not_found(name);
        };
        pod["metadata"]["deletionTimestamp"] = json!("2024-05-01T12:00:00Z");
        self.insert(pod.clone());
        let fake = self.clone();
        let key = (ns.to_string(), name.to_string());
        let gone = pod.clone();
        tokio::spawn(async move {
            tokio::time::sleep(fake.grace).await;
            fake.state.lock().unwrap().pods.remove(&key);
            let _ = fake.events.send(event("DELETED", &gone));
        });
        json_response(StatusCode::OK, &pod)
    }

    fn watch(&self, ns: Option<String>) -> Response<Body> {
        let receiver = self.events.subscribe();
        let stream = futures::stream::unfold(receiver, move |mut receiver| {
            let ns = ns.clone();
            async move {
                loop {
                    match receiver.recv().await {
                        Ok(line) if line == END_OF_WATCH => return None,
                        Ok(line) => {
                            let event: Value = serde_json::from_str(&line).unwrap();
                            let pod_ns = event["object"]["metadata"]["namespace"]
                                .as_str()
                                .unwrap_or_default();
                            if ns.as_deref().is_none_or(|ns| ns == pod_ns) {
                                return Some((
                                    Ok::<_, Infallible>(Frame::data(Bytes::from(line))),
                                    receiver,
                                ));
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Response::new(BodyExt::boxed(StreamBody::new(stream)))
    }
}

/// Sent on the event channel to end every open watch stream.
const END_OF_WATCH: &str = "END\n";

fn not_found(name: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("pods \"{name}\" not found"),
    )
}

/// A running fake on a fresh socket.
struct Harness {
    fake: Fake,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(grace: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("berth.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let fake = Fake::new(grace);
        let server = fake.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let fake = server.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| fake.clone().handle(req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            fake,
            socket,
            _dir: dir,
        }
    }

    /// Runs `berth ARGS...`; returns (exit code, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let cli =
            Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied())).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(
            self.socket.clone(),
            cli.command,
            Streams {
                out: &mut out,
                err: &mut err,
            },
        )
        .await;
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }
}

fn running_pod(name: &str, ns: &str, containers: &[&str]) -> Value {
    let specs: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox"}))
        .collect();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({"name": c, "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
                        "state": {"running": {"startedAt": "2024-05-01T11:00:00Z"}}})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "creationTimestamp": "2024-05-01T11:00:00Z"},
           "spec": {"containers": specs},
           "status": {"phase": "Running", "containerStatuses": statuses}})
}

fn write_manifest(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn apply_creates_then_leaves_unchanged_then_configures() {
    let h = Harness::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let v1 = write_manifest(dir.path(), "web.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: busybox:1\n");
    assert_eq!(
        h.run(&["apply", "-f", &v1]).await,
        (0, "pod/web created\n".into(), String::new())
    );
    assert_eq!(
        h.run(&["apply", "-f", &v1]).await,
        (0, "pod/web unchanged\n".into(), String::new())
    );

    let v2 = write_manifest(dir.path(), "web2.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: busybox:2\n");
    assert_eq!(
        h.run(&["apply", "-f", &v2]).await,
        (0, "pod/web configured\n".into(), String::new())
    );
    let stored = h.fake.get("default", "web").unwrap();
    assert_eq!(stored["spec"]["containers"][0]["image"], "busybox:2");
    assert_eq!(
        stored["spec"]["containers"][0]["imagePullPolicy"], "Always",
        "server defaults are kept"
    );
    assert_eq!(stored["metadata"]["uid"], "uid-1");
}

#[tokio::test]
async fn apply_reports_invalid_pods_and_sends_nothing_for_broken_files() {
    let h = Harness::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let bad = write_manifest(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: app\n",
    );
    assert_eq!(
        h.run(&["apply", "-f", &bad]).await,
        (
            1,
            String::new(),
            "The Pod \"bad\" is invalid: spec.containers[0].image: Required value\n".into()
        )
    );

    let before = h.fake.requests().len();
    let broken = write_manifest(
        dir.path(),
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: [\n",
    );
    let (code, out, err) = h.run(&["apply", "-f", &broken]).await;
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with(&format!("error: error parsing {broken}: ")),
        "{err}"
    );
    assert_eq!(h.fake.requests().len(), before, "nothing was sent");
}

#[tokio::test]
async fn get_prints_tables_lists_and_not_found() {
    let h = Harness::start(Duration::ZERO).await;
    let (code, out, err) = h.run(&["get", "pods"]).await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "", "No resources found in default namespace.\n")
    );

    h.fake.insert(running_pod("web", "default", &["app"]));
    h.fake.insert(running_pod("db", "prod", &["pg"]));
    let (code, out, _) = h.run(&["get", "pods"]).await;
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "NAME   READY   STATUS    RESTARTS   AGE");
    assert!(
        lines[1].starts_with("web    1/1     Running   0          "),
        "{out}"
    );
    assert_eq!(lines.len(), 2);

    let (_, out, _) = h.run(&["get", "pods", "-A"]).await;
    assert!(
        out.starts_with("NAMESPACE   NAME   READY   STATUS    RESTARTS   AGE\ndefault     web "),
        "{out}"
    );
    assert!(out.contains("\nprod        db "), "{out}");

    let (code, out, _) = h.run(&["get", "pods", "-o", "json"]).await;
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            code,
            list["kind"].as_str(),
            list["items"][0]["metadata"]["name"].as_str()
        ),
        (0, Some("List"), Some("web"))
    );
    let (_, out, _) = h.run(&["get", "pod", "web", "-o", "name"]).await;
    assert_eq!(out, "pod/web\n");

    assert_eq!(
        h.run(&["get", "pod", "nope"]).await,
        (
            1,
            String::new(),
            "Error from server (NotFound): pods \"nope\" not found\n".into()
        )
    );
}

#[tokio::test]
async fn get_watch_prints_a_row_per_event_without_a_second_header() {
    let h = Harness::start(Duration::ZERO).await;
    h.fake.insert(running_pod("web", "default", &["app"]));
    let socket = h.socket.clone();
    let watcher = tokio::spawn(async move {
        let cli = Cli::try_parse_from(["berth", "get", "pods", "-w"]).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let fut = run_with(
            socket,
            cli.command,
            Streams {
                out: &mut out,
                err: &mut err,
            },
        );
        let code = tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("the watch ends when the server ends the stream");
        (code, String::from_utf8(out).unwrap())
    });
    // Wait until the watch is open, then change a pod.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !h.fake.requests().iter().any(|r| r.contains("watch=true")) {
        assert!(tokio::time::Instant::now() < deadline, "watch never opened");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut other = running_pod("a-longer-name", "default", &["app"]);
    other["metadata"]["uid"] = json!("uid-other");
    h.fake.insert(other.clone());
    let _ = h.fake.events.send(event("ADDED", &other));
    let _ = h.fake.events.send(END_OF_WATCH.to_string());
    let (code, out) = watcher.await.unwrap();
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("NAME   READY"), "{out}");
    assert!(lines[2].starts_with("a-longer-name   1/1"), "{out}");
}

#[tokio::test]
async fn delete_waits_for_the_deleted_event() {
    let h = Harness::start(Duration::from_millis(200)).await;
    h.fake.insert(running_pod("web", "default", &["app"]));
    let (code, out, err) = h.run(&["delete", "pod", "web"]).await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "pod \"web\" deleted from default namespace\n", "")
    );
    assert!(
        h.fake.get("default", "web").is_none(),
        "returned before the pod was gone"
    );
    let body = h.fake.state.lock().unwrap().bodies.last().cloned().unwrap();
    assert_eq!(body, json!({"kind": "DeleteOptions", "apiVersion": "v1"}));

    h.fake.insert(running_pod("db", "default", &["pg"]));
    let (code, out, err) = h
        .run(&["delete", "pod", "db", "--force", "--wait=false"])
        .await;
    assert_eq!(code, 0);
    assert_eq!(out, "pod \"db\" force deleted from default namespace\n");
    assert!(
        err.starts_with("Warning: Immediate deletion does not wait"),
        "{err}"
    );
    let body = h.fake.state.lock().unwrap().bodies.last().cloned().unwrap();
    assert_eq!(body["gracePeriodSeconds"], 0);

    assert_eq!(
        h.run(&["delete", "pod", "nope"]).await,
        (
            1,
            String::new(),
            "Error from server (NotFound): pods \"nope\" not found\n".into()
        )
    );
}

#[tokio::test]
async fn exec_mirrors_output_and_exit_code() {
    let h = Harness::start(Duration::ZERO).await;
    h.fake.insert(running_pod("web", "default", &["app"]));
    assert_eq!(
        h.run(&["exec", "web", "--", "echo", "hi"]).await,
        (
            3,
            "web:hi\n".into(),
            "warn\ncommand terminated with exit code 3\n".into()
        )
    );
    assert_eq!(
        h.fake.requests().last().unwrap(),
        "GET /api/v1/namespaces/default/pods/web/exec?container=app&stdout=true&stderr=true&command=echo&command=hi"
    );
}

#[tokio::test]
async fn logs_default_to_the_first_container_with_a_notice() {
    let h = Harness::start(Duration::ZERO).await;
    h.fake.insert(running_pod("web", "default", &["a", "b"]));
    assert_eq!(
        h.run(&["logs", "web", "--tail", "5"]).await,
        (
            0,
            "log of web (container=a&tailLines=5)\n".into(),
            "Defaulted container \"a\" out of: a, b\n".into()
        )
    );
    let (_, out, err) = h.run(&["logs", "pod/web", "-c", "b", "-p"]).await;
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("log of web (container=b&previous=true)\n", "")
    );
}

#[tokio::test]
async fn describe_without_events_endpoint_says_none() {
    let h = Harness::start(Duration::ZERO).await;
    h.fake.insert(running_pod("web", "default", &["app"]));
    let (code, out, _) = h.run(&["describe", "pod", "web"]).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Name:         web\nNamespace:    default\n"),
        "{out}"
    );
    assert!(
        out.ends_with("<none>\n") && out.contains("\nEvents:"),
        "{out}"
    );
}

/// A kubelet event about pod `pod`, seen `count` times, last `ago` before now.
fn pod_event(name: &str, ns: &str, pod: &str, reason: &str, count: i32, ago: i64) -> Value {
    let last = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(ago);
    let first = last - jiff::SignedDuration::from_secs(30);
    json!({"apiVersion": "v1", "kind": "Event",
           "metadata": {"name": name, "namespace": ns},
           "involvedObject": {"kind": "Pod", "name": pod, "namespace": ns, "uid": format!("uid-{pod}"),
                              "fieldPath": "spec.containers{app}"},
           "reason": reason, "message": format!("{reason} container app"), "type": "Normal",
           "count": count, "firstTimestamp": first.to_string(), "lastTimestamp": last.to_string(),
           "source": {"component": "kubelet"}})
}

#[tokio::test]
async fn get_events_lists_like_kubectl() {
    let h = Harness::start(Duration::ZERO).await;
    h.fake.state.lock().unwrap().events = Some(Vec::new());
    assert_eq!(
        h.run(&["get", "events"]).await,
        (
            0,
            String::new(),
            "No resources found in default namespace.\n".into()
        )
    );

    // Stored out of order: printed in the API server's (namespace, name) order.
    h.fake.state.lock().unwrap().events = Some(vec![
        pod_event("web.2", "default", "web", reasons::STARTED, 1, 5),
        pod_event("db.1", "prod", "db", reasons::PULLED, 1, 7),
        pod_event("web.1", "default", "web", reasons::CREATED, 3, 600),
    ]);
    let (code, out, err) = h.run(&["get", "ev"]).await;
    assert_eq!((code, err.as_str()), (0, ""));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "LAST SEEN   TYPE     REASON    OBJECT    MESSAGE");
    // Ages are computed at print time: allow a few seconds of test latency.
    let (age, rest) = lines[1].split_once(' ').unwrap();
    assert_eq!(
        (age, rest.trim_start()),
        ("10m", "Normal   Created   pod/web   Created container app"),
        "{out}"
    );
    let (age, rest) = lines[2].split_once(' ').unwrap();
    assert!(["5s", "6s", "7s"].contains(&age), "{out}");
    assert_eq!(
        rest.trim_start(),
        "Normal   Started   pod/web   Started container app"
    );

    let (_, out, _) = h.run(&["get", "events", "-A"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("NAMESPACE   LAST SEEN   TYPE"),
        "{out}"
    );
    assert!(lines[1].starts_with("default     10m "), "{out}");
    assert!(
        lines[3].starts_with("prod        ")
            && lines[3].ends_with("pod/db    Pulled container app"),
        "{out}"
    );

    let (code, out, _) = h.run(&["get", "events", "-n", "prod", "-o", "json"]).await;
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0);
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["involvedObject"]["uid"], "uid-db");
    let (_, yaml, _) = h.run(&["get", "events", "-n", "prod", "-o", "yaml"]).await;
    assert!(
        yaml.starts_with("apiVersion: v1\nitems:\n- apiVersion: v1\n"),
        "{yaml}"
    );
    assert!(
        yaml.ends_with("kind: List\nmetadata:\n  resourceVersion: \"\"\n"),
        "{yaml}"
    );

    let requests = h.fake.requests();
    assert!(
        requests.contains(&"GET /api/v1/namespaces/default/events".to_string()),
        "{requests:?}"
    );
    assert!(
        requests.contains(&"GET /api/v1/events".to_string()),
        "{requests:?}"
    );
    assert!(
        requests.contains(&"GET /api/v1/namespaces/prod/events".to_string()),
        "{requests:?}"
    );
}

/// What the fake serves as every pod's timeline.
fn timeline_of(pod: &str) -> Value {
    json!({"items": [
        {"time": "2024-05-01T11:00:00.250Z", "container": null, "step": "SandboxCreated", "detail": ""},
        {"time": "2024-05-01T11:00:00.300Z", "container": "app", "step": "ImageReady", "detail": format!("{pod}-image")},
        {"time": "2024-05-01T11:00:02.000Z", "container": "app", "step": "ContainerStarted", "detail": ""},
    ]})
}

#[tokio::test]
async fn trace_prints_the_timeline_or_not_found() {
    let h = Harness::start(Duration::ZERO).await;
    h.fake.insert(running_pod("web", "prod", &["app"]));
    let (code, out, err) = h.run(&["trace", "pod", "web", "-n", "prod"]).await;
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "TIME           +MS     CONTAINER   STEP               DETAIL\n\
         11:00:00.250   +0      -           SandboxCreated     \n\
         11:00:00.300   +50     app         ImageReady         web-image\n\
         11:00:02.000   +1750   app         ContainerStarted   \n"
    );

    let (code, out, _) = h
        .run(&["trace", "pod/web", "-n", "prod", "-o", "json"])
        .await;
    assert_eq!(code, 0);
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer, timeline_of("web"));

    assert_eq!(
        h.run(&["trace", "pod", "x"]).await,
        (
            1,
            String::new(),
            "Error from server (NotFound): pods \"x\" not found\n".into()
        )
    );
    let requests = h.fake.requests();
    assert!(
        requests.contains(&"GET /apis/berth.io/v1/namespaces/prod/pods/web/timeline".to_string()),
        "{requests:?}"
    );
    assert!(
        requests.contains(&"GET /apis/berth.io/v1/namespaces/default/pods/x/timeline".to_string()),
        "{requests:?}"
    );
}
