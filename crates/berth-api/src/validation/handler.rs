//! Probes and lifecycle hooks: exactly one handler each, valid ports and
//! thresholds (`validateProbe`, `validateHandler`, `validateLifecycle`).

use k8s_openapi::api::core::v1::{
    ExecAction, GRPCAction, HTTPGetAction, Lifecycle, LifecycleHandler, Probe, SleepAction,
    TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::errors::{s, BadValue, FieldError};
use super::names;

/// The union of probe and lifecycle handler actions.
#[derive(Default)]
struct Handler<'a> {
    exec: Option<&'a ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
    grpc: Option<&'a GRPCAction>,
    sleep: Option<&'a SleepAction>,
}

/// A probe; `must_succeed_once` for liveness and startup probes, whose
/// successThreshold must be 1.
pub(super) fn probe(p: &Probe, path: &str, must_succeed_once: bool) -> Vec<FieldError> {
    let handler = Handler {
        exec: p.exec.as_ref(),
        http_get: p.http_get.as_ref(),
        tcp_socket: p.tcp_socket.as_ref(),
        grpc: p.grpc.as_ref(),
        sleep: None,
    };
    let mut errs = handler_errors(&handler, path, None);
    let numbers = [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ];
    for (field, value) in numbers {
        if let Some(v) = value.filter(|v| *v < 0) {
            errs.push(FieldError::invalid(
                format!("{path}.{field}"),
                BadValue::Int(v.into()),
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(grace) = p.termination_grace_period_seconds.filter(|g| *g <= 0) {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            BadValue::Int(grace),
            "must be greater than 0",
        ));
    }
    // Unset is defaulted to 1.
    if let Some(threshold) = p
        .success_threshold
        .filter(|t| must_succeed_once && *t != 1 && *t != 0)
    {
        errs.push(FieldError::invalid(
            format!("{path}.successThreshold"),
            BadValue::Int(threshold.into()),
            "must be 1",
        ));
    }
    errs
}

/// postStart and preStop hooks; `grace` bounds sleep actions.
pub(super) fn lifecycle(l: &Lifecycle, path: &str, grace: Option<i64>) -> Vec<FieldError> {
    let hooks = [("postStart", &l.post_start), ("preStop", &l.pre_stop)];
    let mut errs = Vec::new();
    for (name, hook) in hooks {
        if let Some(h) = hook {
            errs.extend(handler_errors(
                &lifecycle_handler(h),
                &format!("{path}.{name}"),
                grace,
            ));
        }
    }
    errs
}

fn lifecycle_handler(h: &LifecycleHandler) -> Handler<'_> {
    Handler {
        exec: h.exec.as_ref(),
        http_get: h.http_get.as_ref(),
        tcp_socket: h.tcp_socket.as_ref(),
        grpc: None,
        sleep: h.sleep.as_ref(),
    }
}

fn handler_errors(h: &Handler, path: &str, grace: Option<i64>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut count = 0;
    let mut take = |field: &str, set: bool, errs: &mut Vec<FieldError>| -> bool {
        if !set {
            return false;
        }
        count += 1;
        if count > 1 {
            errs.push(FieldError::forbidden(
                format!("{path}.{field}"),
                "may not specify more than 1 handler type",
            ));
            return false;
        }
        true
    };
    if take("exec", h.exec.is_some(), &mut errs) {
        let exec = h.exec.unwrap();
        if exec.command.as_ref().is_none_or(|c| c.is_empty()) {
            errs.push(FieldError::required(format!("{path}.exec.command"), ""));
        }
    }
    if take("httpGet", h.http_get.is_some(), &mut errs) {
        errs.extend(http_get(h.http_get.unwrap(), &format!("{path}.httpGet")));
    }
    if take("tcpSocket", h.tcp_socket.is_some(), &mut errs) {
        errs.extend(port_num_or_name(
            &h.tcp_socket.unwrap().port,
            &format!("{path}.tcpSocket.port"),
        ));
    }
    if take("grpc", h.grpc.is_some(), &mut errs) {
        let port = i64::from(h.grpc.unwrap().port);
        let field = format!("{path}.grpc.port");
        errs.extend(
            names::port_number(port)
                .into_iter()
                .map(|m| FieldError::invalid(&field, BadValue::Int(port), m)),
        );
    }
    if take("sleep", h.sleep.is_some(), &mut errs) {
        let seconds = h.sleep.unwrap().seconds;
        if let Some(grace) = grace.filter(|g| seconds < 0 || seconds > *g) {
            let msg = format!(
                "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
            );
            errs.push(FieldError::invalid(
                format!("{path}.sleep"),
                BadValue::Int(seconds),
                msg,
            ));
        }
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a handler type"));
    }
    errs
}

fn http_get(http: &HTTPGetAction, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if http.path.as_deref() == Some("") {
        errs.push(FieldError::required(format!("{path}.path"), ""));
    }
    errs.extend(port_num_or_name(&http.port, &format!("{path}.port")));
    if let Some(scheme) = http
        .scheme
        .as_deref()
        .filter(|s| *s != "HTTP" && *s != "HTTPS")
    {
        errs.push(FieldError::not_supported(
            format!("{path}.scheme"),
            s(scheme),
            &["HTTP", "HTTPS"],
        ));
    }
    for header in http.http_headers.iter().flatten() {
        let field = format!("{path}.httpHeaders");
        errs.extend(
            names::http_header_name(&header.name)
                .into_iter()
                .map(|m| FieldError::invalid(&field, s(&header.name), m)),
        );
    }
    errs
}

fn port_num_or_name(port: &IntOrString, path: &str) -> Vec<FieldError> {
    match port {
        IntOrString::Int(n) => {
            let n = i64::from(*n);
            names::port_number(n)
                .into_iter()
                .map(|m| FieldError::invalid(path, BadValue::Int(n), m))
                .collect()
        }
        IntOrString::String(name) => names::port_name(name)
            .into_iter()
            .map(|m| FieldError::invalid(path, s(name), m))
            .collect(),
    }
}
