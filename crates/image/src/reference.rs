//! Image references: `repo[:tag]`, `repo@sha256:..` and bare `sha256:..` digests.
//!
//! Names are kept as given (no implicit `docker.io/library/` prefix): the store is local, and
//! a registry pull records the name it pulled under.

use crate::digest::Digest;
use crate::error::ImageError;

const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;

/// How [`crate::ImageStore::get`] finds an image.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup {
    /// A normalized `repo:tag`.
    Tagged(String),
    /// `repo@digest`: an image of that repository with that manifest digest.
    Pinned { repo: String, digest: Digest },
    /// Any image with that manifest digest.
    Digest(Digest),
}

/// Normalizes a name to import under: `repo` becomes `repo:latest`; digests are refused,
/// since a digest is computed from the content, not chosen.
pub(crate) fn normalize_name(name: &str) -> Result<String, ImageError> {
    match parse(name)? {
        Lookup::Tagged(reference) => Ok(reference),
        Lookup::Pinned { .. } | Lookup::Digest(_) => Err(invalid(
            name,
            "an image is imported under a name with an optional tag, not a digest",
        )),
    }
}

/// The repository part of a normalized `repo:tag`.
pub(crate) fn repo_of(reference: &str) -> &str {
    reference
        .rsplit_once(':')
        .map_or(reference, |(repo, _)| repo)
}

/// The tag part of a normalized `repo:tag`.
pub(crate) fn tag_of(reference: &str) -> &str {
    reference
        .rsplit_once(':')
        .map_or(DEFAULT_TAG, |(_, tag)| tag)
}

pub(crate) fn parse(reference: &str) -> Result<Lookup, ImageError> {
    if reference.is_empty() {
        return Err(invalid(reference, "it is empty"));
    }
    if reference.len() > MAX_NAME_LEN {
        return Err(invalid(
            reference,
            &format!("it is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    if reference.starts_with("sha256:") {
        return Digest::parse(reference)
            .map(Lookup::Digest)
            .map_err(|reason| invalid(reference, &reason));
    }
    if let Some((repo, digest)) = reference.split_once('@') {
        validate_repo(repo).map_err(|reason| invalid(reference, &reason))?;
        let digest = Digest::parse(digest).map_err(|reason| invalid(reference, &reason))?;
        return Ok(Lookup::Pinned {
            repo: repo.to_owned(),
            digest,
        });
    }
    // A ':' after the last '/' separates the tag; one before it is a registry port.
    let (repo, tag) = match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, DEFAULT_TAG),
    };
    validate_repo(repo).map_err(|reason| invalid(reference, &reason))?;
    validate_tag(tag).map_err(|reason| invalid(reference, &reason))?;
    Ok(Lookup::Tagged(format!("{repo}:{tag}")))
}

fn invalid(reference: &str, reason: &str) -> ImageError {
    ImageError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Repository names follow the distribution spec: lowercase path components separated by `/`,
/// the first of which may be a registry host with a port.
fn validate_repo(repo: &str) -> Result<(), String> {
    let mut components: Vec<&str> = repo.split('/').collect();
    let first = components[0];
    let is_host = components.len() > 1
        && (first.contains('.') || first.contains(':') || first == "localhost");
    if is_host {
        validate_host(first)?;
        components.remove(0);
    }
    components.into_iter().try_for_each(validate_component)
}

fn validate_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if name_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "registry host '{host}' is not a valid 'host[:port]'"
        ))
    }
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn validate_component(component: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "repository component '{component}' must be lowercase letters and digits, \
             joined by '.', '_', '__' or dashes"
        ))
    };
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
        return bad();
    }
    for separator in component.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        let allowed =
            matches!(separator, "" | "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return bad();
        }
    }
    Ok(())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, as the distribution spec defines tags.
fn validate_tag(tag: &str) -> Result<(), String> {
    let valid = (1..=128).contains(&tag.len())
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag '{tag}' must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn names_are_normalized_with_latest() {
        assert_eq!(normalize_name("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize_name("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(
            normalize_name("localhost:5000/team/app").unwrap(),
            "localhost:5000/team/app:latest"
        );
        assert_eq!(
            normalize_name("registry.example:5000/a__b/c-d.e:v1_x").unwrap(),
            "registry.example:5000/a__b/c-d.e:v1_x"
        );
    }

    #[test]
    fn digests_parse_as_lookups() {
        let digest = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(
            parse(&format!("sha256:{HEX}")).unwrap(),
            Lookup::Digest(digest.clone())
        );
        assert_eq!(
            parse(&format!("app@sha256:{HEX}")).unwrap(),
            Lookup::Pinned {
                repo: "app".into(),
                digest
            }
        );
    }

    #[test]
    fn bad_references_are_rejected_with_the_reason() {
        for (reference, reason) in [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("a//b", "lowercase"),
            ("app:", "tag ''"),
            ("app:-x", "tag '-x'"),
            ("app:a/b", "registry host"),
            ("sha256:xyz", "64 lowercase hex"),
            ("app@md5:abc", "not supported"),
            ("bad host:1/app", "'bad host:1'"),
            ("-app", "lowercase"),
            ("a..b", "lowercase"),
        ] {
            let err = parse(reference).unwrap_err();
            assert!(
                matches!(&err, ImageError::InvalidReference { .. }),
                "{reference}: {err}"
            );
            assert!(err.to_string().contains(reason), "{reference}: {err}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than"));
    }

    #[test]
    fn digests_cannot_name_an_import() {
        let err = normalize_name(&format!("app@sha256:{HEX}")).unwrap_err();
        assert!(err.to_string().contains("not a digest"), "{err}");
    }

    #[test]
    fn repo_and_tag_split_after_the_port() {
        assert_eq!(repo_of("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(tag_of("localhost:5000/app:v1"), "v1");
    }
}
