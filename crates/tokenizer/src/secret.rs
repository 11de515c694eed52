//! Secrets in superfly/tokenizer's JSON format: exactly one processor, exactly
//! one auth, and optional host restrictions.
//!
//! Only what roost implements is accepted; processors and auths of the
//! reference that roost lacks (macaroons, Fly-Src, body injection) are named
//! in the error instead of being silently ignored, because ignoring an auth
//! would open the secret to anyone.

use crate::error::{Result, TokenizerError};
use base64::Engine;
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const PROCESSORS: &str =
    "inject_processor, inject_hmac_processor, oauth2_processor, sigv4_processor";
const AUTHS: &str = "bearer_auth, no_auth";
const UNSUPPORTED_PROCESSORS: &[&str] = &[
    "inject_body_processor",
    "oauth2_body_processor",
    "multi_processor",
];
const UNSUPPORTED_AUTHS: &[&str] = &["macaroon_auth", "flyio_macaroon_auth", "fly_src_auth"];
/// Compiled size limit of `allowed_host_pattern`, so a hostile pattern
/// cannot make every request expensive.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// The `fmt` / `allowed_fmt` rules shared by the inject processors.
#[derive(Debug, Default, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct FmtRules {
    #[serde(default)]
    pub fmt: String,
    #[serde(default)]
    pub allowed_fmt: Option<Vec<String>>,
}

