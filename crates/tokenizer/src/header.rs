//! The two request headers a tokenizer client sends: `Proxy-Tokenizer`
//! (a sealed secret plus optional JSON params) and `Proxy-Authorization`.

use crate::error::{Result, TokenizerError};
use base64::Engine;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// Upper bound of one `Proxy-Tokenizer` value; sealed secrets are small.
const MAX_HEADER_LEN: usize = 64 * 1024;

/// One `Proxy-Tokenizer: <sealed>[; {json params}]` value.
#[derive(Debug, PartialEq)]
pub struct ProxyTokenizerHeader<'a> {
    /// Base64 sealed box, trimmed.
    pub sealed: &'a str,
    /// Processor params: `dst`, `fmt`, `msg`, `st`.
    pub params: HashMap<String, String>,
}

impl<'a> ProxyTokenizerHeader<'a> {
    pub fn parse(value: &'a str) -> Result<ProxyTokenizerHeader<'a>> {
        if value.len() > MAX_HEADER_LEN {
            return Err(TokenizerError::bad(format!(
                "Proxy-Tokenizer header is longer than {MAX_HEADER_LEN} bytes"
            )));
        }
        let (sealed, params) = value.split_once(';').unwrap_or((value, ""));
        let (sealed, params) = (sealed.trim(), params.trim());
        if sealed.is_empty() {
            return Err(TokenizerError::bad(
                "Proxy-Tokenizer header has no sealed secret: send `Proxy-Tokenizer: <sealed>[; {\"dst\": ..., \"fmt\": ...}]`",
            ));
        }
        let params = if params.is_empty() {
            HashMap::new()
        } else {
            serde_json::from_str(params).map_err(|e| {
                TokenizerError::bad(format!(
                    "Proxy-Tokenizer params after ';' must be a JSON object of strings (error at column {})",
                    e.column()
                ))
            })?
        };
        Ok(ProxyTokenizerHeader { sealed, params })
    }
}

/// Tokens offered in `Proxy-Authorization` values: `Bearer <token>`
/// (`FlyV1` too, as the reference), or `Basic` whose password is the token
/// (both as sent and percent-decoded). Unusable values are skipped: the
/// secret's auth then fails with 407.
pub(crate) fn proxy_tokens<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<Zeroizing<String>> {
    let mut tokens = Vec::new();
    for value in values {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        let Some((scheme, rest)) = value.trim().split_once(' ') else {
            continue;
        };
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("flyv1") {
            tokens.push(Zeroizing::new(rest.to_string()));
        } else if scheme.eq_ignore_ascii_case("basic") {
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest) else {
                continue;
            };
            let raw = Zeroizing::new(raw);
            let Some(colon) = raw.iter().position(|b| *b == b':') else {
                continue;
            };
            let Ok(password) = std::str::from_utf8(&raw[colon + 1..]) else {
                continue;
            };
            if let Some(decoded) = percent_decode(password) {
                tokens.push(decoded);
            }
            tokens.push(Zeroizing::new(password.to_string()));
        }
    }
    tokens
}

fn percent_decode(text: &str) -> Option<Zeroizing<String>> {
    let bytes = text.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out.to_vec()).ok().map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        let h = ProxyTokenizerHeader::parse(" abc ").unwrap();
        assert_eq!(h.sealed, "abc");
        assert!(h.params.is_empty());
        let h = ProxyTokenizerHeader::parse(r#"abc; {"dst":"X-Key","fmt":"%s"}"#).unwrap();
        assert_eq!(h.params["dst"], "X-Key");
        assert!(ProxyTokenizerHeader::parse("; {}").is_err());
        assert!(ProxyTokenizerHeader::parse("abc; {\"dst\": 1}").is_err());
        assert!(ProxyTokenizerHeader::parse("abc; nope").is_err());
    }

    #[test]
    fn proxy_auth_forms() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("user:p%40ss")
        );
        let values: Vec<&[u8]> = vec![b"Bearer tok", basic.as_bytes(), b"Digest x", b"junk"];
        let tokens: Vec<String> = proxy_tokens(values.into_iter())
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(tokens, ["tok", "p@ss", "p%40ss"]);
    }
}
