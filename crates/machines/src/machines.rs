//! Machines: create, start, stop, restart, signal, update and destroy
//! (each decided by the lifecycle model and run as a durable operation,
//! `ops.rs`); reading them (one, a listing, the edge proxy's records,
//! events, versions); and the edits of a record that need no operation
//! (metadata, cordon).

use crate::apps::OfApp;
use crate::error::{MachineError, Result};
use crate::leases::check_lease_ttl;
use crate::{ids, now_rfc3339, spec, Inner, Service};
use roost_lifecycle::{
    Intent, MachineRecord, Right, Shown, StopOptions, Target, Transition, Update,
};
use roost_store::{Store, StoreError};
use roost_types::{
    CreateMachineRequest, DurationRange, ImageRef, Machine, MachineEvent, MachineState,
    MachineVersion, StopRequest, UpdateMachineRequest,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Filters of `GET /apps/{app}/machines`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub include_deleted: bool,
    pub region: Option<String>,
    pub state: Option<Vec<MachineState>>,
    pub metadata: BTreeMap<String, String>,
}

impl ListFilter {
    fn admits(&self, record: &MachineRecord) -> bool {
        let m = record;
        (self.include_deleted || m.state != MachineState::Destroyed)
            && self
                .region
                .as_ref()
                .is_none_or(|region| &m.region == region)
            && self
                .state
                .as_ref()
                .is_none_or(|states| states.contains(&m.state))
            && self
                .metadata
                .iter()
                .all(|(k, v)| m.config.metadata.get(k) == Some(v))
    }
}

/// Events each machine of a list carries, its newest: what a glance at a
/// fleet needs (the last start, stop or exit), at a cost that does not grow
/// with the history kept. A machine's own view and its events endpoint give
/// every kept event.
pub const LISTED_EVENTS: u32 = 5;

/// Body of a successful start, as Fly returns it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StartResponse {
    pub previous_state: MachineState,
    pub migrated: bool,
    pub new_host: String,
}

impl Service {
    pub async fn create_machine(&self, app: &str, req: CreateMachineRequest) -> Result<Machine> {
        let inner = self.authorize(Right::Lifecycle, Target::App(app))?;
        inner.app(app)?;
        spec::validate(&req.config, inner.limits)?;
        spec::check_placement(req.name.as_deref(), req.region.as_deref())?;
        if let Some(ttl) = req.lease_ttl {
            check_lease_ttl("lease_ttl", ttl)?;
        }
        let _claim = inner.claim_mounts(app, None, &req.config).await?;
        let runtime = match req.config.guest.as_ref().and_then(|g| g.runtime.as_deref()) {
            Some(name) => inner.runtime_kind(name)?,
            None => inner.default_runtime,
        };
        let image = inner
            .image_for_config(&req.config.image, req.registry_auth.clone())
            .await?;
        spec::command(&req.config, &image)?;
        if let Some(user) = image.config.user.as_deref().filter(|u| !u.is_empty()) {
            inner.images.resolve_user(&image, user)?;
        }
        let id = ids::machine_id();
        let private_ip = inner
            .allocate_address(app, &id)?
            .map(|address| address.to_string())
            .unwrap_or_default();
        let now = now_rfc3339();
        let record = MachineRecord {
            app: app.to_string(),
            name: req
                .name
                .clone()
                .unwrap_or_else(|| format!("{app}-{}", &id[..6])),
            state: MachineState::Created,
            region: req.region.clone().unwrap_or_else(|| inner.region.clone()),
            instance_id: ids::instance_id(),
            private_ip,
            image_ref: image_ref(&image),
            config: req.config.clone(),
            created_at: now.clone(),
            updated_at: now,
            cordoned: false,
            id: id.clone(),
            runtime: runtime.to_string(),
            init_pid: None,
            restart_count: 0,
        };
        let Transition::Run(plan) = decide(
            &record,
            &Intent::Create {
                launch: !req.skip_launch,
            },
        )?
        else {
            return Err(MachineError::Internal(format!(
                "machine {id}: the lifecycle model has no plan to create it"
            )));
        };
        let lock = inner.lock_for(&id);
        let _guard = lock.lock().await;
        let record = inner.run_create_op(record, plan).await?;
        let nonce = match req.lease_ttl {
            Some(ttl) => {
                let description = "lease acquired at create".into();
                Some(inner.acquire_lease(&record, ttl, description)?.nonce)
            }
            None => None,
        };
        inner.view(record, nonce)
    }

