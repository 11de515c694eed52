//! Machines on the private network: addresses allocated in the store,
//! namespaces made (by the host agent) at create and removed at destroy,
//! the internal DNS's view of machines, and convergence after a restart.
//!
//! The numbers live in the store (an app's network number, a machine's
//! slot; see `roost_store::network`) and the machine record carries the
//! resulting `private_ip`, so the address is known before any kernel work
//! and never changes while the machine exists. Kernel work happens in two
//! idempotent steps of the durable operations, `connect_network` (launch)
//! and `disconnect_network` (destroy); start only checks that the
//! namespace exists, so it costs one `statfs`.

use crate::error::{MachineError, Result};
use crate::Inner;
use roost_host::{AddressPlan, DnsDirectory, DnsResolver, HostError, MachineNet};
use roost_lifecycle::MachineRecord;
use roost_types::MachineState;
use std::collections::HashSet;
use std::net::Ipv6Addr;
use std::sync::{Arc, Weak};

impl Inner {
    /// Allocates (or finds, for a retried create) the machine's address;
    /// `None` when the private network is off.
    pub(crate) fn allocate_address(&self, app: &str, id: &str) -> Result<Option<Ipv6Addr>> {
        let Some(plan) = self.host.network() else {
            return Ok(None);
        };
        let network = self.store.allocate_app_network(app)?;
        let slot = self.store.allocate_machine_address(app, id)?;
        let address = plan
            .machine_address(network, slot)
            .map_err(HostError::from)?;
        Ok(Some(address))
    }

    /// The machine's stored place in the network, if it has one; `None`
    /// without a private network.
    pub(crate) fn machine_net(&self, record: &MachineRecord) -> Result<Option<MachineNet>> {
        if self.host.network().is_none() {
            return Ok(None);
        }
        let id = &record.id;
        let (Some(network), Some(slot)) = (
            self.store.app_network(&record.app)?,
            self.store.machine_address(id)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(MachineNet {
            machine_id: id.clone(),
            network,
            slot,
        }))
    }

    /// Step `connect_network`: the machine's namespace, veth and address.
    pub(crate) async fn connect_network(&self, record: &MachineRecord) -> Result<()> {
        if self.host.network().is_none() {
            return Ok(());
        }
        let machine = self.machine_net(record)?.ok_or_else(|| {
            MachineError::Internal(format!(
                "machine {} has no private address allocated",
                record.id
            ))
        })?;
        Ok(self.host.connect_network(&machine).await?)
    }

    /// Step `disconnect_network`: remove the namespace and veth, then free
    /// the address (after, so a crash in between repeats the removal).
    pub(crate) async fn disconnect_network(&self, id: &str) -> Result<()> {
        self.host.disconnect_network(id).await?;
        self.store.free_machine_address(id)?;
        Ok(())
    }

    /// App delete: the app's bridge goes (its machines are destroyed already).
    pub(crate) async fn remove_app_network(&self, app: &str) -> Result<()> {
        if let Some(network) = self.store.app_network(app)? {
            self.host.remove_app_network(network).await?;
        }
        Ok(())
    }

    /// Recovery: every machine that exists gets its network back (missing
    /// namespaces after a reboot, veths deleted by hand), machines from
    /// before the private network get an address and a new bundle, and
    /// namespaces, bridges and addresses nobody owns are removed.
    pub(crate) async fn converge_network(
        self: &Arc<Self>,
        records: &[MachineRecord],
    ) -> Result<()> {
        if self.host.network().is_none() {
            return Ok(());
        }
        self.free_orphan_addresses(records)?;
        let live: Vec<&MachineRecord> = records
            .iter()
            .filter(|r| r.state != MachineState::Destroyed)
            .collect();
        for record in &live {
            if let Err(err) = self.converge_machine_network(record).await {
                tracing::error!(machine = %record.id, error = %err, "could not restore the machine's network");
            }
        }
        let live_ids: HashSet<String> = live.iter().map(|r| r.id.clone()).collect();
        let networks: HashSet<u16> = self
            .store
            .list_app_networks()?
            .into_iter()
            .map(|(_, number)| number)
            .collect();
        Ok(self
            .host
            .remove_orphan_networks(&live_ids, &networks)
            .await?)
    }

