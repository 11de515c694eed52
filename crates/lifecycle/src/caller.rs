//! Who calls the service, with what rights, and the one check of every
//! call.
//!
//! Every operation of the service facade names the [`Right`] it needs and
//! the [`Target`] it works on, and asks [`Caller::may`] before it reads or
//! changes anything. That function is the only place rights are decided:
//! scoped tokens narrow a caller's [`Rights`] (to apps, machines,
//! operations) by changing what the front ends put in a `Caller` and what
//! `may` compares, never by touching the operations or the front ends'
//! calls. A caller that presented a token carries its [`Scope`], which
//! `may` consults after the rights; the scope is a trait here so that
//! this crate stays pure and knows no token format.

use std::fmt;
use std::sync::Arc;

/// A family of operations a caller may be allowed: the vocabulary scoped
/// tokens are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Right {
    /// See apps, machines (events, versions, leases, metadata, processes,
    /// logs), volumes, buckets, secrets' names and digests, images and
    /// egress policies and logs.
    Read,
    /// Create and delete apps; create, start, stop, restart, signal,
    /// update and destroy machines; their leases, metadata, cordons and
    /// health reports.
    Lifecycle,
    /// Run commands inside machines.
    Exec,
    /// Read and write files inside machines.
    Files,
    /// Create, change, grow, snapshot and destroy volumes.
    Volumes,
    /// Create and destroy buckets (and so receive the app's key pair).
    Storage,
    /// Set and unset app secrets.
    SecretsWrite,
    /// Import, pull, remove and prune images.
    Images,
    /// Change apps' egress policies.
    Egress,
    /// Checkpoint machines and restore them from checkpoints. No
    /// operation needs it yet; it is named now so that tokens minted
    /// today can carry it when checkpoints arrive.
    Checkpoints,
    /// Create, list and revoke API tokens.
    Tokens,
}

impl Right {
    /// Every right, in declaration order.
    pub const ALL: [Right; 11] = [
        Right::Read,
        Right::Lifecycle,
        Right::Exec,
        Right::Files,
        Right::Volumes,
        Right::Storage,
        Right::SecretsWrite,
        Right::Images,
        Right::Egress,
        Right::Checkpoints,
        Right::Tokens,
    ];

    /// The right's name, as refusals show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Read => "read",
            Right::Lifecycle => "lifecycle",
            Right::Exec => "exec",
            Right::Files => "files",
            Right::Volumes => "volumes",
            Right::Storage => "storage",
            Right::SecretsWrite => "secrets:write",
            Right::Images => "images",
            Right::Egress => "egress",
            Right::Checkpoints => "checkpoints",
            Right::Tokens => "tokens",
        }
    }

    /// The right named `name` ([`Right::as_str`]).
    pub fn parse(name: &str) -> Option<Right> {
        Right::ALL.into_iter().find(|right| right.as_str() == name)
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of rights. Empty is a real value: a caller that may do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rights(u16);

impl Rights {
    /// Every right: what the admin token grants, and so, today, every caller.
    pub const ALL: Rights = Rights((1 << Right::ALL.len()) - 1);
    /// No right at all.
    pub const NONE: Rights = Rights(0);

    pub fn contains(self, right: Right) -> bool {
        self.0 & right.bit() != 0
    }

    /// The rights of the set, in [`Right::ALL`]'s order.
    pub fn iter(self) -> impl Iterator<Item = Right> {
        Right::ALL
            .into_iter()
            .filter(move |right| self.contains(*right))
    }
}

impl FromIterator<Right> for Rights {
    fn from_iter<I: IntoIterator<Item = Right>>(rights: I) -> Rights {
        Rights(rights.into_iter().fold(0, |bits, right| bits | right.bit()))
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The holder of the admin token, through the HTTP API.
    Admin,
    /// The holder of an API token other than the admin token: `id` is
    /// the id of the issued token it is or was derived from (never the
    /// token itself).
    Token { id: String },
    /// An MCP client, through `/mcp`: its session (`Mcp-Session-Id`), none
    /// for a stateless request. Its rights are those of the token its
    /// request carried.
    Mcp { session: Option<String> },
    /// The edge proxy: its routing reads and autostarts, for an incoming
    /// request, and its supervisor's autostops and health reports.
    EdgeProxy,
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Admin => f.write_str("the admin token"),
            Who::Token { id } => write!(f, "token {id}"),
            Who::Mcp { session: Some(id) } => write!(f, "MCP session {id}"),
            Who::Mcp { session: None } => f.write_str("this MCP request"),
            Who::EdgeProxy => f.write_str("the edge proxy"),
        }
    }
}