    /// The app's machines that pass `filter`, each with its
    /// [`LISTED_EVENTS`] newest events: a bounded number of store queries
    /// however many machines and events there are.
    pub fn list_machines(&self, app: &str, filter: &ListFilter) -> Result<Vec<Machine>> {
        let inner = self.authorize(Right::Read, Target::App(app))?;
        inner.app(app)?;
        Ok(inner
            .store
            .list_machines_with_events(app, LISTED_EVENTS)?
            .into_iter()
            .filter(|(r, _)| filter.admits(r))
            .map(|(r, events)| inner.present(r, events, None))
            .collect())
    }

    /// The app's machines that are not destroyed, as the edge proxy routes
    /// on them (state, address, services, cordon): their records, one store
    /// query, no events, no check results.
    pub fn machines_for_routing(&self, app: &str) -> Result<Vec<MachineRecord>> {
        let inner = self.authorize(Right::Read, Target::App(app))?;
        inner.app(app)?;
        Ok(inner
            .store
            .list_machines(Some(app))?
            .into_iter()
            .filter(|r| ListFilter::default().admits(r))
            .collect())
    }

    pub fn get_machine(&self, app: &str, id: &str) -> Result<Machine> {
        let inner = self.authorize(Right::Read, Target::Machine { app, id })?;
        let record = inner.machine(app, id)?;
        inner.view(record, None)
    }

