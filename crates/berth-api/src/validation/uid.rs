//! A UID a pod's source chose. The API assigns its own, but a static pod
//! keeps the `metadata.uid` its manifest sets (as the kubelet's file source
//! does), and berth names the pod's directories after it (they are removed
//! with the pod), so it must be a plain name: berth's rule, which admits
//! UUIDs and the kubelet's hashes.

use k8s_openapi::api::core::v1::Pod;

use super::errors::{s, FieldError};
use super::ValidationErrors;

/// The longest UID: a SHA-256 in hex.
const MAX_UID_LENGTH: usize = 64;

/// Checks the pod's `metadata.uid`, when it has one.
pub fn validate_uid(pod: &Pod) -> Result<(), ValidationErrors> {
    let errors = pod
        .metadata
        .uid
        .as_deref()
        .and_then(uid_error)
        .into_iter()
        .collect();
    ValidationErrors::check(
        "Pod",
        pod.metadata.name.as_deref().unwrap_or_default(),
        errors,
    )
}

fn uid_error(uid: &str) -> Option<FieldError> {
    let plain = (1..=MAX_UID_LENGTH).contains(&uid.len())
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (!plain).then(|| {
        FieldError::invalid(
            "metadata.uid",
            s(uid),
            format!("must be 1 to {MAX_UID_LENGTH} letters, digits or '-'"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::pod;

    fn with_uid(uid: &str) -> Pod {
        let mut p = pod("web");
        p.metadata.uid = Some(uid.into());
        p
    }

    #[test]
    fn uids_must_be_plain_names() {
        assert!(validate_uid(&pod("web")).is_ok());
        for good in [
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            "9b1deb4d3b7d4bad9bdd2b0d7b3dcb6d",
            &"a".repeat(64),
        ] {
            assert!(validate_uid(&with_uid(good)).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../../x",
            "a/b",
            "..",
            "a.b",
            "a_b",
            "x\0",
            &"a".repeat(65),
        ] {
            assert!(validate_uid(&with_uid(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            validate_uid(&with_uid("../../x")).unwrap_err().to_string(),
            r#"Pod "web" is invalid: metadata.uid: Invalid value: "../../x": must be 1 to 64 letters, digits or '-'"#
        );
    }
}
