//! An app's egress policy, compiled from its wire form: host patterns
//! with optional ports, deny wins over allow, a default for the rest.

use roost_types::{EgressDefault, EgressPolicy};
use std::fmt;
use std::net::IpAddr;

/// Most patterns a list (`allow` or `deny`) may hold.
pub const MAX_PATTERNS: usize = 512;
/// Longest host name DNS allows (without the trailing dot).
pub const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Why a policy was refused. The message names the pattern and says what
/// is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("{list}[{index}] {pattern:?} is not a host pattern: {reason}; use a host (mirror.example.org), a wildcard for its subdomains (*.example.com), * for every host, or an IP address, each with an optional :port")]
    Pattern {
        list: &'static str,
        index: usize,
        pattern: String,
        reason: String,
    },
    #[error("{list} has {count} patterns; at most {MAX_PATTERNS} are allowed")]
    TooMany { list: &'static str, count: usize },
}

/// Which hosts a pattern names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    /// `*`: every host.
    Any,
    /// `*.example.com`: every host below `example.com`, not itself.
    Below(String),
    /// `example.com`: exactly this name.
    Name(String),
    /// An IP literal: exactly this address (IPv4-mapped IPv6 as IPv4).
    Ip(IpAddr),
}

/// One host pattern with its optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// As written (normalized to lower case): what refusals quote.
    text: String,
    hosts: Hosts,
    port: Option<u16>,
}

impl Pattern {
    /// Parses `host[:port]`, `[v6][:port]`, `*.domain[:port]` or `*[:port]`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let text = text.trim().to_ascii_lowercase();
        if text.contains("://") || text.contains('/') {
            return Err("a pattern names a host, not a URL: leave out the scheme and path".into());
        }
        let (host, port) = split_port(&text)?;
        let hosts = if host == "*" {
            Hosts::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            check_name(domain)?;
            Hosts::Below(domain.trim_end_matches('.').to_string())
        } else if let Some(ip) = parse_ip(host) {
            Hosts::Ip(ip.to_canonical())
        } else {
            check_name(host)?;
            Hosts::Name(host.trim_end_matches('.').to_string())
        };
        Ok(Pattern { text, hosts, port })
    }

    /// Whether the pattern names `host` (a normalized [`Destination`] host)
    /// at `port`.
    fn matches(&self, destination: &Destination) -> bool {
        if self.port.is_some_and(|port| port != destination.port) {
            return false;
        }
        match &self.hosts {
            Hosts::Any => true,
            Hosts::Below(domain) => destination
                .host
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            Hosts::Name(name) => destination.ip.is_none() && *name == destination.host,
            Hosts::Ip(ip) => destination.ip == Some(*ip),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `host` and `port` of `host:port`, `[v6]:port`, or a bare host (a bare
/// IPv6 address, with its colons, has no port).
fn split_port(text: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or("an opening [ without its closing ]")?;
        let host = &text[..inside.len() + 2];
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected {after:?} after the IPv6 address")),
        };
    }
    if text.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((text, None)),
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("port {text:?} is not a number from 1 to 65535")),
    }
}

/// An IP literal, IPv6 with or without brackets.
fn parse_ip(host: &str) -> Option<IpAddr> {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

/// Whether `name` is a DNS host name: labels of letters, digits, `-` and
/// `_`, 1 to 63 characters each, 253 in all, an optional trailing dot.
pub fn check_name(name: &str) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return Err(format!(
            "a host name has 1 to {MAX_HOST_LEN} characters, this one {}",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "each dot-separated label has 1 to {MAX_LABEL_LEN} characters"
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "{bad:?} is not allowed in a host name (letters, digits, - and _; * only as the whole first label)"
            ));
        }
    }
    Ok(())
}

/// A destination as policies see it: the host as the client named it
/// (lower case, no trailing dot, IPv6 without brackets) and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub port: u16,
    ip: Option<IpAddr>,
}

impl Destination {
    /// Normalizes `host`; refuses what is neither an IP literal nor a host
    /// name, so nothing absurd reaches the resolver.
    pub fn new(host: &str, port: u16) -> Result<Destination, String> {
        let lower = host.to_ascii_lowercase();
        if let Some(ip) = parse_ip(&lower) {
            return Ok(Destination {
                host: ip.to_canonical().to_string(),
                port,
                ip: Some(ip.to_canonical()),
            });
        }
        check_name(&lower)?;
        Ok(Destination {
            host: lower.trim_end_matches('.').to_string(),
            port,
            ip: None,
        })
    }

    /// `host:port`, with brackets around an IPv6 address: the pattern that
    /// names exactly this destination.
    pub fn pattern(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern())
    }
}

/// What decided about a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Deny(Pattern),
    Allow(Pattern),
    Default(EgressDefault),
}

impl Rule {
    pub fn allows(&self) -> bool {
        match self {
            Rule::Deny(_) => false,
            Rule::Allow(_) => true,
            Rule::Default(default) => *default == EgressDefault::Allow,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Deny(pattern) => write!(f, "deny {pattern}"),
            Rule::Allow(pattern) => write!(f, "allow {pattern}"),
            Rule::Default(default) => write!(f, "default {default}"),
        }
    }
}

/// A compiled policy. Build it with [`Policy::compile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    default: EgressDefault,
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
}

impl Policy {
    /// Checks every pattern of `wire`.
    pub fn compile(wire: &EgressPolicy) -> Result<Policy, PolicyError> {
        Ok(Policy {
            default: wire.default,
            allow: compile_list("allow", &wire.allow)?,
            deny: compile_list("deny", &wire.deny)?,
        })
    }