/// The `dst` / `allowed_dst` rules shared by the inject processors.
#[derive(Debug, Default, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct DstRules {
    #[serde(default)]
    pub dst: String,
    #[serde(default)]
    pub allowed_dst: Option<Vec<String>>,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct InjectConfig {
    #[serde(default)]
    pub token: String,
    #[serde(flatten)]
    pub fmt: FmtRules,
    #[serde(flatten)]
    pub dst: DstRules,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct HmacConfig {
    #[serde(default, deserialize_with = "base64_bytes")]
    pub key: Vec<u8>,
    #[serde(default)]
    pub hash: String,
    #[serde(flatten)]
    pub fmt: FmtRules,
    #[serde(flatten)]
    pub dst: DstRules,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct OAuthToken {
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: String,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct OAuthConfig {
    pub token: OAuthToken,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct Sigv4Config {
    #[serde(default)]
    pub access_key: String,
    #[serde(default)]
    pub secret_key: String,
}

#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct BearerAuth {
    #[serde(default, deserialize_with = "base64_bytes")]
    digest: Vec<u8>,
}

#[derive(Deserialize)]
struct NoAuth {}

#[derive(Deserialize)]
struct WireSecret {
    inject_processor: Option<InjectConfig>,
    inject_hmac_processor: Option<HmacConfig>,
    oauth2_processor: Option<OAuthConfig>,
    sigv4_processor: Option<Sigv4Config>,
    bearer_auth: Option<BearerAuth>,
    no_auth: Option<NoAuth>,
    allowed_hosts: Option<Vec<String>>,
    allowed_host_pattern: Option<String>,
    #[serde(flatten)]
    rest: HashMap<String, serde::de::IgnoredAny>,
}

pub(crate) enum Processor {
    Inject(InjectConfig),
    Hmac(HmacConfig),
    OAuth2(OAuthConfig),
    Sigv4(Sigv4Config),
}

enum Auth {
    Bearer(BearerAuth),
    None,
}

/// An opened secret: what to inject, who may use it, and where.
pub struct Secret {
    pub(crate) processor: Processor,
    auth: Auth,
    allowed_hosts: Option<Vec<String>>,
    host_pattern: Option<regex::Regex>,
}

impl Secret {
    /// Parses and checks secret JSON. Errors name fields and positions,
    /// never values.
    pub fn from_json(json: &[u8]) -> Result<Secret> {
        let wire: WireSecret = serde_json::from_slice(json).map_err(describe_json_error)?;
        let unsupported = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .filter(|n| wire.rest.contains_key(**n))
                .map(|n| n.to_string())
                .collect()
        };
        let bad_processors = unsupported(UNSUPPORTED_PROCESSORS);
        let bad_auths = unsupported(UNSUPPORTED_AUTHS);
        if let Some(name) = bad_processors.first().or(bad_auths.first()) {
            return Err(TokenizerError::bad(format!(
                "secret uses {name}, which roost's tokenizer does not support; processors: {PROCESSORS}; auths: {AUTHS}"
            )));
        }
        let mut processors = Vec::new();
        if let Some(p) = wire.inject_processor {
            processors.push(Processor::Inject(p));
        }
        if let Some(p) = wire.inject_hmac_processor {
            processors.push(Processor::Hmac(p));
        }
        if let Some(p) = wire.oauth2_processor {
            processors.push(Processor::OAuth2(p));
        }
        if let Some(p) = wire.sigv4_processor {
            processors.push(Processor::Sigv4(p));
        }
        if processors.len() != 1 {
            return Err(TokenizerError::bad(format!(
                "secret must have exactly one processor ({PROCESSORS}); it has {}",
                processors.len()
            )));
        }
        let auth = match (wire.bearer_auth, wire.no_auth) {
            (Some(bearer), None) => Auth::Bearer(bearer),
            (None, Some(NoAuth {})) => Auth::None,
            (None, None) => {
                return Err(TokenizerError::bad(format!(
                    "secret must have exactly one auth ({AUTHS}); it has none"
                )))
            }
            (Some(_), Some(_)) => {
                return Err(TokenizerError::bad(format!(
                    "secret must have exactly one auth ({AUTHS}); it has 2"
                )))
            }
        };
        if let Auth::Bearer(bearer) = &auth {
            if bearer.digest.len() != 32 {
                return Err(TokenizerError::bad(
                    "bearer_auth.digest must be the base64 SHA-256 digest (32 bytes) of the client's proxy token",
                ));
            }
        }
        let processor = processors.remove(0);
        check_processor(&processor)?;
        let host_pattern = wire
            .allowed_host_pattern
            .filter(|p| !p.is_empty())
            .map(|pattern| {
                regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        TokenizerError::bad(format!(
                            "allowed_host_pattern is not a valid regex: {e}"
                        ))
                    })
            })
            .transpose()?;
        Ok(Secret {
            processor,
            auth,
            allowed_hosts: wire
                .allowed_hosts
                .map(|hosts| hosts.iter().map(|h| h.to_ascii_lowercase()).collect()),
            host_pattern,
        })
    }

    /// Checks the client's proxy tokens against the secret's auth (407).
    pub(crate) fn authorize(&self, tokens: &[Zeroizing<String>]) -> Result<()> {
        match &self.auth {
            Auth::None => Ok(()),
            Auth::Bearer(bearer) => {
                let matched = tokens.iter().fold(false, |found, token| {
                    let digest = Sha256::digest(token.as_bytes());
                    found | bool::from(digest.as_slice().ct_eq(&bearer.digest))
                });
                if matched {
                    Ok(())
                } else {
                    Err(TokenizerError::ProxyAuth(
                        "missing or wrong proxy auth for this secret: send `Proxy-Authorization: Bearer <token>` (or Basic with the token as password) whose SHA-256 is the secret's bearer_auth digest".into(),
                    ))
                }
            }
        }
    }

    /// Checks the host the tokenizer will dial (`host` or `host:port`, as in
    /// the request target) against `allowed_hosts` and `allowed_host_pattern`.
    pub(crate) fn check_host(&self, authority: &str) -> Result<()> {
        let authority = authority.to_ascii_lowercase();
        if let Some(hosts) = &self.allowed_hosts {
            if !hosts.contains(&authority) {
                return Err(TokenizerError::bad(format!(
                    "secret is not valid for host {authority}: it is not in the secret's allowed_hosts"
                )));
            }
        }
        if let Some(pattern) = &self.host_pattern {
            if !pattern.is_match(&authority) {
                return Err(TokenizerError::bad(format!(
                    "secret is not valid for host {authority}: it does not match the secret's allowed_host_pattern"
                )));
            }
        }
        Ok(())
    }
}