    /// Starts a created, stopped or failed machine. Starting a started
    /// machine changes nothing.
    pub async fn start_machine(
        &self,
        app: &str,
        id: &str,
        nonce: Option<&str>,
    ) -> Result<StartResponse> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        let (_guard, mut record) = inner.lock_machine(app, id, nonce).await?;
        let previous_state = record.state;
        if let Transition::Run(plan) = decide(&record, &Intent::start(&record.config))? {
            record.restart_count = 0;
            inner.run_new_op(record, plan).await?;
        }
        Ok(StartResponse {
            previous_state,
            migrated: false,
            new_host: String::new(),
        })
    }

    /// Stops a started machine: the stop signal (request, then
    /// `stop_config`, then SIGTERM), then SIGKILL after the timeout.
    pub async fn stop_machine(
        &self,
        app: &str,
        id: &str,
        req: StopRequest,
        nonce: Option<&str>,
    ) -> Result<()> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        let (_guard, record) = inner.lock_machine(app, id, nonce).await?;
        if let Transition::Run(plan) = decide(&record, &Intent::Stop)? {
            let plan = plan.stopping_with(stop_options(&record, &req)?);
            inner.run_new_op(record, plan).await?;
        }
        Ok(())
    }

    /// Stops and starts a started machine; its rootfs is kept unless the
    /// persist policy is `never`.
    pub async fn restart_machine(
        &self,
        app: &str,
        id: &str,
        req: StopRequest,
        nonce: Option<&str>,
    ) -> Result<()> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        let (_guard, mut record) = inner.lock_machine(app, id, nonce).await?;
        if let Transition::Run(plan) = decide(&record, &Intent::restart(&record.config))? {
            let plan = plan.stopping_with(stop_options(&record, &req)?);
            record.restart_count = 0;
            inner.run_new_op(record, plan).await?;
        }
        Ok(())
    }

    /// Sends a signal to the main process of a started machine.
    pub async fn signal_machine(
        &self,
        app: &str,
        id: &str,
        signal: &str,
        nonce: Option<&str>,
    ) -> Result<()> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        let signal = spec::parse_signal(signal)?;
        let record = inner.machine(app, id)?;
        inner.check_lease(&record, nonce)?;
        decide(&record, &Intent::Signal)?;
        let runtime = inner.runtime_for(&record)?;
        Ok(inner.host.signal(id, runtime, signal).await?)
    }

    /// Replaces the machine's config: stop, rebuild, start (unless
    /// `skip_launch`, or the machine was not running). The instance id changes.
    pub async fn update_machine(
        &self,
        app: &str,
        id: &str,
        req: UpdateMachineRequest,
        nonce: Option<&str>,
    ) -> Result<Machine> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        spec::validate(&req.config, inner.limits)?;
        spec::check_placement(req.name.as_deref(), req.region.as_deref())?;
        inner.machine(app, id)?;
        let _claim = inner.claim_mounts(app, Some(id), &req.config).await?;
        let (_guard, mut record) = inner.lock_machine(app, id, nonce).await?;
        let update = |image_changed, switch_runtime| Update {
            persist: Default::default(),
            image_changed,
            switch_runtime,
            skip_launch: req.skip_launch,
        };
        // Refused before the image is resolved, which may pull it.
        decide(&record, &Intent::update(&req.config, update(false, None)))?;
        let (size_gb, was_gb) = (
            crate::spec::rootfs_size_gb(&req.config),
            crate::spec::rootfs_size_gb(&record.config),
        );
        if size_gb < was_gb {
            return Err(MachineError::Invalid(format!(
                "config.rootfs.size_gb = {size_gb} is invalid: machine {id}'s root filesystem \
                 is {was_gb} GB and can only grow; destroy and recreate the machine for a \
                 smaller one"
            )));
        }
        if let Some(expected) = &req.current_version {
            if expected != &record.instance_id {
                return Err(MachineError::Conflict(format!(
                    "machine {id} is at version {}, not {expected}; re-read it and retry",
                    record.instance_id
                )));
            }
        }
        let runtime = match req.config.guest.as_ref().and_then(|g| g.runtime.as_deref()) {
            Some(name) => inner.runtime_kind(name)?,
            None => inner.default_runtime,
        }
        .to_string();
        let image = inner
            .image_for_config(&req.config.image, req.registry_auth.clone())
            .await?;
        spec::command(&req.config, &image)?;
        let image_changed = image.digest != record.image_ref.digest;
        let switch_runtime = (runtime != record.runtime).then_some(runtime);
        let intent = Intent::update(&req.config, update(image_changed, switch_runtime));
        let Transition::Run(plan) = decide(&record, &intent)? else {
            return Err(MachineError::Internal(format!(
                "machine {id}: the lifecycle model has no plan to update it"
            )));
        };
        // The old machine is stopped as its old config says.
        let plan = plan.stopping_with(stop_options(&record, &StopRequest::default())?);
        record.config = req.config.clone();
        record.image_ref = image_ref(&image);
        record.instance_id = ids::instance_id();
        if let Some(name) = req.name {
            record.name = name;
        }
        if let Some(region) = req.region {
            record.region = region;
        }
        record.restart_count = 0;
        inner
            .store
            .add_version(id, &record.instance_id, &record.config)?;
        let record = inner.run_new_op(record, plan).await?;
        inner.view(record, None)
    }

    /// Destroys a machine. A started machine needs `force`.
    pub async fn destroy_machine(
        &self,
        app: &str,
        id: &str,
        force: bool,
        nonce: Option<&str>,
    ) -> Result<()> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        let (_guard, record) = inner.lock_machine(app, id, nonce).await?;
        inner.destroy_locked(record, force).await
    }

    /// Events of a machine, newest first.
    pub fn events(&self, app: &str, id: &str) -> Result<Vec<MachineEvent>> {
        let inner = self.authorize(Right::Read, Target::Machine { app, id })?;
        inner.machine(app, id)?;
        let store = &inner.store;
        Ok(store.list_events(id, store.events_per_machine())?)
    }

    /// Config versions of a machine, newest first.
    pub fn versions(&self, app: &str, id: &str) -> Result<Vec<MachineVersion>> {
        let inner = self.authorize(Right::Read, Target::Machine { app, id })?;
        inner.machine(app, id)?;
        Ok(inner.store.list_versions(id)?)
    }

    pub fn get_metadata(&self, app: &str, id: &str) -> Result<BTreeMap<String, String>> {
        let inner = self.authorize(Right::Read, Target::Machine { app, id })?;
        Ok(inner.machine(app, id)?.config.metadata)
    }

    /// Sets (`Some`) or deletes (`None`) one metadata key.
    pub async fn set_metadata(
        &self,
        app: &str,
        id: &str,
        key: &str,
        value: Option<String>,
        nonce: Option<&str>,
    ) -> Result<()> {
        let inner = self.authorize(Right::Lifecycle, Target::Machine { app, id })?;
        spec::check_metadata_entry(key, value.as_deref().unwrap_or_default())?;
        let metadata = inner.machine(app, id)?.config.metadata;
        if value.is_some() && !metadata.contains_key(key) {
            let entries = i64::try_from(metadata.len() + 1).unwrap_or(i64::MAX);
            roost_types::TextLimit::METADATA_ENTRIES
                .check("config.metadata", entries)
                .map_err(MachineError::Invalid)?;
        }
        inner
            .modify(app, id, nonce, |record| {
                match value {
                    Some(value) => record.config.metadata.insert(key.to_string(), value),
                    None => record.config.metadata.remove(key),
                };
            })
            .await
    }

    /// Cordons (`true`) or uncordons a machine: the proxy routes no traffic to a cordoned machine.
    pub async fn set_cordoned(
        &self,
        app: &str,
        id: &str,
        cordoned: bool,
        nonce: Option<&str>,
    ) -> Result<()> {
        self.authorize(Right::Lifecycle, Target::Machine { app, id })?
            .modify(app, id, nonce, |record| record.cordoned = cordoned)
            .await
    }
}

fn image_ref(image: &roost_image::Image) -> ImageRef {
    let (repository, tag) = image
        .reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .unwrap_or((image.reference.as_str(), "latest"));
    ImageRef {
        registry: String::new(),
        repository: repository.to_string(),
        tag: tag.to_string(),
        digest: image.digest.clone(),
        labels: image.config.labels.clone(),
    }
}

