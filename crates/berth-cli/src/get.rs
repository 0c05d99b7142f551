//! `get pods [NAME...] [-n NS | -A] [-o wide|json|yaml|name] [-w]`, and
//! `get events` (see [`crate::get_events`]).

use std::collections::HashMap;
use std::io::Write;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::client::{
    encode_query, pod_path, pods_path, ApiStatus, BodyStream, Client, ClientError,
};
use crate::error::{render, CliError};
use crate::get_events;
use crate::output::{list, name_line, to_json, to_yaml, OutputFormat};
use crate::table::{PodTable, TableOptions};
use crate::target::{decode_pod, name_of, pod_names, sorted_items, uid_of};
use crate::{namespace_or_default, VerbResult};

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// `pods [NAME...]`, `pod/NAME...` or `events`
    #[arg(required = true, value_name = "TYPE[/NAME]")]
    args: Vec<String>,
    /// The namespace of the request
    #[arg(short, long)]
    namespace: Option<String>,
    /// List pods of every namespace
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format: wide, json, yaml or name
    #[arg(short, long)]
    output: Option<String>,
    /// After listing, watch for changes
    #[arg(short, long)]
    watch: bool,
    /// Label selector (e.g. `app=web,tier!=db`, `env in (a,b)`)
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector (e.g. `status.phase=Running`)
    #[arg(long)]
    field_selector: Option<String>,
    /// Show every label as the last column
    #[arg(long)]
    show_labels: bool,
}

/// A watch event as the API streams it, one JSON object per line.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub object: Value,
}

/// Prints objects in the chosen format, remembering table widths.
struct Printer {
    format: OutputFormat,
    table: PodTable,
}

impl Printer {
    fn new(format: OutputFormat, all_namespaces: bool, show_labels: bool) -> Self {
        let options = TableOptions {
            wide: format == OutputFormat::Wide,
            with_namespace: all_namespaces,
            show_labels,
        };
        Self {
            format,
            table: PodTable::new(options),
        }
    }

    /// Objects printed one by one (table rows, names, or one document each).
    fn objects(&mut self, items: &[Value], now: Timestamp) -> Result<String, CliError> {
        Ok(match self.format {
            OutputFormat::Table | OutputFormat::Wide => {
                let pods = items
                    .iter()
                    .map(decode_pod)
                    .collect::<Result<Vec<_>, _>>()?;
                self.table.print(&pods, now)
            }
            OutputFormat::Name => items.iter().map(|v| name_line("pod", name_of(v))).collect(),
            OutputFormat::Json => items.iter().map(to_json).collect(),
            OutputFormat::Yaml => items
                .iter()
                .map(|v| format!("---\n{}", to_yaml(v)))
                .collect(),
        })
    }

    /// Objects printed as the answer of one `get`: JSON and YAML wrap several
    /// objects (or a listing) in a v1 `List`.
    fn answer(
        &mut self,
        items: Vec<Value>,
        single: bool,
        now: Timestamp,
    ) -> Result<String, CliError> {
        match self.format {
            OutputFormat::Json | OutputFormat::Yaml => {
                let value = if single && items.len() == 1 {
                    items.into_iter().next().expect("one item")
                } else {
                    list(items)
                };
                Ok(if self.format == OutputFormat::Json {
                    to_json(&value)
                } else {
                    to_yaml(&value)
                })
            }
            _ => self.objects(&items, now),
        }
    }
}

