//! CORS for browsers: preflight requests (`OPTIONS`) answered from the
//! bucket's rules, and the matching rule's headers on actual answers.
//!
//! A rule matches when one of its origins matches the request's `Origin`
//! (an origin may hold one `*`, standing for any run of characters), the
//! method asked for (`Access-Control-Request-Method`, else the request's
//! own) is one of its methods, and every header a preflight asks for
//! (`Access-Control-Request-Headers`) matches one of its allowed headers
//! (case-insensitively, `*` as in origins). The first matching rule wins,
//! as in S3.

use crate::record::CorsRule;
use crate::store::ObjectStore;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use s3s::{S3Error, S3ErrorCode};

const REQUEST_METHOD: &str = "access-control-request-method";
const REQUEST_HEADERS: &str = "access-control-request-headers";

/// Whether `value` matches `pattern`, where one `*` in `pattern` stands
/// for any run of characters.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((start, end)) => {
            value.len() >= start.len() + end.len()
                && value.starts_with(start)
                && value.ends_with(end)
        }
    }
}

/// The first rule that lets `origin` use `method` with `headers`.
fn matching<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|rule| {
        rule.allowed_origins
            .iter()
            .any(|o| wildcard_match(o, origin))
            && rule.allowed_methods.iter().any(|m| m == method)
            && headers.iter().all(|h| {
                rule.allowed_headers
                    .iter()
                    .any(|a| wildcard_match(&a.to_ascii_lowercase(), h))
            })
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// The headers that let `origin` read an answer under `rule`.
fn allow(headers: &mut HeaderMap, rule: &CorsRule, origin: &str) {
    let any = rule.allowed_origins.iter().any(|o| o == "*");
    set(
        headers,
        "access-control-allow-origin",
        if any { "*" } else { origin },
    );
    if !any {
        set(headers, "access-control-allow-credentials", "true");
    }
    set(
        headers,
        "access-control-allow-methods",
        &rule.allowed_methods.join(", "),
    );
    if !rule.expose_headers.is_empty() {
        set(
            headers,
            "access-control-expose-headers",
            &rule.expose_headers.join(", "),
        );
    }
    headers.append(http::header::VARY, HeaderValue::from_static("Origin"));
}

fn forbidden(message: &'static str) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::Custom("AccessForbidden".into()), message);
    err.set_status_code(http::StatusCode::FORBIDDEN);
    err
}

fn bad_request(message: &'static str) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::Custom("BadRequest".into()), message);
    err.set_status_code(http::StatusCode::BAD_REQUEST);
    err
}

/// The answer to a preflight request for `bucket` (`None`: the request
/// names no bucket): its CORS headers, or the error saying why the
/// browser may not go on.
pub(super) async fn preflight(
    store: &ObjectStore,
    bucket: Option<&str>,
    request: &HeaderMap,
) -> Result<HeaderMap, S3Error> {
    let Some(origin) = header(request, "origin") else {
        return Err(bad_request(
            "Insufficient information. Origin request header needed.",
        ));
    };
    let Some(method) = header(request, REQUEST_METHOD) else {
        return Err(bad_request(
            "Insufficient information. Access-Control-Request-Method request header needed.",
        ));
    };
    let Some(bucket) = bucket else {
        return Err(bad_request("a CORS preflight request names a bucket"));
    };
    let config = store
        .bucket_config(bucket)
        .await?
        .ok_or_else(|| S3Error::new(S3ErrorCode::NoSuchBucket))?;
    let Some(rules) = config.cors else {
        return Err(forbidden(
            "CORSResponse: CORS is not enabled for this bucket.",
        ));
    };
    let asked: Vec<String> = header(request, REQUEST_HEADERS)
        .map(|h| {
            h.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let Some(rule) = matching(&rules, origin, method, &asked) else {
        return Err(forbidden(
            "CORSResponse: This CORS request is not allowed: no CORS rule of the bucket matches its origin, method and headers.",
        ));
    };
    let mut headers = HeaderMap::new();
    allow(&mut headers, rule, origin);
    if !asked.is_empty() {
        set(
            &mut headers,
            "access-control-allow-headers",
            &asked.join(", "),
        );
    }
    if let Some(age) = rule.max_age_seconds {
        set(&mut headers, "access-control-max-age", &age.to_string());
    }
    Ok(headers)
}

/// Adds to `answer` the CORS headers of the bucket's rule that matches a
/// browser's actual request (one with an `Origin`), if any does.
pub(super) async fn decorate(
    store: &ObjectStore,
    bucket: &str,
    origin: &str,
    method: &str,
    answer: &mut HeaderMap,
) {
    let rules = match store.bucket_config(bucket).await {
        Ok(Some(config)) => config.cors.unwrap_or_default(),
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(bucket, error = %err, "cannot read the bucket's CORS rules");
            return;
        }
    };
    if let Some(rule) = matching(&rules, origin, method, &[]) {
        allow(answer, rule, origin);
    }
}

/// The method a browser's actual request is matched by: the one it names
/// in `Access-Control-Request-Method`, else its own.
pub(super) fn actual_method<'a>(request: &'a HeaderMap, own: &'a str) -> &'a str {
    header(request, REQUEST_METHOD).unwrap_or(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wildcard_stands_for_any_run() {
        for (pattern, value, want) in [
            ("*suffix", "foo.suffix", true),
            ("*suffix", "foo.suffix.get", false),
            ("start*end", "startend", true),
            ("start*end", "start12end", true),
            ("start*end", "0start12end", false),
            ("prefix*", "prefix.suffix", true),
            ("prefix*", "bla.prefix", false),
            ("*", "anything", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(wildcard_match(pattern, value), want, "{pattern} {value}");
        }
    }

    #[test]
    fn a_preflight_needs_every_header_allowed() {
        let rule = CorsRule {
            allowed_origins: vec!["*".into()],
            allowed_methods: vec!["GET".into()],
            allowed_headers: vec!["x-amz-meta-*".into(), "Content-Type".into()],
            ..Default::default()
        };
        let rules = [rule];
        let asked = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matching(
            &rules,
            "o",
            "GET",
            &asked(&["x-amz-meta-a", "content-type"])
        )
        .is_some());
        assert!(matching(&rules, "o", "GET", &asked(&["authorization"])).is_none());
        assert!(matching(&rules, "o", "PUT", &[]).is_none());
    }
}
