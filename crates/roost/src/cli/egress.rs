//! `roost egress`: where an app's machines may connect through the egress
//! proxy, and what it decided.

use super::output::{print_json, print_line, print_table};
use super::AppArg;
use anyhow::Result;
use clap::Subcommand;
use roost_client::Client;
use roost_types::{EgressDefault, EgressLog, EgressPolicy};

#[derive(Debug, Subcommand)]
pub enum EgressCommand {
    /// Show the app's egress policy.
    Show {
        #[command(flatten)]
        app: AppArg,
    },
    /// Replace the app's egress policy: its default and both lists (a list
    /// not given becomes empty).
    Set {
        #[command(flatten)]
        app: AppArg,
        /// What happens to a destination no pattern names [default: the
        /// current default].
        #[arg(long = "default", value_name = "deny|allow")]
        default: Option<EgressDefault>,
        /// A host pattern to let through: `host`, `*.domain`, `*`, or an IP,
        /// each with an optional `:port` (repeatable).
        #[arg(long = "allow", value_name = "PATTERN")]
        allow: Vec<String>,
        /// A host pattern to refuse; deny wins over allow (repeatable).
        #[arg(long = "deny", value_name = "PATTERN")]
        deny: Vec<String>,
    },
    /// Let host patterns through: add them to the allow list (and drop the
    /// same patterns from the deny list, which would win).
    Allow {
        #[command(flatten)]
        app: AppArg,
        #[arg(required = true, value_name = "PATTERN")]
        patterns: Vec<String>,
    },
    /// Refuse host patterns: add them to the deny list (and drop the same
    /// patterns from the allow list).
    Deny {
        #[command(flatten)]
        app: AppArg,
        #[arg(required = true, value_name = "PATTERN")]
        patterns: Vec<String>,
    },
    /// The egress proxy's recent decisions for the app's machines, oldest first.
    Log {
        #[command(flatten)]
        app: AppArg,
    },
}

pub async fn run(client: &Client, cmd: EgressCommand, json: bool) -> Result<()> {
    let policy = match cmd {
        EgressCommand::Show { app } => client.egress_policy(&app.app).await?,
        EgressCommand::Set {
            app,
            default,
            allow,
            deny,
        } => {
            let default = match default {
                Some(default) => default,
                None => client.egress_policy(&app.app).await?.default,
            };
            let policy = EgressPolicy {
                default,
                allow,
                deny,
            };
            client.set_egress_policy(&app.app, &policy).await?
        }
        EgressCommand::Allow { app, patterns } => {
            let mut policy = client.egress_policy(&app.app).await?;
            add_patterns(&mut policy.allow, &mut policy.deny, patterns);
            client.set_egress_policy(&app.app, &policy).await?
        }
        EgressCommand::Deny { app, patterns } => {
            let mut policy = client.egress_policy(&app.app).await?;
            add_patterns(&mut policy.deny, &mut policy.allow, patterns);
            client.set_egress_policy(&app.app, &policy).await?
        }
        EgressCommand::Log { app } => return print_log(&client.egress_log(&app.app).await?, json),
    };
    print_policy(&policy, json)
}

/// Adds `patterns` to `to` (once each) and removes them from `from`,
/// comparing as roost does (case-insensitively).
fn add_patterns(to: &mut Vec<String>, from: &mut Vec<String>, patterns: Vec<String>) {
    let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
    from.retain(|old| !patterns.iter().any(|p| same(old, p)));
    for pattern in patterns {
        if !to.iter().any(|old| same(old, &pattern)) {
            to.push(pattern);
        }
    }
}

fn print_policy(policy: &EgressPolicy, json: bool) -> Result<()> {
    if json {
        return print_json(policy);
    }
    let list = |patterns: &[String]| {
        if patterns.is_empty() {
            "(none)".to_string()
        } else {
            patterns.join(" ")
        }
    };
    print_line(format!(
        "default: {}\nallow:   {}\ndeny:    {}",
        policy.default,
        list(&policy.allow),
        list(&policy.deny)
    ))
}

fn print_log(log: &EgressLog, json: bool) -> Result<()> {
    if json {
        return print_json(log);
    }
    print_table(
        &[
            "TIME", "MACHINE", "METHOD", "HOST", "PORT", "DECISION", "RULE", "SENT", "RECEIVED",
        ],
        log.entries
            .iter()
            .map(|e| {
                vec![
                    e.time.clone(),
                    e.machine_id.clone(),
                    e.method.clone(),
                    e.host.clone(),
                    e.port.to_string(),
                    e.decision.clone(),
                    e.rule.clone(),
                    e.bytes_sent.to_string(),
                    e.bytes_received.to_string(),
                ]
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowing_a_denied_pattern_moves_it() {
        let mut allow = vec!["a.example".to_string()];
        let mut deny = vec!["B.example".to_string(), "c.example".to_string()];
        add_patterns(
            &mut allow,
            &mut deny,
            vec!["b.example".into(), "A.example".into()],
        );
        assert_eq!(allow, ["a.example", "b.example"]);
        assert_eq!(deny, ["c.example"]);
    }
}
