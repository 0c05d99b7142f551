//! The options of a pod's log request (`ValidatePodLogOptions`).

use super::errors::{BadValue, FieldError, ValidationErrors};

/// The numeric options of `GET .../pods/{name}/log`, as the query gave them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLogOptions {
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub since_seconds: Option<i64>,
    /// Whether `sinceTime` was given.
    pub since_time: bool,
}

/// Checks the options of a log request for pod `name`; the error reads
/// `PodLogOptions "web" is invalid: ...` (a 422).
pub fn validate_log_options(name: &str, opts: &PodLogOptions) -> Result<(), ValidationErrors> {
    let mut errs = Vec::new();
    if let Some(n) = opts.tail_lines.filter(|n| *n < 0) {
        errs.push(FieldError::invalid(
            "tailLines",
            BadValue::Int(n),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = opts.limit_bytes.filter(|n| *n < 1) {
        errs.push(FieldError::invalid(
            "limitBytes",
            BadValue::Int(n),
            "must be greater than 0",
        ));
    }
    match opts.since_seconds {
        Some(_) if opts.since_time => errs.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        Some(n) if n < 1 => errs.push(FieldError::invalid(
            "sinceSeconds",
            BadValue::Int(n),
            "must be greater than 0",
        )),
        _ => {}
    }
    ValidationErrors::check("PodLogOptions", name, errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(opts: PodLogOptions) -> String {
        match validate_log_options("web", &opts) {
            Ok(()) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_api_servers_rules_and_words() {
        let ok = PodLogOptions {
            tail_lines: Some(0),
            limit_bytes: Some(1),
            since_seconds: Some(1),
            since_time: false,
        };
        assert_eq!(message(ok), "");
        assert_eq!(
            message(PodLogOptions {
                since_seconds: Some(-1),
                ..Default::default()
            }),
            r#"PodLogOptions "web" is invalid: sinceSeconds: Invalid value: -1: must be greater than 0"#
        );
        assert_eq!(
            message(PodLogOptions {
                since_seconds: Some(0),
                ..Default::default()
            }),
            r#"PodLogOptions "web" is invalid: sinceSeconds: Invalid value: 0: must be greater than 0"#
        );
        assert_eq!(
            message(PodLogOptions {
                limit_bytes: Some(-1),
                ..Default::default()
            }),
            r#"PodLogOptions "web" is invalid: limitBytes: Invalid value: -1: must be greater than 0"#
        );
        assert_eq!(
            message(PodLogOptions {
                tail_lines: Some(-2),
                ..Default::default()
            }),
            r#"PodLogOptions "web" is invalid: tailLines: Invalid value: -2: must be greater than or equal to 0"#
        );
        assert_eq!(
            message(PodLogOptions {
                since_seconds: Some(-5),
                since_time: true,
                ..Default::default()
            }),
            r#"PodLogOptions "web" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"#
        );
    }
}