    /// Addresses of machines that are destroyed or were never recorded (a
    /// create that failed between allocating and inserting the machine).
    fn free_orphan_addresses(&self, records: &[MachineRecord]) -> Result<()> {
        let live: HashSet<&str> = records
            .iter()
            .filter(|r| r.state != MachineState::Destroyed)
            .map(|r| r.id.as_str())
            .collect();
        for address in self.store.list_machine_addresses()? {
            if !live.contains(address.machine_id.as_str()) {
                tracing::warn!(machine = %address.machine_id, "freeing the address of a machine that does not exist");
                self.store.free_machine_address(&address.machine_id)?;
            }
        }
        Ok(())
    }

    async fn converge_machine_network(&self, record: &MachineRecord) -> Result<()> {
        let id = &record.id;
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let Some(mut record) = self.store.get_machine(id)? else {
            return Ok(());
        };
        if record.state == MachineState::Destroyed {
            return Ok(());
        }
        if record.private_ip.is_empty() {
            // Created before roost had a private network.
            if let Some(address) = self.allocate_address(&record.app, id)? {
                record.private_ip = address.to_string();
                self.store.update_machine(&record, None)?;
                tracing::info!(machine = %id, %address, "gave an older machine a private address");
            }
            self.connect_network(&record).await?;
            if record.state != MachineState::Started {
                self.prepare(&record).await?;
            }
            return Ok(());
        }
        self.connect_network(&record).await
    }
}

/// What the internal DNS server sees: the store's apps and machines.
struct StoreDirectory {
    inner: Weak<Inner>,
}

impl StoreDirectory {
    fn with<T: Default>(
        &self,
        f: impl FnOnce(&Inner) -> std::result::Result<T, roost_store::StoreError>,
    ) -> T {
        let Some(inner) = self.inner.upgrade() else {
            return T::default();
        };
        f(&inner).unwrap_or_else(|err| {
            tracing::warn!(error = %err, "DNS: store lookup failed");
            T::default()
        })
    }
}

impl DnsDirectory for StoreDirectory {
    fn app_of_network(&self, network: u16) -> Option<String> {
        self.with(|inner| inner.store.app_of_network(network))
    }

    fn app_exists(&self, app: &str) -> bool {
        self.with(|inner| Ok(inner.store.get_app(app)?.is_some()))
    }

    fn machine_address(&self, app: &str, id: &str) -> Option<Ipv6Addr> {
        self.with(|inner| {
            Ok(inner
                .store
                .get_machine(id)?
                .filter(|r| r.app == app && r.state != MachineState::Destroyed)
                .and_then(|r| r.private_ip.parse().ok()))
        })
    }

    fn started_addresses(&self, app: &str) -> Vec<Ipv6Addr> {
        self.with(|inner| {
            Ok(inner
                .store
                .list_machines(Some(app))?
                .into_iter()
                .filter(|r| r.state == MachineState::Started)
                .filter_map(|r| r.private_ip.parse().ok())
                .collect())
        })
    }
}

impl crate::Machines {
    /// The private network's address plan, when `roost up` runs one.
    pub fn network(&self) -> Option<AddressPlan> {
        self.inner.host.network()
    }

    /// The internal DNS server's resolver over this service's machines.
    pub fn dns_resolver(&self) -> Option<DnsResolver> {
        let plan = self.inner.host.network()?;
        let directory = StoreDirectory {
            inner: Arc::downgrade(&self.inner),
        };
        Some(DnsResolver::new(plan, Arc::new(directory)))
    }
}
