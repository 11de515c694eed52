//! Deciding one request against a verified token.

use crate::{last_id, token_error, Caveats, Minted, RevocationId, Right, Rights, TokenError};
use biscuit_auth::builder::{fact, Term};
use biscuit_auth::error::{FailedCheck, Logic, Token};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit};
use roost_lifecycle::{Scope, Target};
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bounds on the Datalog run of one request. Facts and iterations bound
/// what a hostile appended block can make the server do; the time bound
/// is a backstop set far above what the checks roost writes take (tens
/// of microseconds), so that a loaded host does not turn a valid request
/// into a refusal, as biscuit's default of 1 ms would in a debug build.
const LIMITS: AuthorizerLimits = AuthorizerLimits {
    max_facts: 1000,
    max_iterations: 100,
    max_time: Duration::from_millis(50),
};

/// A token whose signatures, root key and revocation were checked: what
/// a front end keeps for the caller, and asks about each call.
#[derive(Debug)]
pub struct Verified {
    biscuit: Biscuit,
    /// The revocation ids of its blocks, first block first.
    ids: Vec<RevocationId>,
    /// [`Verified::rights`], once asked.
    rights: OnceLock<Rights>,
}

/// One call, as a token's caveats see it: the right it needs on its
/// target, plus what the exec and quota caveats look at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    right: Right,
    target: Target<'a>,
    command: Option<&'a [String]>,
    create: Option<(&'a str, u32)>,
}

