//! Session affinity: requests carrying the same session key (a configured
//! header such as `Mcp-Session-Id`, or a cookie) go to the machine that
//! served that session before.
//!
//! Why a cache and not a hash: stateful servers (MCP's Streamable HTTP
//! with sessions) create the session on whichever machine handled the
//! first request and answer with its id; only the proxy saw which machine
//! that was. So the cache learns from responses (the key in a response
//! header or `Set-Cookie`) and from the machine that finally served a
//! request (after any `fly-replay`), and later requests with the key skip
//! both load balancing and a new replay. An entry ends after its TTL
//! without use, or when its machine is gone.

use http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where a session key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AffinityKey {
    /// A request header (and the same response header), e.g. `mcp-session-id`.
    Header(http::HeaderName),
    /// A cookie name; learned from `Set-Cookie` as well.
    Cookie(String),
}

impl std::str::FromStr for AffinityKey {
    type Err = String;

    /// `header:NAME` or `cookie:NAME`; a bare name is a header.
    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, name) = text.split_once(':').unwrap_or(("header", text));
        let name = name.trim();
        match kind.trim().to_ascii_lowercase().as_str() {
            "header" => http::HeaderName::from_bytes(name.as_bytes())
                .map(AffinityKey::Header)
                .map_err(|_| format!("{name:?} is not a valid header name")),
            "cookie" if !name.is_empty() && !name.contains(['=', ';', ' ']) => {
                Ok(AffinityKey::Cookie(name.to_string()))
            }
            "cookie" => Err(format!("{name:?} is not a valid cookie name")),
            other => Err(format!(
                "affinity key kind {other:?} is invalid: use header:NAME or cookie:NAME"
            )),
        }
    }
}

impl AffinityKey {
    fn in_request(&self, headers: &HeaderMap) -> Option<String> {
        match self {
            AffinityKey::Header(name) => header_value(headers, name),
            AffinityKey::Cookie(name) => headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|pair| {
                    let (k, v) = pair.trim().split_once('=')?;
                    (k == name && !v.is_empty()).then(|| v.to_string())
                }),
        }
    }

    fn in_response(&self, headers: &HeaderMap) -> Option<String> {
        match self {
            AffinityKey::Header(name) => header_value(headers, name),
            AffinityKey::Cookie(name) => headers
                .get_all(http::header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| {
                    let first = v.split(';').next()?;
                    let (k, v) = first.trim().split_once('=')?;
                    (k == name && !v.is_empty()).then(|| v.to_string())
                }),
        }
    }
}

fn header_value(headers: &HeaderMap, name: &http::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= MAX_KEY_LEN)
        .map(str::to_string)
}

const MAX_KEY_LEN: usize = 512;

/// Where a pinned session goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pin {
    pub app: String,
    pub machine: String,
}

struct Entry {
    pin: Pin,
    used: Instant,
}

/// The session → machine map, bounded in size and age.
pub(crate) struct AffinityCache {
    keys: Vec<AffinityKey>,
    ttl: Duration,
    max_entries: usize,
    /// (app of the Host, key index, value) → pin.
    entries: Mutex<HashMap<(String, usize, String), Entry>>,
}

/// A session key found in a request.
#[derive(Debug, Clone)]
pub(crate) struct SessionKey {
    index: usize,
    value: String,
}

impl AffinityCache {
    pub(crate) fn new(keys: Vec<AffinityKey>, ttl: Duration, max_entries: usize) -> Self {
        AffinityCache {
            keys,
            ttl,
            max_entries: max_entries.max(1),
            entries: Mutex::default(),
        }
    }

    /// The first configured key the request carries.
    pub(crate) fn key_of(&self, headers: &HeaderMap) -> Option<SessionKey> {
        self.keys.iter().enumerate().find_map(|(index, key)| {
            key.in_request(headers)
                .map(|value| SessionKey { index, value })
        })
    }

    pub(crate) fn lookup(&self, app: &str, key: &SessionKey) -> Option<Pin> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let id = (app.to_string(), key.index, key.value.clone());
        let entry = entries.get_mut(&id)?;
        if entry.used.elapsed() > self.ttl {
            entries.remove(&id);
            return None;
        }
        entry.used = Instant::now();
        Some(entry.pin.clone())
    }

    /// Pins the request's key, and any key the response hands out, to the
    /// machine that served it.
    pub(crate) fn learn(
        &self,
        app: &str,
        request_key: Option<&SessionKey>,
        response: &HeaderMap,
        pin: &Pin,
    ) {
        let mut learned: Vec<(usize, String)> = self
            .keys
            .iter()
            .enumerate()
            .filter_map(|(i, key)| key.in_response(response).map(|v| (i, v)))
            .collect();
        if let Some(key) = request_key {
            learned.push((key.index, key.value.clone()));
        }
        if learned.is_empty() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (index, value) in learned {
            let id = (app.to_string(), index, value);
            if let Some(entry) = entries.get_mut(&id) {
                if entry.pin == *pin {
                    entry.used = Instant::now();
                    continue;
                }
            }
            if entries.len() >= self.max_entries {
                let ttl = self.ttl;
                entries.retain(|_, e| e.used.elapsed() <= ttl);
                if entries.len() >= self.max_entries {
                    // Still full of live sessions: forget the oldest tenth.
                    let mut ages: Vec<Instant> = entries.values().map(|e| e.used).collect();
                    ages.sort_unstable();
                    let cut = ages[ages.len() / 10];
                    entries.retain(|_, e| e.used > cut);
                }
            }
            tracing::debug!(app, machine = %pin.machine, "session pinned");
            entries.insert(
                id,
                Entry {
                    pin: pin.clone(),
                    used: Instant::now(),
                },
            );
        }
    }

    /// Forgets a session whose machine could not take it any more.
    pub(crate) fn forget(&self, app: &str, key: &SessionKey) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&(app.to_string(), key.index, key.value.clone()));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn learns_from_responses_and_requests() {
        let cache = AffinityCache::new(
            vec![
                "mcp-session-id".parse().unwrap(),
                "cookie:sid".parse().unwrap(),
            ],
            Duration::from_secs(60),
            100,
        );
        let pin = Pin {
            app: "a".into(),
            machine: "m1".into(),
        };
        cache.learn("a", None, &headers(&[("mcp-session-id", "s1")]), &pin);
        let key = cache.key_of(&headers(&[("Mcp-Session-Id", "s1")])).unwrap();
        assert_eq!(cache.lookup("a", &key), Some(pin.clone()));
        assert_eq!(cache.lookup("b", &key), None, "keys are per app");
        cache.learn(
            "a",
            None,
            &headers(&[("set-cookie", "sid=xyz; Path=/")]),
            &pin,
        );
        let key = cache
            .key_of(&headers(&[("cookie", "a=b; sid=xyz")]))
            .unwrap();
        assert_eq!(cache.lookup("a", &key), Some(pin));
        cache.forget("a", &key);
        assert_eq!(cache.lookup("a", &key), None);
        assert!("cookie:a=b".parse::<AffinityKey>().is_err());
        assert!("bad header".parse::<AffinityKey>().is_err());
    }

    #[test]
    fn bounded() {
        let cache = AffinityCache::new(vec!["k".parse().unwrap()], Duration::from_secs(60), 50);
        let pin = Pin {
            app: "a".into(),
            machine: "m".into(),
        };
        for i in 0..500 {
            cache.learn("a", None, &headers(&[("k", &format!("v{i}"))]), &pin);
        }
        assert!(cache.len() <= 50, "{}", cache.len());
    }
}
