//! Errors of the client verbs and kubectl's way of printing them
//! (kubectl `cmd/util/helpers.go` checkErr / StandardErrorMessage).

use crate::client::{ApiStatus, ClientError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A failure kubectl reports as `error: <message>`.
    #[error("{0}")]
    Usage(String),
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// The process exit code kubectl uses for errors.
    pub fn exit_code(&self) -> i32 {
        1
    }
}

/// kubectl's `AddSourceToErr`: names the file an API error came from.
pub fn with_source(err: CliError, verb: &str, source: &str) -> CliError {
    match err {
        // kubectl prints invalid objects from the status details instead.
        CliError::Client(ClientError::Api(mut status))
            if !source.is_empty() && status.reason != "Invalid" =>
        {
            status.message = format!("error when {verb} \"{source}\": {}", status.message);
            CliError::Client(ClientError::Api(status))
        }
        other => other,
    }
}

/// The text kubectl prints to stderr for `err`, newline-terminated.
pub fn render(err: &CliError) -> String {
    match err {
        CliError::Usage(message) => format!("error: {message}\n"),
        CliError::Client(ClientError::Api(status)) => render_status(status),
        CliError::Client(ClientError::Connect { socket, source }) => format!(
            "The connection to the berth agent at {} failed ({source}) - is the agent running?\n",
            socket.display()
        ),
        other => format!("error: {other}\n"),
    }
}

fn render_status(status: &ApiStatus) -> String {
    if status.reason == "Invalid" || (status.code == 422 && status.reason.is_empty()) {
        return render_invalid(status);
    }
    if status.reason.is_empty() {
        format!("Error from server: {}\n", status.message)
    } else {
        format!(
            "Error from server ({}): {}\n",
            status.reason, status.message
        )
    }
}

/// `The Pod "x" is invalid: <field>: <message>`, one cause per line when
/// there are several.
fn render_invalid(status: &ApiStatus) -> String {
    let details = status.details.as_ref();
    let causes = details.map(|d| d.causes.as_slice()).unwrap_or_default();
    let named = details.filter(|d| !d.kind.is_empty() || !d.name.is_empty());
    let Some(details) = named else {
        // Without details kubectl shows the server's message; the API
        // server's message already reads `Pod "x" is invalid: ...`.
        if is_invalid_object_message(&status.message) {
            return format!("The {}\n", status.message);
        }
        if status.message.is_empty() {
            return "The request is invalid\n".to_string();
        }
        return format!("The request is invalid: {}\n", status.message);
    };
    let prefix = format!("The {} \"{}\" is invalid", details.kind, details.name);
    match causes {
        [] => match invalid_message_rest(&status.message) {
            Some(rest) => format!("{prefix}: {rest}\n"),
            None => format!("{prefix}\n"),
        },
        [cause] => format!("{prefix}: {}\n", cause_text(cause)),
        many => {
            let mut out = format!("{prefix}: \n");
            for cause in many {
                out.push_str(&format!("* {}\n", cause_text(cause)));
            }
            out
        }
    }
}

fn cause_text(cause: &crate::client::StatusCause) -> String {
    format!("{}: {}", cause.field, cause.message)
}

/// `Kind "name" is invalid: rest`?
fn is_invalid_object_message(message: &str) -> bool {
    invalid_message_rest(message).is_some()
}

fn invalid_message_rest(message: &str) -> Option<&str> {
    let (kind, rest) = message.split_once(" \"")?;
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        return None;
    }
    let (_name, rest) = rest.split_once("\" is invalid: ")?;
    Some(rest)
}

/// Gives an `Invalid` status without details the object it was about, so it
/// prints as `The Pod "x" is invalid: ...`.
pub fn with_object(err: CliError, kind: &str, name: &str) -> CliError {
    match err {
        CliError::Client(ClientError::Api(mut status))
            if (status.reason == "Invalid" || status.code == 422) && status.details.is_none() =>
        {
            status.reason = "Invalid".to_string();
            if !is_invalid_object_message(&status.message) {
                status.message = format!("{kind} \"{name}\" is invalid: {}", status.message);
            }
            CliError::Client(ClientError::Api(status))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{StatusCause, StatusDetails};

    fn api(status: ApiStatus) -> CliError {
        CliError::Client(ClientError::Api(Box::new(status)))
    }

    #[test]
    fn not_found_reads_like_kubectl() {
        let err = api(ApiStatus {
            code: 404,
            reason: "NotFound".into(),
            message: "pods \"x\" not found".into(),
            details: None,
        });
        assert_eq!(
            render(&err),
            "Error from server (NotFound): pods \"x\" not found\n"
        );
    }

    #[test]
    fn invalid_with_causes_lists_them() {
        let cause = |field: &str, message: &str| StatusCause {
            reason: "FieldValueRequired".into(),
            field: field.into(),
            message: message.into(),
        };
        let mut status = ApiStatus {
            code: 422,
            reason: "Invalid".into(),
            message: "Pod \"x\" is invalid: spec.containers[0].image: Required value".into(),
            details: Some(StatusDetails {
                name: "x".into(),
                kind: "Pod".into(),
                causes: vec![cause("spec.containers[0].image", "Required value")],
            }),
        };
        assert_eq!(
            render(&api(status.clone())),
            "The Pod \"x\" is invalid: spec.containers[0].image: Required value\n"
        );
        status
            .details
            .as_mut()
            .unwrap()
            .causes
            .push(cause("spec.containers[0].name", "Required value"));
        assert_eq!(
            render(&api(status)),
            "The Pod \"x\" is invalid: \n* spec.containers[0].image: Required value\n* spec.containers[0].name: Required value\n"
        );
    }

    #[test]
    fn invalid_without_details_is_named_after_the_object() {
        let bare = api(ApiStatus {
            code: 422,
            reason: String::new(),
            message: "spec.containers: Required value".into(),
            details: None,
        });
        assert_eq!(
            render(&with_object(bare, "Pod", "web")),
            "The Pod \"web\" is invalid: spec.containers: Required value\n"
        );
        let server_text = api(ApiStatus {
            code: 422,
            reason: "Invalid".into(),
            message: "Pod \"web\" is invalid: spec: Forbidden: pod updates may not change fields"
                .into(),
            details: None,
        });
        assert_eq!(
            render(&server_text),
            "The Pod \"web\" is invalid: spec: Forbidden: pod updates may not change fields\n"
        );
    }

    #[test]
    fn source_is_added_to_api_errors() {
        let err = api(ApiStatus {
            code: 409,
            reason: "AlreadyExists".into(),
            message: "pods \"x\" already exists".into(),
            details: None,
        });
        assert_eq!(
            render(&with_source(err, "creating", "pod.yaml")),
            "Error from server (AlreadyExists): error when creating \"pod.yaml\": pods \"x\" already exists\n"
        );
        assert_eq!(render(&CliError::usage("boom")), "error: boom\n");
    }
}
