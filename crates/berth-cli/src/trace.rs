//! `trace pod NAME [-o json]`: the pod's lifecycle timeline, one step a line,
//! with millisecond times and the offset from the first step.

use std::io::Write;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{encode_query, Client, ClientError};
use crate::error::CliError;
use crate::output::to_json;
use crate::tabwriter::TabWriter;
use crate::target::pod_names;
use crate::{namespace_or_default, VerbResult};

#[derive(Debug, clap::Args)]
pub struct TraceArgs {
    /// `pod NAME` or `pod/NAME`
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    args: Vec<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
    /// Output format: json (the table otherwise)
    #[arg(short, long)]
    output: Option<String>,
}

/// One step as the agent serves it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Step {
    pub time: Timestamp,
    pub container: Option<String>,
    pub step: String,
    #[serde(default)]
    pub detail: String,
}

pub fn timeline_path(namespace: &str, name: &str) -> String {
    format!(
        "/apis/berth.io/v1/namespaces/{}/pods/{}/timeline",
        encode_query(namespace),
        encode_query(name)
    )
}

pub async fn run(
    client: &Client,
    args: TraceArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    let json = match args.output.as_deref() {
        None | Some("") => false,
        Some("json") => true,
        Some(other) => {
            return Err(CliError::usage(format!(
                "unable to match a printer suitable for the output format \"{other}\", allowed formats are: json"
            )))
        }
    };
    let name = match pod_names(&args.args)?.as_slice() {
        [name] => name.clone(),
        _ => return Err(CliError::usage("berth trace takes exactly one pod name")),
    };
    let namespace = namespace_or_default(args.namespace.as_deref());
    let answer = client.get(&timeline_path(&namespace, &name)).await?;
    if json {
        out.write_all(to_json(&answer).as_bytes())?;
        return Ok(0);
    }
    let steps = steps(answer)?;
    if steps.is_empty() {
        writeln!(err, "No timeline entries for pod \"{name}\" yet.")?;
        return Ok(0);
    }
    out.write_all(trace_table(&steps).as_bytes())?;
    Ok(0)
}

fn steps(mut answer: Value) -> Result<Vec<Step>, ClientError> {
    let items = answer
        .get_mut("items")
        .map(Value::take)
        .unwrap_or(Value::Array(Vec::new()));
    Ok(serde_json::from_value(items)?)
}

/// `TIME +MS CONTAINER STEP DETAIL`: times in UTC to the millisecond, and
/// each step's distance from the first.
pub fn trace_table(steps: &[Step]) -> String {
    let mut w = TabWriter::for_table();
    w.write_str("TIME\t+MS\tCONTAINER\tSTEP\tDETAIL\n");
    let Some(first) = steps.first().map(|s| s.time) else {
        return w.flush();
    };
    for step in steps {
        let offset = step.time.duration_since(first).as_millis();
        w.write_str(&format!(
            "{}\t+{offset}\t{}\t{}\t{}\n",
            step.time.strftime("%H:%M:%S%.3f"),
            step.container.as_deref().unwrap_or("-"),
            step.step,
            // A tab or newline in the detail would break the table.
            step.detail.replace(['\t', '\n'], " "),
        ));
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_shows_utc_millis_and_offsets() {
        let answer = json!({"items": [
            {"time": "2024-05-01T11:00:00.500Z", "container": null, "step": "SandboxCreated", "detail": ""},
            {"time": "2024-05-01T11:00:01.542Z", "container": "app", "step": "ImageReady", "detail": "busybox:latest"},
            {"time": "2024-05-01T11:01:01.542Z", "container": "app", "step": "PreStopFailed", "detail": "exit\tcode 1\nboom"},
        ]});
        let steps = steps(answer).unwrap();
        assert_eq!(
            trace_table(&steps),
            "TIME           +MS      CONTAINER   STEP             DETAIL\n\
             11:00:00.500   +0       -           SandboxCreated   \n\
             11:00:01.542   +1042    app         ImageReady       busybox:latest\n\
             11:01:01.542   +61042   app         PreStopFailed    exit code 1 boom\n"
        );
    }

    #[test]
    fn path_and_empty_answers() {
        assert_eq!(
            timeline_path("kube-system", "a b"),
            "/apis/berth.io/v1/namespaces/kube-system/pods/a%20b/timeline"
        );
        assert!(steps(json!({})).unwrap().is_empty());
        assert!(steps(json!({"items": [{"time": "nonsense", "step": "X"}]})).is_err());
    }
}
