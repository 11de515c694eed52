//! Leases: a deployer's hold on a machine, which every change of the
//! machine by someone else is refused under.

use crate::error::{MachineError, Result};
use crate::{ids, Inner, Service};
use roost_lifecycle::{MachineRecord, Right, Target};
use roost_types::{CreateLeaseRequest, Lease, NumberRange};

/// Default lease length, in seconds; the range is [`NumberRange`]'s.
const DEFAULT_LEASE_TTL: u64 = 30;

pub(crate) fn check_lease_ttl(field: &str, ttl: u64) -> Result<u64> {
    NumberRange::LEASE_TTL_SECS
        .check_unsigned(field, ttl)
        .map_err(MachineError::Invalid)
}

fn lease_held(id: &str, lease: &Lease) -> MachineError {
    MachineError::LeaseMismatch(format!(
        "machine {id} is leased by {} until {} (unix time); send its nonce in the fly-machine-lease-nonce header or wait",
        lease.owner, lease.expires_at
    ))
}

impl Service {
    /// Acquires the machine's lease, or refreshes it when `nonce` is the
    /// current holder's.
    pub fn acquire_lease(
        &self,
        app: &str,
        id: &str,
        req: CreateLeaseRequest,
        nonce: Option<&str>,
    ) -> Result<Lease> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        let record = inner.machine(app, id)?;
        let ttl = check_lease_ttl("ttl", req.ttl.unwrap_or(DEFAULT_LEASE_TTL))?;
        if let Some(current) = inner.current_lease(id)? {
            if Some(current.nonce.as_str()) != nonce {
                return Err(lease_held(id, &current));
            }
        }
        inner.acquire_lease(&record, ttl, req.description.unwrap_or_default())
    }

    pub fn get_lease(&self, app: &str, id: &str) -> Result<Lease> {
        let inner = self.authorize(Right::Read, Target::Machine { app, id })?;
        inner.machine(app, id)?;
        inner
            .current_lease(id)?
            .ok_or_else(|| MachineError::NotFound(format!("machine {id} has no active lease")))
    }

    pub fn release_lease(&self, app: &str, id: &str, nonce: Option<&str>) -> Result<()> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        let record = inner.machine(app, id)?;
        if inner.current_lease(id)?.is_none() {
            return Ok(());
        }
        inner.check_lease(&record, nonce)?;
        Ok(inner.store.delete_lease(id)?)
    }
}

impl Inner {
    fn current_lease(&self, id: &str) -> Result<Option<Lease>> {
        let now = chrono::Utc::now().timestamp();
        Ok(self
            .store
            .get_lease(id)?
            .filter(|lease| lease.expires_at > now))
    }

    /// Refuses a mutating call while someone else holds the machine's lease.
    pub(crate) fn check_lease(&self, record: &MachineRecord, nonce: Option<&str>) -> Result<()> {
        match self.current_lease(&record.id)? {
            Some(lease) if Some(lease.nonce.as_str()) != nonce => {
                Err(lease_held(&record.id, &lease))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn acquire_lease(
        &self,
        record: &MachineRecord,
        ttl: u64,
        description: String,
    ) -> Result<Lease> {
        let lease = Lease {
            nonce: ids::secret_hex(16),
            expires_at: chrono::Utc::now().timestamp() + ttl as i64,
            owner: "roost-admin".into(),
            description,
            version: record.instance_id.clone(),
        };
        self.store.put_lease(&record.id, &lease)?;
        Ok(lease)
    }
}
