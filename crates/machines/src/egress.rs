//! Egress: where an app's machines may connect through the egress proxy
//! (roost-egress), the proxy's view of machines and policies, and the
//! variables that point machines at it.
//!
//! The policy is part of the app's record in the store, written at create
//! with the daemon's default (`roost up --egress-default`), so changing
//! the flag later changes only new apps; an app from before egress
//! existed has none stored and follows the flag. Compiled policies are
//! cached per app and replaced when one is set, so the proxy, which asks
//! at every request, applies a change to the next connection at once.
//! The audit log and the per-machine counters are the proxy's
//! [`Ledger`], in memory.

use crate::error::{MachineError, Missing, Result};
use crate::{Inner, Machines, Service};
use roost_egress::{Directory, Ledger, MachineRef, Policy};
use roost_host::SERVICE_EGRESS_PORT;
use roost_lifecycle::{MachineRecord, Right, Target};
use roost_types::{EgressDefault, EgressLog, EgressPolicy, MachineEgress};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};

/// The variables that send a machine's HTTP clients through the egress
/// proxy, in both spellings programs read.
const PROXY_VARS: [&str; 4] = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"];
const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// The service's egress state.
pub(crate) struct EgressLayer {
    /// The policy default of apps created from now on.
    default: EgressDefault,
    /// Compiled policies by app, filled on first use, replaced on set.
    policies: Mutex<HashMap<String, Arc<Policy>>>,
    ledger: Arc<Ledger>,
}

impl EgressLayer {
    pub(crate) fn new(default: EgressDefault) -> EgressLayer {
        EgressLayer {
            default,
            policies: Mutex::default(),
            ledger: Arc::default(),
        }
    }

