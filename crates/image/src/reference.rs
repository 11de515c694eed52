//! Image references: `repo[:tag]`, `repo@sha256:..` and bare `sha256:..` digests.
//!
//! Names are kept as given (no implicit `docker.io/library/` prefix): the store is local, and
//! a registry pull records the name it pulled under. Only [`remote`], which says where to pull
//! a name from, applies Docker Hub's defaults to names without a registry host.

use crate::digest::Digest;
use crate::error::ImageError;

const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
/// Where names without a registry host are pulled from, and the host its API really lives on.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

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

/// What a registry is asked for: a tag, or a manifest by digest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    Tag(String),
    Digest(Digest),
}

/// Where a reference's image lives in a registry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Remote {
    /// `host[:port]` as written (`docker.io` when omitted): the key of credentials and of the
    /// insecure-registry list.
    pub registry: String,
    /// `host[:port]` the API requests go to.
    pub endpoint: String,
    /// Repository path inside the registry.
    pub repository: String,
    pub target: Target,
    /// The name the pulled image is recorded under: `repo:tag`, or `repo@digest` when pulled
    /// by digest, so that the same reference finds it again.
    pub record: String,
}

/// Whether `reference` names a registry host (`host[:port]/repo...`), the form a machine
/// config must use for roost to pull an image it does not have.
pub fn names_registry(reference: &str) -> bool {
    split_host(reference).0.is_some()
}

/// Where to pull `reference` from. A bare digest names no repository and is refused.
pub(crate) fn remote(reference: &str) -> Result<Remote, ImageError> {
    let (repo, target, record) = match parse(reference)? {
        Lookup::Tagged(record) => (
            repo_of(&record).to_owned(),
            Target::Tag(tag_of(&record).to_owned()),
            record,
        ),
        Lookup::Pinned { repo, digest } => {
            let record = format!("{repo}@{digest}");
            (repo, Target::Digest(digest), record)
        }
        Lookup::Digest(_) => {
            return Err(invalid(
                reference,
                "a bare digest does not say which registry and repository to pull from",
            ))
        }
    };
    let (registry, repository) = match split_host(&repo) {
        (Some(host), path) => (host.to_owned(), path.to_owned()),
        (None, path) => (DOCKER_HUB.to_owned(), path.to_owned()),
    };
    let (endpoint, repository) = if registry == DOCKER_HUB {
        let repository = if repository.contains('/') {
            repository
        } else {
            format!("library/{repository}")
        };
        (DOCKER_HUB_API.to_owned(), repository)
    } else {
        (registry.clone(), repository)
    };
    Ok(Remote {
        registry,
        endpoint,
        repository,
        target,
        record,
    })
}

/// Splits a leading registry host off a repository path. A first component is a host when
/// more components follow and it has a `.` or `:` or is `localhost`, as Docker decides.
fn split_host(repo: &str) -> (Option<&str>, &str) {
    match repo.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, repo),
    }
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
    let (host, path) = split_host(repo);
    if let Some(host) = host {
        validate_host(host)?;
    }
    path.split('/').try_for_each(validate_component)
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
    fn remotes_name_registry_repository_and_target() {
        let tagged = remote("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(tagged.registry, "127.0.0.1:5000");
        assert_eq!(tagged.endpoint, "127.0.0.1:5000");
        assert_eq!(tagged.repository, "team/app");
        assert_eq!(tagged.target, Target::Tag("v1".into()));
        assert_eq!(tagged.record, "127.0.0.1:5000/team/app:v1");

        let pinned = remote(&format!("localhost/app@sha256:{HEX}")).unwrap();
        assert_eq!(pinned.registry, "localhost");
        assert!(matches!(pinned.target, Target::Digest(_)));
        assert_eq!(pinned.record, format!("localhost/app@sha256:{HEX}"));

        let hub = remote("busybox").unwrap();
        assert_eq!(
            (hub.registry.as_str(), hub.endpoint.as_str()),
            (DOCKER_HUB, DOCKER_HUB_API)
        );
        assert_eq!(hub.repository, "library/busybox");
        assert_eq!(remote("me/app").unwrap().repository, "me/app");

        assert!(remote(&format!("sha256:{HEX}")).is_err());
        assert!(names_registry("localhost:5000/app"));
        assert!(!names_registry("busybox:latest"));
        assert!(!names_registry("team/app"));
    }

    #[test]
    fn repo_and_tag_split_after_the_port() {
        assert_eq!(repo_of("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(tag_of("localhost:5000/app:v1"), "v1");
    }
}