pub async fn run(
    client: &Client,
    args: GetArgs,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
) -> VerbResult {
    let format = match args.output.as_deref() {
        None | Some("") => OutputFormat::Table,
        Some(s) => s.parse().map_err(CliError::Usage)?,
    };
    let namespace = namespace_or_default(args.namespace.as_deref());
    let scope = (!args.all_namespaces).then_some(namespace.as_str());
    if let Some(kind) = args.args.first().filter(|k| get_events::is_event_type(k)) {
        if args.args.len() > 1 {
            return Err(CliError::usage(format!(
                "berth get {kind} lists every event of a namespace; it takes no names"
            )));
        }
        if args.watch {
            return Err(CliError::usage("berth get events does not support --watch"));
        }
        return get_events::run(client, scope, format, out, err).await;
    }
    let names = pod_names(&args.args)?;
    if args.all_namespaces && !names.is_empty() {
        return Err(CliError::usage(
            "a resource cannot be retrieved by name across all namespaces",
        ));
    }
    let selectors = Selectors::of(&args);
    if !names.is_empty() && !selectors.is_empty() {
        return Err(CliError::usage(
            "name cannot be provided when a selector is specified",
        ));
    }
    let mut printer = Printer::new(format, args.all_namespaces, args.show_labels);

    // Open the watch before listing so no change between the two is lost.
    let mut watch = match args.watch {
        true => Some(open_watch(client, scope, &names, &selectors).await?),
        false => None,
    };

    let mut found = Vec::new();
    let mut errors = Vec::new();
    if names.is_empty() {
        let path = format!("{}{}", pods_path(scope), selectors.query('?'));
        found = sorted_items(client.get(&path).await?);
    } else {
        for name in &names {
            match client.get(&pod_path(&namespace, name)).await {
                Ok(pod) => found.push(pod),
                Err(e) => errors.push(CliError::from(e)),
            }
        }
    }
    let now = Timestamp::now();
    let (text, listed) = if args.watch {
        let text = printer.objects(&found, now)?;
        let listed: HashMap<String, Value> = found
            .into_iter()
            .map(|pod| (uid_of(&pod).to_string(), pod))
            .collect();
        (text, listed)
    } else {
        (
            printer.answer(found, names.len() == 1, now)?,
            HashMap::new(),
        )
    };
    out.write_all(text.as_bytes())?;
    for e in &errors {
        err.write_all(render(e).as_bytes())?;
    }
    if text.is_empty() && errors.is_empty() {
        match scope {
            Some(ns) => writeln!(err, "No resources found in {ns} namespace.")?,
            None => writeln!(err, "No resources found")?,
        }
    }
    out.flush()?;
    if let Some(stream) = watch.as_mut() {
        follow_watch(stream, &names, listed, &mut printer, out).await?;
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// `-l` and `--field-selector`, sent for the server to apply.
struct Selectors {
    labels: Option<String>,
    fields: Option<String>,
}

impl Selectors {
    fn of(args: &GetArgs) -> Self {
        let given = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Self {
            labels: given(&args.selector),
            fields: given(&args.field_selector),
        }
    }

    fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    /// The query parameters, led by `first` (`?` or `&`), or nothing.
    fn query(&self, first: char) -> String {
        let params: Vec<String> = [
            ("labelSelector", &self.labels),
            ("fieldSelector", &self.fields),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some(format!("{key}={}", encode_query(value.as_ref()?))))
        .collect();
        match params.is_empty() {
            true => String::new(),
            false => format!("{first}{}", params.join("&")),
        }
    }
}

async fn open_watch(
    client: &Client,
    scope: Option<&str>,
    names: &[String],
    selectors: &Selectors,
) -> Result<BodyStream, CliError> {
    let mut path = format!("{}?watch=true{}", pods_path(scope), selectors.query('&'));
    if let [name] = names {
        path.push_str("&fieldSelector=");
        path.push_str(&encode_query(&format!("metadata.name={name}")));
    }
    let response = client.send(http::Method::GET, &path, None).await?;
    Ok(BodyStream::new(response))
}

/// Prints a row (or object) per event until the server ends the stream.
async fn follow_watch(
    stream: &mut BodyStream,
    names: &[String],
    mut listed: HashMap<String, Value>,
    printer: &mut Printer,
    out: &mut (dyn Write + Send),
) -> Result<(), CliError> {
    while let Some(line) = stream.line().await? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event: WatchEvent = serde_json::from_slice(&line).map_err(ClientError::Decode)?;
        if event.kind == "ERROR" {
            let status: ApiStatus = serde_json::from_value(event.object).unwrap_or_default();
            return Err(CliError::Client(ClientError::Api(Box::new(status))));
        }
        if !names.is_empty() && !names.iter().any(|n| n == name_of(&event.object)) {
            continue;
        }
        // A watch without a resource version may first replay what we listed.
        if event.kind == "ADDED"
            && listed.remove(uid_of(&event.object)).as_ref() == Some(&event.object)
        {
            continue;
        }
        let text = printer.objects(std::slice::from_ref(&event.object), Timestamp::now())?;
        out.write_all(text.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}