/// What an operation works on: what a right can be narrowed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Every app at once (listings across apps) or none in particular
    /// (the image store).
    Host,
    /// One app and what it owns: its machines as a whole, volumes,
    /// buckets, secrets, egress policy.
    App(&'a str),
    /// One machine of an app.
    Machine { app: &'a str, id: &'a str },
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Host => f.write_str("this roost"),
            Target::App(app) => write!(f, "app '{app}'"),
            Target::Machine { app, id } => write!(f, "machine {id} of app '{app}'"),
        }
    }
}

/// What a verified token allows beyond its rights: the apps, machines
/// and expiry it is limited to, decided for one right on one target.
/// Implemented by the token crate's verified token; the `Err` is a
/// neutral clause saying which limit refused (never the token).
pub trait Scope: fmt::Debug + Send + Sync {
    fn allows(&self, right: Right, target: Target<'_>) -> Result<(), String>;
}

/// The caller of one service call: who, with what rights and, when it
/// presented a token, that token's [`Scope`].
#[derive(Debug, Clone)]
pub struct Caller {
    who: Who,
    rights: Rights,
    scope: Option<Arc<dyn Scope>>,
}

impl Caller {
    pub fn new(who: Who, rights: Rights) -> Caller {
        Caller {
            who,
            rights,
            scope: None,
        }
    }

    /// A caller limited to `rights` and, within them, to what `scope`
    /// allows.
    pub fn scoped(who: Who, rights: Rights, scope: Arc<dyn Scope>) -> Caller {
        Caller {
            who,
            rights,
            scope: Some(scope),
        }
    }

    /// The same rights and scope, shown as `who`: an MCP session acting
    /// with the token of the request it came in.
    pub fn acting_as(&self, who: Who) -> Caller {
        Caller {
            who,
            rights: self.rights,
            scope: self.scope.clone(),
        }
    }

    /// The admin token's caller: every right.
    pub fn admin() -> Caller {
        Caller::new(Who::Admin, Rights::ALL)
    }

    /// The edge proxy's caller: every right, as it starts and stops any
    /// app's machines.
    pub fn edge_proxy() -> Caller {
        Caller::new(Who::EdgeProxy, Rights::ALL)
    }

    pub fn who(&self) -> &Who {
        &self.who
    }

    pub fn rights(&self) -> Rights {
        self.rights
    }

