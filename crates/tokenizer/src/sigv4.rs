//! Re-signing an AWS Signature Version 4 request with the real key.
//!
//! The client signs with a placeholder key; its `Authorization` header
//! gives the date, region, service and signed header list. The tokenizer
//! recomputes the signature over the request it will actually send
//! (proxy headers removed, `Host` set to the dialed host) with the secret's
//! key pair. The canonical URI is the path as sent (S3's rule: no second
//! encoding). Like the reference, this gives none of SigV4's replay
//! protection beyond what the upstream checks.

use crate::error::{Result, TokenizerError};
use crate::inject::hmac_sha256 as hmac;
use http::{HeaderMap, HeaderValue, Method};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Replaces `Authorization` (and sets `X-Amz-Date` if missing) in `headers`.
/// `body` is the request body, hashed when `X-Amz-Content-Sha256` is absent.
pub(crate) fn resign(
    method: &Method,
    path_and_query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    access_key: &str,
    secret_key: &str,
) -> Result<()> {
    let bad = |why: &str| TokenizerError::bad(format!("sigv4_processor: {why}"));
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            bad("the request needs a SigV4 Authorization header (signed with any placeholder key)")
        })?
        .to_string();
    let mut scope = None;
    let mut client_signed = None;
    for part in auth.split([' ', ',']).filter(|p| !p.is_empty()) {
        if let Some(credential) = part.strip_prefix("Credential=") {
            let fields: Vec<&str> = credential.split('/').collect();
            if fields.len() != 5
                || fields[1].len() != 8
                || !fields[1].bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad("the Authorization header's Credential is not KEY/YYYYMMDD/REGION/SERVICE/aws4_request"));
            }
            scope = Some((
                fields[1].to_string(),
                fields[2].to_string(),
                fields[3].to_string(),
            ));
        } else if let Some(list) = part.strip_prefix("SignedHeaders=") {
            client_signed = Some(list.to_string());
        }
    }
    let (date, region, service) =
        scope.ok_or_else(|| bad("the Authorization header has no Credential"))?;
    let amz_date = match headers.get("x-amz-date").and_then(|v| v.to_str().ok()) {
        Some(stamp) => {
            if stamp.len() != 16 || !stamp.starts_with(&date) {
                return Err(bad(
                    "X-Amz-Date must be YYYYMMDDTHHMMSSZ on the credential's date",
                ));
            }
            stamp.to_string()
        }
        None => {
            let stamp = format!("{date}T000000Z");
            headers.insert(
                "x-amz-date",
                HeaderValue::from_str(&stamp).map_err(|_| bad("bad date"))?,
            );
            stamp
        }
    };
    headers.remove(http::header::AUTHORIZATION);
    let payload_hash = match headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some(hash) => hash.to_string(),
        None => hex::encode(Sha256::digest(body)),
    };
    let mut signed: Vec<String> = client_signed
        .as_deref()
        .unwrap_or("")
        .split(';')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty() && !h.starts_with("proxy-") && h != "authorization")
        .filter(|h| headers.contains_key(h.as_str()))
        .collect();
    for required in ["host", "x-amz-date", "x-amz-content-sha256"] {
        if headers.contains_key(required) && !signed.iter().any(|h| h == required) {
            signed.push(required.to_string());
        }
    }
    signed.sort();
    signed.dedup();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let path = if path.is_empty() { "/" } else { path };
    let mut canonical_headers = String::new();
    for name in &signed {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let signed_list = signed.join(";");
    let canonical_request = format!(
        "{method}\n{path}\n{}\n{canonical_headers}\n{signed_list}\n{payload_hash}",
        canonical_query(query)
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let secret = Zeroizing::new(format!("AWS4{secret_key}"));
    let k_date = Zeroizing::new(hmac(secret.as_bytes(), date.as_bytes()));
    let k_region = Zeroizing::new(hmac(&k_date, region.as_bytes()));
    let k_service = Zeroizing::new(hmac(&k_region, service.as_bytes()));
    let k_signing = Zeroizing::new(hmac(&k_service, b"aws4_request"));
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    let value = Zeroizing::new(format!(
        "{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed_list}, Signature={signature}"
    ));
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| bad("the access key holds characters not allowed in a header"))?;
    value.set_sensitive(true);
    headers.insert(http::header::AUTHORIZATION, value);
    Ok(())
}

/// Query parameters decoded, re-encoded with SigV4's rules and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (aws_encode(&decode(k)), aws_encode(&decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn aws_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published `get-vanilla` test case of the SigV4 test suite.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.amazonaws.com"));
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        headers.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=PLACEHOLDER/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"),
        );
        resign(
            &Method::GET,
            "/",
            &mut headers,
            b"",
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        )
        .unwrap();
        assert_eq!(
            headers["authorization"].to_str().unwrap(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn query_is_canonicalized() {
        assert_eq!(canonical_query("b=2&a=%7e x&c"), "a=~%20x&b=2&c=");
    }

    #[test]
    fn missing_or_bad_authorization_is_refused() {
        let mut headers = HeaderMap::new();
        assert!(resign(&Method::GET, "/", &mut headers, b"", "a", "s").is_err());
        headers.insert(
            "authorization",
            HeaderValue::from_static("AWS4-HMAC-SHA256 Credential=x/2015/r/s"),
        );
        assert!(resign(&Method::GET, "/", &mut headers, b"", "a", "s").is_err());
    }
}
