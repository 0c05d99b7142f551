//! The API request fuzz target's entry point (`fuzz/`), also run over its
//! seed corpus by the workspace's tests: arbitrary bytes as one HTTP/1.1
//! request, served in-process by the API socket's own connection code
//! against an in-memory pod service that defaults and validates pods as the
//! Supervisor does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_runtime::{ExecOutput, ImageInfo, PullProgress};
use k8s_openapi::api::core::v1::{Container, Event, ObjectReference, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::routes::Context;
use super::server::serve_connection;
use crate::service::{ApiError, LogOptions, LogTarget, PodService, PulledImage, WatchEvent};

/// What the in-memory pods' containers have logged.
const LOG: &str = "2024-01-02T03:04:05.000000001Z stdout F first line
2024-01-02T03:04:06Z stderr P a line in
2024-01-02T03:04:07Z stderr F  two parts
not a CRI line
2024-01-02T03:04:08.5Z stdout P no newline yet";

/// The name of the threads that run the API's blocking work (log reads)
/// for the fuzzer: a panic there ends a stream early rather than reaching
/// [`ApiFuzzer::request`], so a panic hook looks for it.
pub const BLOCKING_THREAD: &str = "berth-fuzz-blocking";

/// Serves fuzz inputs as API requests.
pub struct ApiFuzzer {
    log: PathBuf,
}

impl ApiFuzzer {
    /// Writes the log the in-memory pods serve into `dir`.
    pub fn new(dir: &Path) -> std::io::Result<ApiFuzzer> {
        let log = dir.join("0.log");
        std::fs::write(&log, LOG)?;
        Ok(ApiFuzzer { log })
    }

    /// Sends `data` as a request (given a `Content-Length` that matches its
    /// body unless it frames the body itself), to a fresh service holding
    /// one pod, `default/web`. Panics if the answer breaks the API's
    /// contract: every request is answered, with a well-formed response;
    /// a failure is a `Status` carrying the response's code; no input is
    /// a server error.
    pub fn request(&self, data: &[u8]) {
        let request = frame(data);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(BLOCKING_THREAD)
            .build()
            .expect("a tokio runtime");
        let response = runtime.block_on(exchange(&request, self.log.clone()));
        check(&request, &response);
    }
}

/// Serves `request` on one in-memory connection; returns the raw answer.
async fn exchange(request: &[u8], log: PathBuf) -> Vec<u8> {
    let service = Arc::new(MemoryPods::new(log));
    service
        .create("default", web())
        .await
        .expect("the seed pod is valid");
    let cx = Arc::new(Context {
        service,
        shutdown: CancellationToken::new(),
    });
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (mut reader, mut writer) = tokio::io::split(client);
    let send = async {
        // The server may answer and close before it read everything.
        let _ = writer.write_all(request).await;
        let _ = writer.shutdown().await;
    };
    let mut response = Vec::new();
    let receive = reader.read_to_end(&mut response);
    let ((), (), _) = tokio::join!(serve_connection(server, cx, true), send, receive);
    response
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `data` as a request: its head ends with an empty line, and a
/// `Content-Length` for the rest follows unless the head frames the body
/// (`Content-Length` or `Transfer-Encoding` of its own).
fn frame(data: &[u8]) -> Vec<u8> {
    let (head, body) = split_head(data);
    let lower = head.to_ascii_lowercase();
    let framed = find(&lower, b"\ncontent-length:").is_some()
        || find(&lower, b"\ntransfer-encoding:").is_some();
    let mut request = head.to_vec();
    if !request.ends_with(b"\n") {
        request.extend_from_slice(b"\r\n");
    }
    if !framed {
        request.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body);
    request
}

/// The head (up to the empty line, which is dropped) and the body.
fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    let mut start = 0;
    for (i, _) in data.iter().enumerate().filter(|(_, &b)| b == b'\n') {
        let line = &data[start..i];
        if start > 0 && (line.is_empty() || line == b"\r") {
            return (&data[..start], &data[i + 1..]);
        }
        start = i + 1;
    }
    (data, &[])
}

/// The contract every answer keeps.
fn check(request: &[u8], response: &[u8]) {
    let shown = || String::from_utf8_lossy(response).into_owned();
    if response.is_empty() {
        // hyper closes without an answer only on a request with no
        // request line at all.
        let first = request.split(|&b| b == b'\n').next().unwrap_or_default();
        assert!(
            first.iter().all(u8::is_ascii_whitespace),
            "no answer to a request"
        );
        return;
    }
    // Interim `100 Continue` answers come before the real one.
    let mut rest = response;
    let (code, headers, body) = loop {
        let end =
            find(rest, b"\r\n\r\n").unwrap_or_else(|| panic!("no response head: {}", shown()));
        let head = std::str::from_utf8(&rest[..end])
            .unwrap_or_else(|_| panic!("a response head is not text: {}", shown()));
        let mut lines = head.split("\r\n");
        let code = lines
            .next()
            .and_then(|line| {
                line.strip_prefix("HTTP/1.1 ")
                    .or_else(|| line.strip_prefix("HTTP/1.0 "))
            })
            .and_then(|line| line.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("no status line: {}", shown()));
        let headers: BTreeMap<String, String> = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("a malformed header: {}", shown()));
                (name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        rest = &rest[end + 4..];
        if !(100..200).contains(&code) {
            break (code, headers, rest);
        }
    };
    let content_type = headers.get("content-type").map(String::as_str);
    // hyper's own answer to a request in an HTTP version it does not speak.
    let unsupported_version = code == 505 && content_type.is_none();
    assert!(
        (200..500).contains(&code) || unsupported_version,
        "server error: {}",
        shown()
    );
    let length = headers.get("content-length").and_then(|l| l.parse().ok());
    if let (Some("application/json"), Some(length)) = (content_type, length) {
        let body = body
            .get(..length)
            .unwrap_or_else(|| panic!("a truncated body: {}", shown()));
        let value: serde_json::Value = serde_json::from_slice(body)
            .unwrap_or_else(|e| panic!("a JSON body that is not JSON ({e}): {}", shown()));
        if code >= 400 {
            assert_eq!(value["kind"], "Status", "{}", shown());
            assert_eq!(value["status"], "Failure", "{}", shown());
            assert_eq!(value["code"], code, "{}", shown());
        }
    }
}

/// The pod every fuzz input starts with.
fn web() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("busybox:1.36".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Pods in memory, defaulted and validated as the Supervisor does; every
/// container has exited after logging [`LOG`]. Never an internal error: the
/// API's own failures are the only 5xx there could be. Every answer ends by
/// itself: a follow ends at the end of the log (the containers have exited),
/// a watch after the current pods.
struct MemoryPods {
    pods: Mutex<BTreeMap<(String, String), Pod>>,
    log: PathBuf,
}

impl MemoryPods {
    fn new(log: PathBuf) -> MemoryPods {
        MemoryPods {
            pods: Mutex::default(),
            log,
        }
    }

    fn pods(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Pod>> {
        self.pods.lock().expect("pods lock")
    }
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_owned(), name.to_owned())
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("pods \"{name}\" not found"))
}

fn invalid(error: impl ToString) -> ApiError {
    ApiError::Invalid(error.to_string())
}

impl PodService for MemoryPods {
    async fn create(&self, namespace: &str, mut pod: Pod) -> Result<Pod, ApiError> {
        pod.metadata.namespace = Some(namespace.to_owned());
        berth_api::defaults::apply_defaults(&mut pod);
        berth_api::validation::validate_pod(&pod).map_err(invalid)?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut pods = self.pods();
        if pods.contains_key(&key(namespace, &name)) {
            return Err(ApiError::AlreadyExists(format!(
                "pods \"{name}\" already exists"
            )));
        }
        pod.metadata.uid = Some(format!("uid-{}", pods.len()));
        pod.metadata.resource_version = Some(pods.len().to_string());
        pods.insert(key(namespace, &name), pod.clone());
        Ok(pod)
    }

    async fn replace(&self, namespace: &str, name: &str, mut pod: Pod) -> Result<Pod, ApiError> {
        let old = self.get(namespace, name)?;
        pod.metadata.namespace = Some(namespace.to_owned());
        berth_api::defaults::apply_defaults(&mut pod);
        berth_api::validation::validate_pod(&pod).map_err(invalid)?;
        berth_api::validation::validate_update(&old, &pod).map_err(invalid)?;
        self.pods().insert(key(namespace, name), pod.clone());
        Ok(pod)
    }

    fn get(&self, namespace: &str, name: &str) -> Result<Pod, ApiError> {
        let pods = self.pods();
        pods.get(&key(namespace, name))
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    fn list(&self, namespace: Option<&str>) -> Vec<Pod> {
        let pods = self.pods();
        pods.iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .map(|(_, pod)| pod.clone())
            .collect()
    }

    async fn delete(
        &self,
        namespace: &str,
        name: &str,
        grace: Option<i64>,
    ) -> Result<Pod, ApiError> {
        if grace.is_some_and(|g| g < 0) {
            return Err(invalid(
                "gracePeriodSeconds: Invalid value: must be greater than or equal to 0",
            ));
        }
        let pod = self.pods().remove(&key(namespace, name));
        pod.ok_or_else(|| not_found(name))
    }

    fn watch(&self) -> broadcast::Receiver<WatchEvent> {
        // Closed: nothing changes during one request.
        broadcast::channel(1).1
    }

    fn log_target(
        &self,
        namespace: &str,
        name: &str,
        _options: &LogOptions,
    ) -> Result<LogTarget, ApiError> {
        self.get(namespace, name)?;
        Ok(LogTarget {
            path: self.log.clone(),
            running: false,
        })
    }

    async fn exec(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
        command: Vec<String>,
    ) -> Result<ExecOutput, ApiError> {
        self.get(namespace, name)?;
        Ok(ExecOutput {
            exit_code: 1,
            stdout: format!("{}: {}", container.unwrap_or("app"), command.join(" ")).into_bytes(),
            stderr: vec![0xff],
        })
    }

    async fn import_image(&self, path: PathBuf) -> Result<Vec<ImageInfo>, ApiError> {
        Err(ApiError::BadRequest(format!(
            "{} is not an image archive",
            path.display()
        )))
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, ApiError> {
        Ok(vec![busybox()])
    }

    async fn pull_image(
        &self,
        _reference: &str,
        progress: mpsc::UnboundedSender<PullProgress>,
    ) -> Result<PulledImage, ApiError> {
        let _ = progress.send(PullProgress {
            layer: "sha256:0".into(),
            done: 1,
            total: 2,
        });
        Ok(PulledImage {
            image: busybox(),
            up_to_date: false,
        })
    }

    async fn remove_image(&self, reference: &str) -> Result<String, ApiError> {
        Err(ApiError::NotFound(format!(
            "image \"{reference}\" not found"
        )))
    }

    fn events(&self, namespace: Option<&str>) -> Vec<Event> {
        self.list(namespace)
            .into_iter()
            .map(|pod| Event {
                involved_object: ObjectReference {
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    namespace: pod.metadata.namespace.clone(),
                    uid: pod.metadata.uid.clone(),
                    ..ObjectReference::default()
                },
                reason: Some("Scheduled".into()),
                type_: Some("Normal".into()),
                metadata: ObjectMeta {
                    name: Some(format!("{}.1", pod.metadata.name.unwrap_or_default())),
                    ..ObjectMeta::default()
                },
                ..Event::default()
            })
            .collect()
    }
}

fn busybox() -> ImageInfo {
    ImageInfo {
        reference: "docker.io/library/busybox:1.36".into(),
        digest: "sha256:0".into(),
        size: 1,
        config: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_adds_a_content_length_unless_the_head_has_one() {
        assert_eq!(
            frame(b"POST /x HTTP/1.1\nhost: a\n\n{}"),
            b"POST /x HTTP/1.1\nhost: a\ncontent-length: 2\r\n\r\n{}"
        );
        assert_eq!(
            frame(b"GET / HTTP/1.1"),
            b"GET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
        let chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(frame(chunked), chunked);
    }
}
