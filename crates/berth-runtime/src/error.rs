use std::fmt;

/// What kind of failure a runtime call met; decides what the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeErrorKind {
    /// The object does not exist (for removals this is success).
    NotFound,
    /// The object exists already.
    AlreadyExists,
    /// The image is not in the runtime.
    ImageNotPresent,
    /// The request cannot be turned into a container.
    InvalidSpec,
    /// The runtime cannot be reached.
    Unavailable,
    /// An image registry (and every mirror of it) cannot be reached; the
    /// kubelet's `RegistryUnavailable`. Registry answers such as "manifest
    /// unknown" or "unauthorized" are `Other`, with the registry's text.
    RegistryUnavailable,
    /// The operation did not finish in its time.
    Timeout,
    /// Anything else; the message says what.
    Other,
}

/// A failed runtime call: a kind to act on and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RuntimeError {
    pub kind: RuntimeErrorKind,
    pub message: String,
}

impl RuntimeError {
    pub fn new(kind: RuntimeErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(RuntimeErrorKind::NotFound, message)
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self::new(RuntimeErrorKind::Other, message)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == RuntimeErrorKind::NotFound
    }
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