impl<'a> Request<'a> {
    pub fn new(right: Right, target: Target<'a>) -> Request<'a> {
        Request {
            right,
            target,
            command: None,
            create: None,
        }
    }

    /// An exec of `argv`. An exec asked about without its command (can
    /// this token exec at all?) passes an allow-list only if it is absent.
    pub fn exec(mut self, argv: &'a [String]) -> Request<'a> {
        self.command = Some(argv);
        self
    }

    /// A machine create, of a machine named `name`, after which the app
    /// has `machines_after` machines (the new one included).
    pub fn create_machine(mut self, name: &'a str, machines_after: u32) -> Request<'a> {
        self.create = Some((name, machines_after));
        self
    }

    /// The request's facts, as the crate's docs list them.
    fn facts(&self, now: SystemTime) -> Vec<biscuit_auth::builder::Fact> {
        let text = |s: &str| Term::Str(s.to_string());
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut facts = vec![
            fact("right", &[text(self.right.as_str())]),
            fact("time", &[Term::Date(secs)]),
            fact(
                "operation",
                &[text(if self.create.is_some() {
                    "create"
                } else {
                    "call"
                })],
            ),
        ];
        match self.target {
            Target::Host => {}
            Target::App(app) => facts.push(fact("app", &[text(app)])),
            Target::Machine { app, id } => {
                facts.push(fact("app", &[text(app)]));
                facts.push(fact("machine", &[text(id)]));
            }
        }
        if let Some(argv) = self.command {
            let argv = Term::Array(argv.iter().map(|a| text(a)).collect());
            facts.push(fact("command", &[argv]));
        }
        if let Some((name, count)) = self.create {
            facts.push(fact(
                "create",
                &[text(name), Term::Integer(i64::from(count))],
            ));
        }
        facts
    }
}

impl Verified {
    /// `ids` has one id per block of `biscuit`, so at least one.
    pub(crate) fn new(biscuit: Biscuit, ids: Vec<RevocationId>) -> Verified {
        Verified {
            biscuit,
            ids,
            rights: OnceLock::new(),
        }
    }

    /// The token's id (shared with the tokens derived from it).
    pub fn id(&self) -> &RevocationId {
        &self.ids[0]
    }

    pub(crate) fn block_ids(&self) -> &[RevocationId] {
        &self.ids
    }

    /// Whether every caveat of every block allows `request` at `now`.
    pub fn authorize(&self, request: &Request<'_>, now: SystemTime) -> Result<(), Refusal> {
        let refused = self.refusing(request.facts(now));
        match refused.into_iter().min() {
            None => Ok(()),
            Some(caveat) => Err(Refusal {
                caveat,
                right: request.right,
                target: request.target.to_string(),
            }),
        }
    }

    /// The rights its rights caveats allow, whatever the target and the
    /// time (expiry is [`Verified::expired`]): what a front end may offer
    /// the holder (the MCP tools it lists). None when a check roost does
    /// not write refuses a right. Decided once per token, since a request
    /// asks it every time.
    pub fn rights(&self) -> Rights {
        *self.rights.get_or_init(|| {
            Right::ALL
                .into_iter()
                .filter(|right| {
                    // No app or machine is stated, so the apps and machines
                    // caveats fail here (they are decided per target), and
                    // at the epoch no expiry has passed.
                    let facts = Request::new(*right, Target::Host).facts(UNIX_EPOCH);
                    !self
                        .refusing(facts)
                        .iter()
                        .any(|c| matches!(c, Caveat::Rights | Caveat::Unreadable))
                })
                .collect()
        })
    }

    /// Whether its expiry caveat (any block's) has passed at `now`: a
    /// front end refuses such a token as a whole.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.refusing(Request::new(Right::Read, Target::Host).facts(now))
            .contains(&Caveat::Expiry)
    }

    /// A token allowing what this one and `narrower` both allow, with an
    /// id of its own (its new block's revocation id): revoking it revokes
    /// it and what is derived from it, not this token.
    pub fn attenuate(&self, narrower: &Caveats) -> Result<Minted, TokenError> {
        let derived = self
            .biscuit
            .append(narrower.block()?)
            .map_err(token_error)?;
        let ids = derived.revocation_identifiers();
        Ok(Minted {
            id: last_id(&ids)?,
            token: derived.to_base64().map_err(token_error)?,
        })
    }

    /// The caveats that refuse a call stated as `facts`; empty when every
    /// check of every block holds.
    fn refusing(&self, facts: Vec<biscuit_auth::builder::Fact>) -> Vec<Caveat> {
        let mut builder = AuthorizerBuilder::new().set_limits(LIMITS);
        for fact in facts {
            builder = match builder.fact(fact) {
                Ok(builder) => builder,
                Err(_) => return vec![Caveat::Unreadable],
            };
        }
        let Ok(mut authorizer) = builder
            .policy("allow if true")
            .and_then(|b| b.build(&self.biscuit))
        else {
            return vec![Caveat::Unreadable];
        };
        match authorizer.authorize() {
            Ok(_) => Vec::new(),
            Err(Token::FailedLogic(
                Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
            )) if !checks.is_empty() => checks.iter().map(Caveat::of).collect(),
            Err(_) => vec![Caveat::Unreadable],
        }
    }
}

/// A token is a caller's scope: its apps, machines and expiry decided at
/// the moment of each call (its rights are the caller's [`Rights`]).
impl Scope for Verified {
    fn allows(&self, right: Right, target: Target<'_>) -> Result<(), String> {
        self.authorize(&Request::new(right, target), SystemTime::now())
            .map_err(|refusal| refusal.reason())
    }
}

/// Which caveat refused a request. When several do, the one named is
/// the first in this order, which puts what the holder can least change
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Caveat {
    /// The token has expired.
    Expiry,
    Apps,
    Machines,
    Rights,
    /// The exec allow-list.
    Exec,
    /// The create quota: the number of machines or their name prefix.
    Quota,
    /// A check roost does not write (appended by hand), or one that could
    /// not be evaluated.
    Unreadable,
}

impl Caveat {
    /// The caveat a failed check is, by the request facts it reads: each
    /// kind of check roost writes reads its own (`caveats.rs`).
    fn of(check: &FailedCheck) -> Caveat {
        let rule = match check {
            FailedCheck::Block(check) => &check.rule,
            FailedCheck::Authorizer(check) => &check.rule,
        };
        let reads = |fact: &str| rule.contains(&format!("{fact}("));
        if reads("time") {
            Caveat::Expiry
        } else if reads("command") {
            Caveat::Exec
        } else if reads("create") {
            Caveat::Quota
        } else if reads("machine") {
            Caveat::Machines
        } else if reads("app") {
            Caveat::Apps
        } else if reads("right") {
            Caveat::Rights
        } else {
            Caveat::Unreadable
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Caveat::Expiry => "expiry",
            Caveat::Apps => "apps",
            Caveat::Machines => "machines",
            Caveat::Rights => "rights",
            Caveat::Exec => "exec command",
            Caveat::Quota => "create quota",
            Caveat::Unreadable => "a caveat",
        }
    }
}

/// A request a valid token does not allow (a front end's 403; expiry is
/// better answered as a 401, since the token is no longer any good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub caveat: Caveat,
    pub right: Right,
    /// The target, as [`Target`] shows it.
    pub target: String,
}

impl Refusal {
    /// Which caveat refused, as a clause after the right and target.
    pub fn reason(&self) -> String {
        match self.caveat {
            Caveat::Expiry => "the token has expired".into(),
            Caveat::Unreadable => "a caveat of the token refuses it".into(),
            caveat => format!("the token's {} caveat refuses it", caveat.describe()),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.caveat {
            Caveat::Expiry => f.write_str("the token has expired"),
            Caveat::Unreadable => write!(
                f,
                "not allowed: a caveat of the token refuses the '{}' right on {}",
                self.right, self.target
            ),
            caveat => write!(
                f,
                "not allowed: the token's {} caveat refuses the '{}' right on {}",
                caveat.describe(),
                self.right,
                self.target
            ),
        }
    }
}

impl std::error::Error for Refusal {}
