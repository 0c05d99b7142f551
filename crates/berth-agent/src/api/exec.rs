//! `POST .../pods/{name}/exec`.
//!
//! This is berth's own simple exec protocol, not Kubernetes': the real one
//! upgrades the connection to SPDY or WebSockets to stream stdin/stdout/stderr.
//! Here the request is JSON `{"command": [...], "container": "c"}` and the
//! response, once the command has exited, is JSON
//! `{"exitCode": n, "stdout": "...", "stderr": "..."}` (output as lossy UTF-8).

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::body::{json_response, parse_json, read_body};
use super::routes::{Context, Reply};
use super::status::Failure;
use crate::service::PodService;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecRequest {
    command: Vec<String>,
    #[serde(default)]
    container: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecResponse {
    exit_code: i32,
    stdout: String,
    stderr: String,
}

pub(crate) async fn exec<S: PodService>(
    cx: &Context<S>,
    namespace: &str,
    name: &str,
    request: Request<Incoming>,
) -> Reply {
    let (parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body).await?;
    let request: ExecRequest = parse_json("the exec request", &bytes)?;
    if request.command.is_empty() {
        return Err(Failure::bad_request("you must specify at least 1 command"));
    }
    let container = request.container.as_deref().filter(|c| !c.is_empty());
    let output = cx
        .service
        .exec(namespace, name, container, request.command)
        .await
        .map_err(|e| Failure::from(e).for_pod(name))?;
    let response = ExecResponse {
        exit_code: output.exit_code,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    Ok(json_response(StatusCode::OK, &response))
}
