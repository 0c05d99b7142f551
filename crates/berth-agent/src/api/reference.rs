//! Image references as docker's grammar (distribution/reference) accepts
//! them, checked before a pull or removal so that garbage is a 400 rather
//! than a registry round trip.

/// The longest repository name docker accepts.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// Checks `reference` (`[domain/]path[:tag][@digest]`); the error reads as
/// docker's "invalid reference format".
pub(crate) fn check(reference: &str) -> Result<(), String> {
    let invalid = |why: &str| {
        if why.is_empty() {
            format!("invalid reference format: {reference:?}")
        } else {
            format!("invalid reference format: {reference:?}: {why}")
        }
    };
    if reference.is_empty() {
        return Err("an image reference is required".into());
    }
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        if !is_digest(digest) {
            return Err(invalid("bad digest"));
        }
    }
    // A tag follows the last colon unless a slash comes after it (a port).
    let (repo, tag) = match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
        _ => (name, None),
    };
    if let Some(tag) = tag {
        if !is_tag(tag) {
            return Err(invalid("bad tag"));
        }
    }
    if repo.is_empty() || repo.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(invalid(""));
    }
    let (domain, path) = split_domain(repo);
    if let Some(domain) = domain {
        if !is_domain(domain) {
            return Err(invalid("bad registry host"));
        }
    }
    if path.split('/').all(is_path_component) {
        return Ok(());
    }
    if path
        .split('/')
        .all(|c| is_path_component(&c.to_ascii_lowercase()))
    {
        return Err(invalid("repository name must be lowercase"));
    }
    Err(invalid(""))
}

/// The registry host, when the first component names one (as docker decides).
fn split_domain(repo: &str) -> (Option<&str>, &str) {
    match repo.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, repo),
    }
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Dot-separated labels of letters, digits and inner hyphens, with a port.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    host.split('.').all(label_ok) && port_ok
}

/// `[\w][\w.-]{0,127}`.
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    (1..=128).contains(&bytes.len())
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`, the hex at least 32 digits (64 for sha256).
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm
        .split(['+', '.', '_', '-'])
        .all(|part| part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic))
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b));
    let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let length_ok = algorithm != "sha256" || hex.len() == 64;
    algorithm_ok && hex_ok && length_ok
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn docker_references_are_accepted() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        for good in [
            "busybox",
            "busybox:1.36",
            "library/busybox:latest",
            "docker.io/library/busybox:latest",
            "127.0.0.1:5000/berth/busybox:v1",
            "localhost/app",
            "Registry.Example.com/team/app_x__y-z.w:V1.0-rc_1",
            "quay.io/a/b/c",
            &format!("busybox@{digest}"),
            &format!("127.0.0.1:5000/app:v1@{digest}"),
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            ":latest",
            "busybox:",
            "busybox:-x",
            "busy box",
            "/busybox",
            "busybox/",
            "a//b",
            "-busybox",
            "busybox@sha256:abc",
            "busybox@sha256:zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "bad_host-:5000/app",
            "host:port/app",
        ] {
            assert!(check(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            check("library/BusyBox").unwrap_err(),
            "invalid reference format: \"library/BusyBox\": repository name must be lowercase"
        );
        assert_eq!(check("").unwrap_err(), "an image reference is required");
    }
}
