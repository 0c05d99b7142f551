//! The `httpGet` action of probes and hooks (docs/kubelet-semantics.md §6, §8.5): one
//! GET through one client shared by every pod (no proxy, no compression, no
//! keep-alive, TLS not verified), redirects followed only to the same host.

use std::error::Error as _;
use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, USER_AGENT};
use reqwest::{redirect, Url};

/// At most this much of an answer's body is read (the kubelet's limit).
const MAX_BODY: usize = 10 * 1024;

/// Go's HTTP client gives up after this many redirects.
const MAX_REDIRECTS: usize = 10;

/// The one client: built once, its connector and TLS set-up reused by every
/// probe and hook in the agent.
static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        // The kubelet turns keep-alives off: every attempt dials afresh, so a
        // probe tests the server's accept path and leaves no idle sockets.
        .pool_max_idle_per_host(0)
        // Probes and hooks talk to pods, which rarely have certificates a
        // node could verify; the kubelet does not verify them either.
        .tls_danger_accept_invalid_certs(true)
        .redirect(redirect::Policy::custom(same_host_redirects))
        .build()
        .expect("the probe HTTP client's settings are valid")
});

/// Follows a redirect only to the host of the first request (a redirect
/// elsewhere ends with the 3xx answer, as the kubelet's prober does).
fn same_host_redirects(attempt: redirect::Attempt<'_>) -> redirect::Action {
    let first = attempt.previous().first().and_then(Url::host_str);
    if attempt.previous().len() >= MAX_REDIRECTS {
        attempt.error(format!("stopped after {MAX_REDIRECTS} redirects"))
    } else if first.is_some() && attempt.url().host_str() != first {
        attempt.stop()
    } else {
        attempt.follow()
    }
}

/// What the server answered: the final status and the start of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpAnswer {
    pub status: u16,
    pub body: String,
}

/// The URL and headers of an `httpGet` action: the spec's scheme, host (else
/// `default_host`, the pod IP), port (named ports resolved among `ports`),
/// path and headers; `User-Agent` and `Accept: */*` unless the spec sets
/// them (an empty `Accept` removes it).
pub(crate) fn request(
    action: &HTTPGetAction,
    ports: &[ContainerPort],
    default_host: Option<&str>,
    user_agent: &'static str,
) -> Result<(Url, HeaderMap), String> {
    let url = url(action, ports, default_host)?;
    let mut headers = HeaderMap::new();
    headers.insert(USER_AGENT, HeaderValue::from_static(user_agent));
    headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    let mut overridden = Vec::new();
    for h in action.http_headers.iter().flatten() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|e| format!("header {:?}: {e}", h.name))?;
        let value =
            HeaderValue::from_str(&h.value).map_err(|e| format!("header {:?}: {e}", h.name))?;
        // The spec's headers replace the defaults (a `Host` one sets the
        // request's host); repeated names all go out.
        if !overridden.contains(&name) {
            headers.remove(&name);
            overridden.push(name.clone());
        }
        if name == ACCEPT && h.value.is_empty() {
            continue;
        }
        headers.append(name, value);
    }
    Ok((url, headers))
}

/// The URL an action targets, for requests and messages.
pub(crate) fn url(
    action: &HTTPGetAction,
    ports: &[ContainerPort],
    default_host: Option<&str>,
) -> Result<Url, String> {
    let scheme = action
        .scheme
        .as_deref()
        .unwrap_or("HTTP")
        .to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("unsupported scheme {scheme:?}"));
    }
    let host = action
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .or(default_host)
        .ok_or("the pod has no IP and no host is named")?;
    let port = resolve_port(&action.port, ports)?;
    let mut path = action.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let text = format!("{scheme}://{}{path}", authority(host, port));
    Url::parse(&text).map_err(|e| format!("invalid URL {text:?}: {e}"))
}

/// One GET within `timeout`; the answer's status and at most 10 KiB of its
/// body. Errors read as Go's client words them (`Get "URL": dial tcp …`).
pub(crate) async fn get(
    url: Url,
    headers: HeaderMap,
    timeout: Option<Duration>,
) -> Result<HttpAnswer, String> {
    let mut request = CLIENT.get(url.clone()).headers(headers);
    if let Some(timeout) = timeout {
        request = request.timeout(timeout);
    }
    let mut response = request.send().await.map_err(|e| go_error(&url, &e))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    // Read errors after the status are ignored, as the kubelet ignores them.
    while body.len() < MAX_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_BODY);
    Ok(HttpAnswer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A client error as Go's `net/http` prints it (naming the URL of the
/// request that failed, a redirect's target included).
fn go_error(url: &Url, e: &reqwest::Error) -> String {
    let url = e.url().unwrap_or(url);
    let what = if e.is_timeout() {
        "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_owned()
    } else if let Some(io) = io_source(e) {
        let port = url.port_or_known_default().unwrap_or_default();
        let host = url.host_str().unwrap_or_default();
        format!("dial tcp {}: {}", authority(host, port), go_dial_error(io))
    } else {
        let mut innermost: &dyn std::error::Error = e;
        while let Some(next) = innermost.source() {
            innermost = next;
        }
        innermost.to_string()
    };
    format!("Get {:?}: {what}", url.as_str())
}

fn io_source(e: &reqwest::Error) -> Option<&std::io::Error> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = s.source();
    }
    None
}

/// `host:port`, with an IPv6 host in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    let host = host.trim_matches(['[', ']']);
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A connect error in Go's words, as the kubelet's messages carry them
/// (`connect: connection refused`).
pub(crate) fn go_dial_error(e: &std::io::Error) -> String {
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

/// A numbered port, or a name looked up among the container's ports.
pub(crate) fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(n) => n,
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port: {name} in the container's ports"))?,
        },
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}