/// What `intent` does to `record`; a refusal is a conflict naming the
/// machine and the states the intent is allowed from.
pub(crate) fn decide(record: &MachineRecord, intent: &Intent) -> Result<Transition> {
    roost_lifecycle::transition(record.state, intent)
        .map_err(|refusal| MachineError::Conflict(format!("machine {} {refusal}", record.id)))
}

/// The signal and timeout of a stop: the request's, falling back to the
/// machine's `stop_config` (then the plan's defaults).
fn stop_options(record: &MachineRecord, req: &StopRequest) -> Result<StopOptions> {
    let stop_config = record.config.stop_config.clone().unwrap_or_default();
    let signal = req.signal.as_ref().or(stop_config.signal.as_ref());
    let timeout = req.timeout.as_ref().or(stop_config.timeout.as_ref());
    Ok(StopOptions {
        signal: signal
            .map(|s| spec::parse_signal(s))
            .transpose()?
            .map(|s| s as i32),
        timeout_ms: timeout
            .map(|t| DurationRange::STOP_TIMEOUT.parse("timeout", t))
            .transpose()
            .map_err(MachineError::Invalid)?
            .map(|d| d.as_millis() as u64),
    })
}

impl Inner {
    /// Destroys the machine of `record`, whose lock the caller holds.
    pub(crate) async fn destroy_locked(
        self: &Arc<Self>,
        record: MachineRecord,
        force: bool,
    ) -> Result<()> {
        let id = record.id.clone();
        if let Transition::Run(plan) = decide(&record, &Intent::Destroy { force })? {
            self.run_new_op(record, plan).await?;
        }
        self.egress.forget_machine(&id);
        Ok(())
    }

    /// Changes a machine's record (metadata, cordon) under its lock.
    async fn modify(
        &self,
        app: &str,
        id: &str,
        nonce: Option<&str>,
        change: impl FnOnce(&mut MachineRecord),
    ) -> Result<()> {
        let (_guard, mut record) = self.lock_machine(app, id, nonce).await?;
        decide(&record, &Intent::Edit)?;
        change(&mut record);
        record.updated_at = now_rfc3339();
        self.store.update_machine(&record, None)?;
        // The proxy re-reads machines when this moves (cordons).
        self.notify_change();
        Ok(())
    }

    /// The machine `id` of `app`.
    pub(crate) fn machine(&self, app: &str, id: &str) -> Result<MachineRecord> {
        self.of_app(app, id)
    }

    /// The machine as the API shows it, with every kept event (and the
    /// `nonce` of the lease a create took).
    pub(crate) fn view(&self, record: MachineRecord, nonce: Option<String>) -> Result<Machine> {
        let events = self
            .store
            .list_events(&record.id, self.store.events_per_machine())?;
        Ok(self.present(record, events, nonce))
    }

    /// The machine as the API shows it: with `events`, its check results
    /// while it is started and its egress counters.
    fn present(
        &self,
        record: MachineRecord,
        events: Vec<MachineEvent>,
        nonce: Option<String>,
    ) -> Machine {
        let checks = match record.state {
            MachineState::Started => self.checks.get(&record.id),
            _ => Vec::new(),
        };
        let egress = self.egress.counters(&record.id);
        record.into_view(Shown {
            events,
            checks,
            nonce,
            egress,
        })
    }

    /// Takes the machine's operation lock and reads the machine, refusing
    /// callers that do not hold its lease. The id is checked before any lock
    /// exists for it.
    pub(crate) async fn lock_machine(
        &self,
        app: &str,
        id: &str,
        nonce: Option<&str>,
    ) -> Result<(tokio::sync::OwnedMutexGuard<()>, MachineRecord)> {
        let (guard, record) = self.lock_machine_unleased(app, id).await?;
        self.check_lease(&record, nonce)?;
        Ok((guard, record))
    }

    /// Like [`Inner::lock_machine`], whoever holds the machine's lease.
    pub(crate) async fn lock_machine_unleased(
        &self,
        app: &str,
        id: &str,
    ) -> Result<(tokio::sync::OwnedMutexGuard<()>, MachineRecord)> {
        self.machine(app, id)?;
        let guard = self.lock_for(id).lock_owned().await;
        let record = self.machine(app, id)?;
        Ok((guard, record))
    }
}

impl OfApp for MachineRecord {
    const KIND: &'static str = "machine";
    const ID_SHAPE: &'static str = "14 lowercase hex characters";

    fn has_id_shape(id: &str) -> bool {
        ids::is_machine_id(id)
    }

    fn get(store: &Store, id: &str) -> std::result::Result<Option<Self>, StoreError> {
        store.get_machine(id)
    }

    fn app(&self) -> &str {
        &self.app
    }
}
