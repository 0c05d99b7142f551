//! Field errors and their rendering, as apimachinery's `field.Error` and
//! `errors.NewInvalid` print them.

use std::fmt;

/// The kind of a field error; `Display` gives the API server's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Required,
    Invalid,
    Duplicate,
    NotSupported,
    NotFound,
    Forbidden,
    TooLong,
    TooMany,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Required => "Required value",
            ErrorKind::Invalid => "Invalid value",
            ErrorKind::Duplicate => "Duplicate value",
            ErrorKind::NotSupported => "Unsupported value",
            ErrorKind::NotFound => "Not found",
            ErrorKind::Forbidden => "Forbidden",
            ErrorKind::TooLong => "Too long",
            ErrorKind::TooMany => "Too many",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The offending value as the API server quotes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadValue {
    /// Not shown (Required, Forbidden).
    Omitted,
    /// Shown quoted: `"data"`.
    Str(String),
    /// Shown bare: `70000`.
    Int(i64),
    /// Shown bare: `true`.
    Bool(bool),
    /// A nil pointer: shown as `"null"`.
    Null,
}

/// One field error: `spec.containers[0].image: Required value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path: `spec.volumes[1].name`.
    pub field: String,
    pub kind: ErrorKind,
    pub value: BadValue,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Required, BadValue::Omitted, detail)
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Forbidden, BadValue::Omitted, detail)
    }

    pub fn invalid(field: impl Into<String>, value: BadValue, detail: impl Into<String>) -> Self {
        Self::new(field, ErrorKind::Invalid, value, detail)
    }

    pub fn duplicate(field: impl Into<String>, value: BadValue) -> Self {
        Self::new(field, ErrorKind::Duplicate, value, "")
    }

    pub fn not_found(field: impl Into<String>, value: BadValue) -> Self {
        Self::new(field, ErrorKind::NotFound, value, "")
    }

    /// `Too long: may not be more than N bytes` (the value is never shown).
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        let detail = format!("may not be more than {max_bytes} bytes");
        Self::new(field, ErrorKind::TooLong, BadValue::Omitted, detail)
    }

    /// `Too many: 21: must have at most 20 items`.
    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        let detail = format!("must have at most {max} items");
        let actual = BadValue::Int(i64::try_from(actual).unwrap_or(i64::MAX));
        Self::new(field, ErrorKind::TooMany, actual, detail)
    }

    /// `Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: BadValue, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|v| format!("{v:?}")).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(field, ErrorKind::NotSupported, value, detail)
    }

    fn new(
        field: impl Into<String>,
        kind: ErrorKind,
        value: BadValue,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind,
            value,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind)?;
        if !matches!(
            self.kind,
            ErrorKind::Required | ErrorKind::Forbidden | ErrorKind::TooLong
        ) {
            match &self.value {
                BadValue::Omitted => {}
                BadValue::Str(s) => write!(f, ": {s:?}")?,
                BadValue::Int(n) => write!(f, ": {n}")?,
                BadValue::Bool(b) => write!(f, ": {b}")?,
                BadValue::Null => f.write_str(": \"null\"")?,
            }
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// Shorthand for a quoted string value.
pub(crate) fn s(value: &str) -> BadValue {
    BadValue::Str(value.to_string())
}

/// All the errors found in one object, printed like the API server's
/// `Pod "web" is invalid: [a, b]` (no brackets for a single error; repeated
/// messages shown once).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    /// The object's kind: `Pod`.
    pub kind: String,
    /// The object's name (may be empty when that is the problem).
    pub name: String,
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// `Ok` when `errors` is empty.
    pub fn check(kind: &str, name: &str, errors: Vec<FieldError>) -> Result<(), ValidationErrors> {
        if errors.is_empty() {
            return Ok(());
        }
        Err(ValidationErrors {
            kind: kind.into(),
            name: name.into(),
            errors,
        })
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut messages: Vec<String> = Vec::new();
        for e in &self.errors {
            let m = e.to_string();
            if !messages.contains(&m) {
                messages.push(m);
            }
        }
        write!(f, "{} {:?} is invalid: ", self.kind, self.name)?;
        match messages.as_slice() {
            [one] => f.write_str(one),
            many => write!(f, "[{}]", many.join(", ")),
        }
    }
}