    /// The rule that decides `destination`: the first deny pattern that
    /// matches, else the first allow pattern, else the default.
    pub fn decide(&self, destination: &Destination) -> Rule {
        if let Some(pattern) = self.deny.iter().find(|p| p.matches(destination)) {
            return Rule::Deny(pattern.clone());
        }
        if let Some(pattern) = self.allow.iter().find(|p| p.matches(destination)) {
            return Rule::Allow(pattern.clone());
        }
        Rule::Default(self.default)
    }

    /// The policy in its wire form, patterns normalized.
    pub fn wire(&self) -> EgressPolicy {
        let texts = |list: &[Pattern]| list.iter().map(ToString::to_string).collect();
        EgressPolicy {
            default: self.default,
            allow: texts(&self.allow),
            deny: texts(&self.deny),
        }
    }
}

fn compile_list(list: &'static str, patterns: &[String]) -> Result<Vec<Pattern>, PolicyError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(PolicyError::TooMany {
            list,
            count: patterns.len(),
        });
    }
    patterns
        .iter()
        .enumerate()
        .map(|(index, text)| {
            Pattern::parse(text).map_err(|reason| PolicyError::Pattern {
                list,
                index,
                pattern: text.clone(),
                reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(default: EgressDefault, allow: &[&str], deny: &[&str]) -> Policy {
        Policy::compile(&EgressPolicy {
            default,
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }

    fn decide(policy: &Policy, host: &str, port: u16) -> String {
        policy
            .decide(&Destination::new(host, port).unwrap())
            .to_string()
    }

    #[test]
    fn deny_wins_then_allow_then_the_default() {
        let p = policy(
            EgressDefault::Deny,
            &["mirror.example.org", "*.example.com", "git.example.net:443"],
            &["bad.example.com", "*:25"],
        );
        assert_eq!(
            decide(&p, "mirror.example.org", 80),
            "allow mirror.example.org"
        );
        assert_eq!(
            decide(&p, "MIRROR.example.org.", 443),
            "allow mirror.example.org"
        );
        assert_eq!(decide(&p, "a.b.example.com", 443), "allow *.example.com");
        assert_eq!(decide(&p, "example.com", 443), "default deny");
        assert_eq!(decide(&p, "notexample.com", 443), "default deny");
        assert_eq!(decide(&p, "bad.example.com", 443), "deny bad.example.com");
        assert_eq!(decide(&p, "mirror.example.org", 25), "deny *:25");
        assert_eq!(
            decide(&p, "git.example.net", 443),
            "allow git.example.net:443"
        );
        assert_eq!(decide(&p, "git.example.net", 22), "default deny");
        let open = policy(EgressDefault::Allow, &[], &["*.internal.example"]);
        assert_eq!(decide(&open, "anything.example", 8080), "default allow");
        assert_eq!(
            decide(&open, "db.internal.example", 5432),
            "deny *.internal.example"
        );
    }

    #[test]
    fn ip_literals_match_addresses_not_names() {
        let p = policy(
            EgressDefault::Deny,
            &["192.0.2.10", "[2001:db8::1]:443", "2001:db8::2"],
            &[],
        );
        assert_eq!(decide(&p, "192.0.2.10", 80), "allow 192.0.2.10");
        assert_eq!(decide(&p, "[::ffff:192.0.2.10]", 80), "allow 192.0.2.10");
        assert_eq!(decide(&p, "[2001:DB8::1]", 443), "allow [2001:db8::1]:443");
        assert_eq!(decide(&p, "2001:db8::1", 80), "default deny");
        assert_eq!(decide(&p, "[2001:db8::2]", 8443), "allow 2001:db8::2");
        // A name is not its address, and an address is not a name.
        assert_eq!(
            decide(
                &policy(EgressDefault::Deny, &["192.0.2.10.example"], &[]),
                "192.0.2.10",
                80
            ),
            "default deny"
        );
    }

    #[test]
    fn bad_patterns_are_named_with_what_is_allowed() {
        let cases = [
            ("*.*.example.com", "'*' is not allowed"),
            ("exa mple.com", "' ' is not allowed"),
            ("example.com:0", "from 1 to 65535"),
            ("example.com:99999", "from 1 to 65535"),
            ("example.com:", "from 1 to 65535"),
            ("[2001:db8::1", "without its closing ]"),
            ("[2001:db8::1]x", "unexpected"),
            ("a..b", "1 to 63 characters"),
            ("", "1 to 253 characters"),
            ("http://example.com", "not a URL"),
            ("example.com/path", "not a URL"),
        ];
        for (pattern, needle) in cases {
            let err = Policy::compile(&EgressPolicy {
                default: EgressDefault::Deny,
                allow: vec!["ok.example".into(), pattern.into()],
                deny: vec![],
            })
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("allow[1] "), "{err}");
            assert!(err.contains(needle), "{pattern:?}: {needle:?} not in {err}");
            assert!(err.contains("*.example.com"), "{err}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(Pattern::parse(&long).unwrap_err().contains("63"));
        let many = EgressPolicy {
            default: EgressDefault::Allow,
            allow: Vec::new(),
            deny: vec!["x.example".into(); MAX_PATTERNS + 1],
        };
        assert!(matches!(
            Policy::compile(&many),
            Err(PolicyError::TooMany { list: "deny", .. })
        ));
    }

    #[test]
    fn the_wire_form_round_trips_normalized() {
        let p = policy(EgressDefault::Allow, &["Mirror.Example.ORG"], &["*:25"]);
        let wire = p.wire();
        assert_eq!(wire.allow, ["mirror.example.org"]);
        assert_eq!(Policy::compile(&wire).unwrap(), p);
        assert_eq!(
            Destination::new("[2001:DB8::1]", 443).unwrap().pattern(),
            "[2001:db8::1]:443"
        );
        assert!(Destination::new("bad host", 80).is_err());
        assert!(Destination::new(&"a".repeat(300), 80).is_err());
    }
}