    /// The policy a new app gets.
    pub(crate) fn new_app_policy(&self) -> EgressPolicy {
        EgressPolicy::only(self.default)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Policy>>> {
        self.policies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets what the layer holds of a deleted app.
    pub(crate) fn forget_app(&self, app: &str) {
        self.cache().remove(app);
        self.ledger.forget_app(app);
    }

    /// Forgets the counters of a destroyed machine.
    pub(crate) fn forget_machine(&self, id: &str) {
        self.ledger.forget_machine(id);
    }

    /// The machine's egress counters, shown in its view.
    pub(crate) fn counters(&self, id: &str) -> Option<MachineEgress> {
        self.ledger.machine(id)
    }
}

impl Inner {
    /// The app's policy in wire form: stored, or the default for apps
    /// from before egress.
    fn stored_egress(&self, app: &str) -> Result<EgressPolicy> {
        Ok(self
            .app(app)?
            .egress
            .unwrap_or_else(|| self.egress.new_app_policy()))
    }

    /// The compiled policy the proxy applies; `None` when the app is gone.
    fn compiled_egress(&self, app: &str) -> Option<Arc<Policy>> {
        if let Some(policy) = self.egress.cache().get(app) {
            return Some(policy.clone());
        }
        let wire = match self.stored_egress(app) {
            Ok(wire) => wire,
            Err(MachineError::NotFound(_) | MachineError::Missing(Missing::App { .. })) => {
                return None
            }
            Err(err) => {
                tracing::warn!(app, error = %err, "egress: cannot read the app's policy; refusing its egress");
                return Some(Arc::new(deny_all()));
            }
        };
        let policy = Arc::new(Policy::compile(&wire).unwrap_or_else(|err| {
            tracing::warn!(app, error = %err, "egress: the stored policy does not compile; refusing its egress");
            deny_all()
        }));
        self.egress.cache().insert(app.to_string(), policy.clone());
        Some(policy)
    }

    /// `HTTP_PROXY` and friends for a machine on the private network:
    /// the proxy at the service address, and `NO_PROXY` naming what the
    /// machine reaches directly (its loopback, the internal names, the
    /// service address, its app's prefix). Empty without a network.
    pub(crate) fn egress_env(&self, machine: &MachineRecord) -> Vec<(String, String)> {
        let Some(plan) = self.host.network() else {
            return Vec::new();
        };
        let service = plan.service_address();
        let proxy = format!("http://[{service}]:{SERVICE_EGRESS_PORT}");
        let mut direct = vec![
            "localhost".to_string(),
            "127.0.0.1".into(),
            "::1".into(),
            ".internal".into(),
            service.to_string(),
            format!("[{service}]"),
        ];
        let app_prefix = machine
            .private_ip
            .parse()
            .ok()
            .and_then(|ip| plan.network_of(ip))
            .and_then(|network| plan.app_prefix(network).ok());
        if let Some((prefix, len)) = app_prefix {
            direct.push(format!("{prefix}/{len}"));
        }
        let direct = direct.join(",");
        PROXY_VARS
            .iter()
            .map(|name| (name.to_string(), proxy.clone()))
            .chain(
                NO_PROXY_VARS
                    .iter()
                    .map(|name| (name.to_string(), direct.clone())),
            )
            .collect()
    }
}

/// What a policy that cannot be read or compiled falls back to.
fn deny_all() -> Policy {
    Policy::compile(&EgressPolicy::only(EgressDefault::Deny))
        .expect("a policy without patterns compiles")
}

impl Service {
    /// The app's egress policy.
    pub fn egress_policy(&self, app: &str) -> Result<EgressPolicy> {
        self.authorize(Right::Read, Target::App(app))?
            .stored_egress(app)
    }

    /// Replaces the app's egress policy after checking every pattern;
    /// answers it normalized. New connections of the app's machines
    /// follow it at once, without a restart.
    pub fn set_egress_policy(&self, app: &str, policy: EgressPolicy) -> Result<EgressPolicy> {
        let inner = self.authorize(Right::Egress, Target::App(app))?;
        inner.app(app)?;
        let compiled =
            Policy::compile(&policy).map_err(|e| MachineError::Invalid(e.to_string()))?;
        let wire = compiled.wire();
        inner.store.set_app_egress(app, &wire)?;
        inner
            .egress
            .cache()
            .insert(app.to_string(), Arc::new(compiled));
        tracing::info!(app, default = %wire.default, allow = wire.allow.len(), deny = wire.deny.len(), "egress policy set");
        Ok(wire)
    }

    /// The app's most recent egress decisions, oldest first.
    pub fn egress_log(&self, app: &str) -> Result<EgressLog> {
        let inner = self.authorize(Right::Read, Target::App(app))?;
        inner.app(app)?;
        Ok(inner.egress.ledger.log(app))
    }
}

impl Machines {
    /// The policy default of apps created from now on.
    pub fn egress_default(&self) -> EgressDefault {
        self.inner.egress.default
    }

    /// The ledger the egress proxy writes its decisions and counters to.
    pub fn egress_ledger(&self) -> Arc<Ledger> {
        self.inner.egress.ledger.clone()
    }

    /// The egress proxy's view of this service's machines and policies.
    pub fn egress_directory(&self) -> Arc<dyn Directory> {
        Arc::new(EgressDirectory {
            inner: Arc::downgrade(&self.inner),
        })
    }
}

/// [`Directory`] over the store: a client is the machine holding its
/// private address.
struct EgressDirectory {
    inner: Weak<Inner>,
}

impl Directory for EgressDirectory {
    fn machine_at(&self, peer: IpAddr) -> Option<MachineRef> {
        let inner = self.inner.upgrade()?;
        let IpAddr::V6(peer) = peer.to_canonical() else {
            return None;
        };
        let (network, slot) = inner.host.network()?.machine_of(peer)?;
        let found = inner.store.app_of_network(network).and_then(|app| {
            let Some(app) = app else { return Ok(None) };
            let id = inner.store.machine_at_slot(&app, slot)?;
            Ok(id.map(|id| MachineRef { app, id }))
        });
        found.unwrap_or_else(|err| {
            tracing::warn!(%peer, error = %err, "egress: cannot look up the client's machine");
            None
        })
    }

    fn policy(&self, app: &str) -> Option<Arc<Policy>> {
        self.inner.upgrade()?.compiled_egress(app)
    }
}
