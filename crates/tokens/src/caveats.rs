//! What a token allows, and the Datalog checks that say it.

use crate::{token_error, Right, Rights, TokenError};
use biscuit_auth::builder::{BlockBuilder, Term};
use biscuit_auth::UnverifiedBiscuit;
use roost_types::TokenCaveats;
use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

/// The limits of a token. Each field that is set narrows it; the default
/// (nothing set) allows every right on everything, forever, as the admin
/// token does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caveats {
    /// The apps it reaches. Set, calls on the host as a whole (listing
    /// every app, the image store) are refused.
    pub apps: Option<Apps>,
    /// The machines (ids) it reaches. Set, only calls on one of these
    /// machines are allowed, not calls on their app as a whole.
    pub machines: Option<BTreeSet<String>>,
    /// The rights it carries.
    pub rights: Option<Rights>,
    /// The commands `exec` may run (any, when not set). An empty list
    /// allows none.
    pub exec: Option<Vec<Command>>,
    /// At most this many machines in an app after a create it allows.
    pub max_machines: Option<u32>,
    /// The machines it creates must have names starting so.
    pub name_prefix: Option<String>,
    /// After this instant it allows nothing (a second's precision).
    pub expires: Option<SystemTime>,
}

/// The apps a token reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Apps {
    Names(BTreeSet<String>),
    /// Every app whose name starts with this.
    Prefix(String),
}

/// An entry of the exec allow-list, on the whole argument vector (Fly's
/// machine-exec tokens have the same two kinds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Exactly this argument vector.
    Exact(Vec<String>),
    /// Any argument vector that begins with these arguments, whole
    /// arguments compared: `["git", "log"]` allows `git log -1`, not
    /// `git logs`.
    Prefix(Vec<String>),
}

impl Caveats {
    /// The caveats the API's [`TokenCaveats`] name: an unknown right, or
    /// both an app list and an app prefix, is refused.
    pub fn from_wire(wire: &TokenCaveats) -> Result<Caveats, TokenError> {
        let apps = match (&wire.apps, &wire.app_prefix) {
            (Some(_), Some(_)) => {
                return Err(TokenError::Invalid(
                    "a token names its apps by a list or by a prefix, not both".into(),
                ))
            }
            (Some(names), None) => Some(Apps::Names(names.iter().cloned().collect())),
            (None, Some(prefix)) => Some(Apps::Prefix(prefix.clone())),
            (None, None) => None,
        };
        let rights = match &wire.rights {
            Some(names) => Some(
                names
                    .iter()
                    .map(|name| {
                        Right::parse(name).ok_or_else(|| {
                            let known: Vec<&str> = Right::ALL.iter().map(|r| r.as_str()).collect();
                            TokenError::Invalid(format!(
                                "unknown right '{name}'; the rights are {}",
                                known.join(", ")
                            ))
                        })
                    })
                    .collect::<Result<Rights, TokenError>>()?,
            ),
            None => None,
        };
        Ok(Caveats {
            apps,
            machines: wire
                .machines
                .as_ref()
                .map(|ids| ids.iter().cloned().collect()),
            rights,
            expires: wire.expires_at.map(SystemTime::from),
            ..Default::default()
        })
    }

    /// The checks of these caveats, as one block.
    pub(crate) fn block(&self) -> Result<BlockBuilder, TokenError> {
        let mut checks = Checks::default();
        match &self.apps {
            Some(Apps::Names(names)) => checks.add(
                "check if app($a), {apps}.contains($a)",
                [("apps".into(), strings(names))],
            )?,
            Some(Apps::Prefix(prefix)) => checks.add(
                "check if app($a), $a.starts_with({prefix})",
                [("prefix".into(), Term::Str(prefix.clone()))],
            )?,
            None => {}
        }
        if let Some(ids) = &self.machines {
            checks.add(
                "check if machine($m), {machines}.contains($m)",
                [("machines".into(), strings(ids))],
            )?;
        }
        if let Some(rights) = self.rights {
            let names: BTreeSet<String> = rights.iter().map(|r| r.as_str().to_string()).collect();
            checks.add(
                "check if right($r), {rights}.contains($r)",
                [("rights".into(), strings(&names))],
            )?;
        }
        if let Some(commands) = &self.exec {
            // One alternative per allowed command, and one for calls that
            // are not an exec.
            let mut alternatives = Vec::new();
            let mut params = Vec::new();
            for (n, command) in commands.iter().enumerate() {
                let (test, argv) = match command {
                    Command::Exact(argv) => (format!("$c == {{c{n}}}"), argv),
                    Command::Prefix(argv) => (format!("$c.starts_with({{c{n}}})"), argv),
                };
                alternatives.push(format!("command($c), {test}"));
                params.push((format!("c{n}"), array(argv)));
            }
            alternatives.push("right($r), $r != \"exec\"".into());
            checks.add(&format!("check if {}", alternatives.join(" or ")), params)?;
        }
        if let Some(max) = self.max_machines {
            checks.add(
                "check if create($name, $count), $count <= {max} or operation($o), $o != \"create\"",
                [("max".into(), Term::Integer(i64::from(max)))],
            )?;
        }
        if let Some(prefix) = &self.name_prefix {
            checks.add(
                "check if create($name, $count), $name.starts_with({prefix}) \
                 or operation($o), $o != \"create\"",
                [("prefix".into(), Term::Str(prefix.clone()))],
            )?;
        }
        if let Some(expires) = self.expires {
            let secs = expires
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            checks.add(
                "check if time($t), $t <= {expires}",
                [("expires".into(), Term::Date(secs))],
            )?;
        }
        Ok(checks.block)
    }
}

/// A block being filled with checks.
#[derive(Default)]
struct Checks {
    block: BlockBuilder,
}

impl Checks {
    /// Adds the check `source` with its `{parameters}` set.
    fn add(
        &mut self,
        source: &str,
        params: impl IntoIterator<Item = (String, Term)>,
    ) -> Result<(), TokenError> {
        let block = std::mem::take(&mut self.block);
        self.block = block
            .code_with_params(source, params.into_iter().collect(), HashMap::new())
            .map_err(|err| TokenError::Invalid(format!("cannot write a caveat: {err}")))?;
        Ok(())
    }
}

fn strings(values: &BTreeSet<String>) -> Term {
    Term::Set(values.iter().cloned().map(Term::Str).collect())
}

fn array(values: &[String]) -> Term {
    Term::Array(values.iter().cloned().map(Term::Str).collect())
}

/// Derives a narrower token from `token` without the server: a block of
/// `narrower`'s checks is appended, so the result allows what both the
/// token and `narrower` allow. The token's signatures are not checked
/// here (that needs the root's public key); the server checks them all
/// when the derived token is used.
pub fn attenuate(token: &str, narrower: &Caveats) -> Result<String, TokenError> {
    let parent = UnverifiedBiscuit::from_base64(token.trim()).map_err(token_error)?;
    let derived = parent.append(narrower.block()?).map_err(token_error)?;
    derived.to_base64().map_err(token_error)
}
