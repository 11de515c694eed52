//! Turning an opened secret plus the client's params into changes to the
//! outbound request, with superfly/tokenizer's `fmt`/`dst` rules: a secret
//! that fixes `fmt` or `dst` rejects any other value, `allowed_*` lists
//! restrict the params and their first entry is the default.

use crate::error::{Result, TokenizerError};
use crate::secret::{DstRules, FmtRules, Processor, Secret};
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use sha2::Sha256;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// Headers a secret may never be written to: framing, routing and
/// hop-by-hop headers, whose change would smuggle or redirect the request.
const FORBIDDEN_DST: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// One change to the outbound request, in `Proxy-Tokenizer` header order.
pub(crate) enum Injection {
    Header(HeaderName, HeaderValue),
    /// HMAC of the request body (no `msg` param), written to `dst` in `fmt`.
    BodyHmac {
        key: Zeroizing<Vec<u8>>,
        fmt: String,
        dst: HeaderName,
    },
    /// Re-sign the client's SigV4 request with the real key.
    Sigv4 {
        access_key: Zeroizing<String>,
        secret_key: Zeroizing<String>,
    },
}

impl Injection {
    pub(crate) fn needs_body(&self) -> bool {
        matches!(self, Injection::BodyHmac { .. } | Injection::Sigv4 { .. })
    }
}

/// Checks `params` against the secret and prepares its injection.
pub(crate) fn prepare(secret: &Secret, params: &HashMap<String, String>) -> Result<Injection> {
    match &secret.processor {
        Processor::Inject(p) => {
            let fmt = choose_fmt(&p.fmt, params, false)?;
            let dst = choose_dst(&p.dst, params)?;
            let value = Zeroizing::new(render(&fmt, p.token.as_bytes(), false));
            Ok(Injection::Header(dst, header_value(&value)?))
        }
        Processor::Hmac(p) => {
            let fmt = choose_fmt(&p.fmt, params, true)?;
            let dst = choose_dst(&p.dst, params)?;
            match params.get("msg") {
                Some(msg) => {
                    let mac = hmac_sha256(&p.key, msg.as_bytes());
                    Ok(Injection::Header(
                        dst,
                        header_value(&render(&fmt, &mac, true))?,
                    ))
                }
                None => Ok(Injection::BodyHmac {
                    key: Zeroizing::new(p.key.clone()),
                    fmt,
                    dst,
                }),
            }
        }
        Processor::OAuth2(p) => {
            let (token, which) = match params.get("st").map(String::as_str) {
                Some("refresh") => (&p.token.refresh_token, "refresh_token"),
                _ => (&p.token.access_token, "access_token"),
            };
            if token.is_empty() {
                return Err(TokenizerError::bad(format!(
                    "secret's oauth2_processor has no {which}"
                )));
            }
            let value = Zeroizing::new(format!("Bearer {token}"));
            Ok(Injection::Header(
                http::header::AUTHORIZATION,
                header_value(&value)?,
            ))
        }
        Processor::Sigv4(p) => Ok(Injection::Sigv4 {
            access_key: Zeroizing::new(p.access_key.clone()),
            secret_key: Zeroizing::new(p.secret_key.clone()),
        }),
    }
}

/// The HMAC-SHA256 value of `body` in the injection's format.
pub(crate) fn body_hmac(key: &[u8], fmt: &str, body: &[u8]) -> Result<HeaderValue> {
    header_value(&render(fmt, &hmac_sha256(key, body), true))
}

pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Picks the format (param, secret's `fmt`, first `allowed_fmt`, default)
/// and checks it: it must be allowed and hold exactly one directive, `%s`
/// for strings, `%x`/`%X` for binary values.
fn choose_fmt(rules: &FmtRules, params: &HashMap<String, String>, binary: bool) -> Result<String> {
    let format = match (params.get("fmt"), &rules.allowed_fmt) {
        (Some(param), _) => param.clone(),
        (None, _) if !rules.fmt.is_empty() => rules.fmt.clone(),
        (None, Some(allowed)) if !allowed.is_empty() => allowed[0].clone(),
        (None, _) if binary => "Bearer %x".into(),
        (None, _) => "Bearer %s".into(),
    };
    if !rules.fmt.is_empty() && format != rules.fmt {
        return Err(TokenizerError::bad(
            "bad fmt: this secret fixes fmt and the fmt param differs from it",
        ));
    }
    if let Some(allowed) = &rules.allowed_fmt {
        if !allowed.contains(&format) {
            return Err(TokenizerError::bad(
                "bad fmt: the fmt param is not in this secret's allowed_fmt",
            ));
        }
    }
    let directive = format
        .find('%')
        .and_then(|i| format.as_bytes().get(i + 1).map(|d| (i, *d)));
    let ok = match directive {
        Some((i, b's')) if !binary => !format[i + 2..].contains('%'),
        Some((i, b'x' | b'X')) if binary => !format[i + 2..].contains('%'),
        _ => false,
    };
    if !ok {
        let want = if binary { "%x or %X" } else { "%s" };
        return Err(TokenizerError::bad(format!(
            "bad fmt: a format needs exactly one {want} directive and no other '%'"
        )));
    }
    Ok(format)
}

fn render(format: &str, value: &[u8], binary: bool) -> String {
    let i = format.find('%').unwrap_or(format.len());
    let (head, tail) = (&format[..i], format.get(i + 2..).unwrap_or(""));
    let value = match (binary, format.as_bytes().get(i + 1)) {
        (true, Some(b'X')) => hex::encode_upper(value),
        (true, _) => hex::encode(value),
        (false, _) => String::from_utf8_lossy(value).into_owned(),
    };
    format!("{head}{value}{tail}")
}

fn choose_dst(rules: &DstRules, params: &HashMap<String, String>) -> Result<HeaderName> {
    let dst = match (params.get("dst"), &rules.allowed_dst) {
        (Some(param), _) => param.clone(),
        (None, _) if !rules.dst.is_empty() => rules.dst.clone(),
        (None, Some(allowed)) if !allowed.is_empty() => allowed[0].clone(),
        (None, _) => "Authorization".into(),
    };
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    if !rules.dst.is_empty() && !same(&dst, &rules.dst) {
        return Err(TokenizerError::bad(
            "bad dst: this secret fixes dst and the dst param differs from it",
        ));
    }
    if let Some(allowed) = &rules.allowed_dst {
        if !allowed.iter().any(|a| same(a, &dst)) {
            return Err(TokenizerError::bad(
                "bad dst: the dst param is not in this secret's allowed_dst",
            ));
        }
    }
    let name = HeaderName::from_bytes(dst.as_bytes()).map_err(|_| {
        TokenizerError::bad(
            "bad dst: it is not a valid header name (letters, digits and -_.!#$%&'*+^`|~ only)",
        )
    })?;
    if FORBIDDEN_DST.contains(&name.as_str()) || name.as_str().starts_with("proxy-") {
        return Err(TokenizerError::bad(format!(
            "bad dst: a secret cannot be written to {name} (framing, routing and proxy headers are refused)"
        )));
    }
    Ok(name)
}

fn header_value(value: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        TokenizerError::bad(
            "the injected value would contain characters not allowed in a header (CR, LF, NUL or other control characters)",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(processor: &str) -> Secret {
        Secret::from_json(format!(r#"{{{processor},"no_auth":{{}}}}"#).as_bytes()).unwrap()
    }

    fn params(json: &str) -> HashMap<String, String> {
        serde_json::from_str(json).unwrap()
    }

    fn header(secret: &Secret, p: &str) -> Result<(String, String)> {
        match prepare(secret, &params(p))? {
            Injection::Header(name, value) => {
                Ok((name.to_string(), value.to_str().unwrap().to_string()))
            }
            _ => panic!("not a header injection"),
        }
    }

    #[test]
    fn inject_defaults_and_params() {
        let s = secret(r#""inject_processor":{"token":"T"}"#);
        assert_eq!(
            header(&s, "{}").unwrap(),
            ("authorization".into(), "Bearer T".into())
        );
        assert_eq!(
            header(&s, r#"{"dst":"X-Api-Key","fmt":"key=%s;"}"#).unwrap(),
            ("x-api-key".into(), "key=T;".into())
        );
        for bad in [
            r#"{"fmt":"%x"}"#,
            r#"{"fmt":"none"}"#,
            r#"{"fmt":"%s%s"}"#,
            r#"{"fmt":"%"}"#,
            r#"{"fmt":"%%s"}"#,
        ] {
            assert!(
                header(&s, bad).unwrap_err().to_string().contains("bad fmt"),
                "{bad}"
            );
        }
        for bad in [
            r#"{"dst":"Host"}"#,
            r#"{"dst":"Proxy-Authorization"}"#,
            r#"{"dst":"a b"}"#,
        ] {
            assert!(
                header(&s, bad).unwrap_err().to_string().contains("bad dst"),
                "{bad}"
            );
        }
    }

    #[test]
    fn fixed_and_allowed_rules() {
        let s = secret(r#""inject_processor":{"token":"T","fmt":"token %s","dst":"X-A"}"#);
        assert_eq!(header(&s, "{}").unwrap(), ("x-a".into(), "token T".into()));
        assert!(header(&s, r#"{"fmt":"Bearer %s"}"#).is_err());
        assert!(header(&s, r#"{"dst":"X-B"}"#).is_err());
        assert!(header(&s, r#"{"dst":"x-a"}"#).is_ok());
        let s = secret(
            r#""inject_processor":{"token":"T","allowed_fmt":["a %s","b %s"],"allowed_dst":["X-One","X-Two"]}"#,
        );
        assert_eq!(header(&s, "{}").unwrap(), ("x-one".into(), "a T".into()));
        assert_eq!(
            header(&s, r#"{"fmt":"b %s","dst":"X-Two"}"#).unwrap(),
            ("x-two".into(), "b T".into())
        );
        assert!(header(&s, r#"{"fmt":"c %s"}"#).is_err());
        assert!(header(&s, r#"{"dst":"X-Three"}"#).is_err());
    }

    #[test]
    fn header_injection_is_refused() {
        let s = secret(r#""inject_processor":{"token":"T"}"#);
        let err = header(&s, r#"{"fmt":"%s\r\nX-Evil: 1"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not allowed in a header"), "{err}");
        assert!(header(&s, r#"{"dst":"X-A\r\nX-Evil"}"#).is_err());
    }

    #[test]
    fn hmac_and_oauth2() {
        let s = secret(r#""inject_hmac_processor":{"key":"a2V5","hash":"sha256"}"#);
        let (name, value) = header(
            &s,
            r#"{"msg":"The quick brown fox jumps over the lazy dog"}"#,
        )
        .unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(
            value,
            "Bearer f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert!(matches!(
            prepare(&s, &params("{}")).unwrap(),
            Injection::BodyHmac { .. }
        ));
        assert!(header(&s, r#"{"msg":"x","fmt":"%s"}"#).is_err());
        let s = secret(r#""oauth2_processor":{"token":{"access_token":"A","refresh_token":"R"}}"#);
        assert_eq!(header(&s, "{}").unwrap().1, "Bearer A");
        assert_eq!(header(&s, r#"{"st":"refresh"}"#).unwrap().1, "Bearer R");
        let s = secret(r#""oauth2_processor":{"token":{"access_token":"A"}}"#);
        assert!(header(&s, r#"{"st":"refresh"}"#).is_err());
    }
}
