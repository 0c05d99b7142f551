//! The kubelet's event reasons (`pkg/kubelet/events/event.go`, and the
//! handlers that record their own), one place for the worker, describe and
//! the tests.

/// A pod ran past its `activeDeadlineSeconds` (`activeDeadlineHandler`).
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
