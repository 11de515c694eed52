//! roost's egress proxy: how machines reach the network, under a policy
//! their app owns.
//!
//! An HTTP/1.1 forward proxy: absolute-form `http://` requests are
//! forwarded, `CONNECT host:port` opens a tunnel (TLS, or anything else
//! the policy lets through). The kernel moves the bytes of tunnels and of
//! forwarded downloads (`splice(2)`); a forwarded request without a body
//! is read by the proxy's own HTTP/1.1 code for that, everything else by
//! hyper. Per request:
//!
//! 1. the client is placed by its address ([`Directory::machine_at`]): a
//!    machine of an app, or refused; each machine holds at most
//!    [`EgressConfig::max_connections_per_machine`] connections (past
//!    them, a 429, then closing unanswered);
//! 2. the app's [`Policy`] (asked afresh each time, so changes apply at
//!    once) decides the host and port: deny wins, then allow, then the
//!    default;
//! 3. the destination guard (roost-destination-guard) resolves the name
//!    and dials only addresses egress may ever reach;
//! 4. the decision lands in the app's audit log and the bytes in the
//!    machine's counters ([`Ledger`]).
//!
//! A refusal is a 403 whose JSON body names the host, the rule and the
//! call that would allow it. Bad input gets a 4xx or a closed connection
//! within a bound: a request head must arrive whole within
//! [`EgressConfig::header_timeout`] (a silent or trickling client is
//! closed then) and fit in 64 KiB (else 431). A request carrying `Proxy-Tokenizer` is
//! handed to the tokenizer (roost-tokenizer) for its credential and then
//! sent over TLS, so one proxy setting serves both.
//!
//! Usable alone: implement [`Directory`], then
//! [`EgressProxy::workers`] serves it on any listeners.

mod answer;
mod forward;
mod io;
mod ledger;
pub mod policy;
mod proxy;
mod splice;

pub use ledger::{Ledger, LOG_ENTRIES_PER_APP};
pub use policy::{Destination, Pattern, Policy, PolicyError, Rule};
pub use proxy::{Directory, EgressConfig, EgressProxy, MachineRef, ProxyBody};