    /// The one check of every service call: whether this caller may use
    /// `right` on `target`: its rights must contain `right`, and its
    /// scope, if it has one, must allow it on `target`.
    pub fn may(&self, right: Right, target: Target<'_>) -> Result<(), Forbidden> {
        let refused = |reason| Forbidden {
            who: self.who.to_string(),
            right,
            target: target.to_string(),
            reason,
        };
        if !self.rights.contains(right) {
            return Err(refused(None));
        }
        match &self.scope {
            Some(scope) => scope
                .allows(right, target)
                .map_err(|reason| refused(Some(reason))),
            None => Ok(()),
        }
    }
}

/// A call refused because its caller lacks the right it needs.
///
/// Its `Display` is a neutral sentence naming the caller, the right and
/// what it was needed on; it names no command of any front end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    /// The caller, as [`Who`] shows it.
    pub who: String,
    pub right: Right,
    /// What the right was needed on, as [`Target`] shows it.
    pub target: String,
    /// Which limit of the caller's scope refused, when its rights hold
    /// the right but its scope does not allow it on the target.
    pub reason: Option<String>,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not allowed: {} lacks the '{}' right on {}",
            self.who, self.right, self.target
        )?;
        match &self.reason {
            Some(reason) => write!(f, " ({reason})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGETS: [Target<'static>; 3] = [
        Target::Host,
        Target::App("a"),
        Target::Machine {
            app: "a",
            id: "0123456789abcd",
        },
    ];

    fn every_kind() -> [Who; 5] {
        [
            Who::Admin,
            Who::Token { id: "t1".into() },
            Who::Mcp {
                session: Some("s1".into()),
            },
            Who::Mcp { session: None },
            Who::EdgeProxy,
        ]
    }

    #[test]
    fn every_caller_of_today_may_do_everything() {
        let callers = [Caller::admin(), Caller::edge_proxy()]
            .into_iter()
            .chain(every_kind().map(|who| Caller::new(who, Rights::ALL)));
        for caller in callers {
            for right in Right::ALL {
                for target in TARGETS {
                    assert_eq!(caller.may(right, target), Ok(()), "{caller:?} {right}");
                }
            }
        }
    }

    #[test]
    fn a_caller_without_rights_may_do_nothing() {
        for who in every_kind() {
            let caller = Caller::new(who, Rights::NONE);
            for right in Right::ALL {
                for target in TARGETS {
                    let refused = caller.may(right, target).unwrap_err();
                    assert_eq!(refused.right, right);
                    assert_eq!(refused.target, target.to_string());
                }
            }
        }
    }

    /// A scope allowing app "a" only, as a token's would.
    #[derive(Debug)]
    struct OnlyAppA;

    impl Scope for OnlyAppA {
        fn allows(&self, _: Right, target: Target<'_>) -> Result<(), String> {
            match target {
                Target::App("a") | Target::Machine { app: "a", .. } => Ok(()),
                _ => Err("its apps caveat refuses it".into()),
            }
        }
    }

    #[test]
    fn a_scope_is_asked_after_the_rights_and_its_refusal_is_named() {
        let rights: Rights = [Right::Read].into_iter().collect();
        let caller = Caller::scoped(Who::Token { id: "t1".into() }, rights, Arc::new(OnlyAppA));
        assert_eq!(caller.may(Right::Read, Target::App("a")), Ok(()));
        let other = caller.may(Right::Read, Target::App("b")).unwrap_err();
        assert_eq!(
            other.to_string(),
            "not allowed: token t1 lacks the 'read' right on app 'b' (its apps caveat refuses it)"
        );
        let unheld = caller.may(Right::Lifecycle, Target::App("a")).unwrap_err();
        assert_eq!(unheld.reason, None);
        let session = caller.acting_as(Who::Mcp { session: None });
        assert_eq!(session.who(), &Who::Mcp { session: None });
        assert!(session.may(Right::Read, Target::Host).is_err());
        assert_eq!(session.may(Right::Read, Target::App("a")), Ok(()));
    }

    #[test]
    fn rights_are_distinct_and_all_holds_each() {
        let bits: Vec<u16> = Right::ALL.iter().map(|r| r.bit()).collect();
        for (i, bit) in bits.iter().enumerate() {
            assert!(!bits[i + 1..].contains(bit));
            assert!(Rights::ALL.contains(Right::ALL[i]));
            assert!(!Rights::NONE.contains(Right::ALL[i]));
        }
    }

    #[test]
    fn a_set_holds_exactly_the_rights_it_was_built_from_and_names_parse_back() {
        let some: Rights = [Right::Exec, Right::Read, Right::Tokens]
            .into_iter()
            .collect();
        assert_eq!(
            some.iter().collect::<Vec<_>>(),
            [Right::Read, Right::Exec, Right::Tokens]
        );
        assert_eq!(Right::ALL.into_iter().collect::<Rights>(), Rights::ALL);
        assert_eq!(std::iter::empty().collect::<Rights>(), Rights::NONE);
        for right in Right::ALL {
            assert_eq!(Right::parse(right.as_str()), Some(right));
        }
        assert_eq!(Right::parse("secrets"), None);
    }

    #[test]
    fn a_refusal_names_the_caller_the_right_and_the_target() {
        let caller = Caller::new(
            Who::Mcp {
                session: Some("s1".into()),
            },
            Rights::NONE,
        );
        let refused = caller
            .may(
                Right::Exec,
                Target::Machine {
                    app: "web",
                    id: "0123456789abcd",
                },
            )
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "not allowed: MCP session s1 lacks the 'exec' right on machine 0123456789abcd of app 'web'"
        );
        assert!(!refused.to_string().contains('`'));
    }
}