fn check_processor(processor: &Processor) -> Result<()> {
    let missing = |what: &str| Err(TokenizerError::bad(format!("secret is missing {what}")));
    match processor {
        Processor::Inject(p) if p.token.is_empty() => missing("inject_processor.token"),
        Processor::Hmac(p) if p.key.is_empty() => missing("inject_hmac_processor.key"),
        Processor::Hmac(p) if p.hash != "sha256" => Err(TokenizerError::bad(
            "inject_hmac_processor.hash must be \"sha256\", the one hash supported",
        )),
        Processor::Sigv4(p) if p.access_key.is_empty() => missing("sigv4_processor.access_key"),
        Processor::Sigv4(p) if p.secret_key.is_empty() => missing("sigv4_processor.secret_key"),
        _ => Ok(()),
    }
}

/// serde_json's messages quote offending values ("invalid type: string
/// \"...\""), which could be a token; keep only what names no value.
fn describe_json_error(err: serde_json::Error) -> TokenizerError {
    let position = format!("line {}, column {}", err.line(), err.column());
    let text = err.to_string();
    let message = match err.classify() {
        serde_json::error::Category::Data
            if text.starts_with("missing field") || text.starts_with("duplicate field") =>
        {
            format!("secret JSON is invalid: {text}")
        }
        serde_json::error::Category::Data => format!(
            "secret JSON has a value of the wrong type or shape at {position}; see superfly/tokenizer's secret format"
        ),
        _ => format!("secret is not valid JSON (error at {position})"),
    };
    TokenizerError::bad(message)
}

/// Go encodes `[]byte` fields as standard base64 strings.
fn base64_bytes<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<u8>, D::Error> {
    let text = Zeroizing::new(String::deserialize(deserializer)?);
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|_| serde::de::Error::custom("a byte field (key, digest) is not valid base64"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        Secret::from_json(json.as_bytes())
            .err()
            .unwrap()
            .to_string()
    }

    #[test]
    fn exactly_one_processor_and_auth() {
        let ok = r#"{"inject_processor":{"token":"t"},"no_auth":{}}"#;
        assert!(Secret::from_json(ok.as_bytes()).is_ok());
        assert!(err(r#"{"inject_processor":{"token":"t"},"oauth2_processor":{"token":{"access_token":"a"}},"no_auth":{}}"#).contains("exactly one processor"));
        assert!(err(r#"{"inject_processor":{"token":"t"}}"#).contains("has none"));
        assert!(err(r#"{"no_auth":{}}"#).contains("it has 0"));
        assert!(
            err(r#"{"inject_processor":{"token":"t"},"macaroon_auth":{"key":""}}"#)
                .contains("macaroon_auth")
        );
        assert!(
            err(r#"{"inject_processor":{"token":"t"},"bearer_auth":{"digest":"AAAA"}}"#)
                .contains("32 bytes")
        );
    }

    #[test]
    fn json_errors_never_quote_values() {
        let message = err(r#"{"inject_processor":{"token":["sekrit-value"]},"no_auth":{}}"#);
        assert!(!message.contains("sekrit"), "{message}");
        let message = err(r#"{"inject_processor":{"token":"sekrit-value""#);
        assert!(!message.contains("sekrit"), "{message}");
        assert!(err("{").contains("not valid JSON"));
    }

    #[test]
    fn hosts_are_exact_and_patterns_whole() {
        let secret = Secret::from_json(
            br#"{"inject_processor":{"token":"t"},"no_auth":{},"allowed_host_pattern":"api\\.example\\.com"}"#,
        )
        .unwrap();
        assert!(secret.check_host("API.example.com").is_ok());
        assert!(secret.check_host("api.example.com.evil.net").is_err());
        assert!(secret.check_host("xapi.example.com").is_err());
        let secret = Secret::from_json(
            br#"{"inject_processor":{"token":"t"},"no_auth":{},"allowed_hosts":["a.test"]}"#,
        )
        .unwrap();
        assert!(secret.check_host("a.test").is_ok());
        assert!(secret.check_host("a.test:8443").is_err());
    }

    #[test]
    fn bearer_digest_is_checked() {
        let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"tok"));
        let json = format!(
            r#"{{"inject_processor":{{"token":"t"}},"bearer_auth":{{"digest":"{digest}"}}}}"#
        );
        let secret = Secret::from_json(json.as_bytes()).unwrap();
        assert!(secret.authorize(&[Zeroizing::new("tok".into())]).is_ok());
        assert!(secret.authorize(&[Zeroizing::new("nope".into())]).is_err());
        assert!(secret.authorize(&[]).is_err());
    }
}
