//! Apps: create, read, list and delete (which takes every machine,
//! volume, bucket and network of the app with it), and the lookup every
//! call that names something of an app begins with ([`Inner::of_app`]).

use crate::error::{MachineError, Missing, Result};
use crate::{now_rfc3339, Inner, Service};
use roost_lifecycle::{Right, Target};
use roost_store::{AppRecord, Store, StoreError};
use roost_types::{App, CreateAppRequest, ListApp, ListAppsResponse, MachineState, Organization};

fn check_app_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(MachineError::Invalid(format!(
            "app name {name:?} is invalid: use 1-63 lowercase letters, digits and '-', not starting or ending with '-'"
        )))
    }
}

fn app_view(app: &AppRecord) -> App {
    App {
        id: app.id.clone(),
        name: app.name.clone(),
        organization: Organization {
            name: app.org_slug.clone(),
            slug: app.org_slug.clone(),
        },
        status: "deployed".into(),
    }
}

impl Service {
    pub fn create_app(&self, req: CreateAppRequest) -> Result<App> {
        let inner = self.authorize(Right::Lifecycle, Target::App(&req.app_name))?;
        check_app_name(&req.app_name)?;
        for (field, text) in [("org_slug", &req.org_slug), ("network", &req.network)] {
            if let Some(text) = text {
                roost_types::TextLimit::NAME
                    .check(field, text)
                    .map_err(MachineError::Invalid)?;
            }
        }
        let record = AppRecord {
            id: req.app_name.clone(),
            name: req.app_name.clone(),
            org_slug: req.org_slug.unwrap_or_else(|| "personal".into()),
            network: req.network.unwrap_or_else(|| "default".into()),
            created_at: now_rfc3339(),
            egress: Some(inner.egress.new_app_policy()),
        };
        inner.store.create_app(&record)?;
        Ok(app_view(&record))
    }

    pub fn get_app(&self, name: &str) -> Result<App> {
        let inner = self.authorize(Right::Read, Target::App(name))?;
        Ok(app_view(&inner.app(name)?))
    }

    /// Apps, optionally only those of `org_slug`.
    pub fn list_apps(&self, org_slug: Option<&str>) -> Result<ListAppsResponse> {
        let inner = self.authorize(Right::Read, Target::Host)?;
        let counts = inner.store.machine_counts()?;
        let apps: Vec<ListApp> = inner
            .store
            .list_apps()?
            .into_iter()
            .filter(|app| org_slug.is_none_or(|org| org == app.org_slug))
            .map(|app| ListApp {
                machine_count: counts.get(&app.name).copied().unwrap_or(0),
                id: app.id,
                name: app.name,
                network: serde_json::Value::String(app.network),
            })
            .collect();
        Ok(ListAppsResponse {
            total_apps: apps.len() as u64,
            apps,
        })
    }

    /// Deletes an app after destroying all of its machines and its object
    /// storage (buckets, objects, key pair). Each step can be repeated, so
    /// a delete interrupted by a crash finishes when asked again.
    pub async fn delete_app(&self, name: &str) -> Result<()> {
        let inner = self.authorize(Right::Lifecycle, Target::App(name))?;
        inner.app(name)?;
        // Deleting the app overrides its machines' leases: a lease guards a
        // machine against another deployer's changes, and whoever deletes the
        // app ends every deploy with it (a lost nonce would otherwise keep the
        // app alive until the lease ran out).
        for record in inner.store.list_machines(Some(name))? {
            if record.state != MachineState::Destroyed {
                let (_guard, record) = inner.lock_machine_unleased(name, &record.id).await?;
                inner.destroy_locked(record, true).await?;
            }
        }
        inner.destroy_app_volumes(name).await?;
        inner.destroy_app_storage(name).await?;
        inner.remove_app_network(name).await?;
        inner.store.delete_app(name)?;
        inner.egress.forget_app(name);
        Ok(())
    }
}

impl Inner {
    /// The app named `name`.
    pub(crate) fn app(&self, name: &str) -> Result<AppRecord> {
        self.store.get_app(name)?.ok_or_else(|| {
            MachineError::Missing(Missing::App {
                app: name.to_string(),
            })
        })
    }

    /// The record of `app` whose id is `id`, an `R` (a machine, a volume):
    /// the one lookup of every call that names something of an app. A
    /// malformed id is the caller's mistake, checked before the store is
    /// asked; a record of another app is not found, as if absent.
    pub(crate) fn of_app<R: OfApp>(&self, app: &str, id: &str) -> Result<R> {
        if !R::has_id_shape(id) {
            return Err(MachineError::Invalid(format!(
                "{} id {id:?} is invalid: ids are {}",
                R::KIND,
                R::ID_SHAPE
            )));
        }
        self.app(app)?;
        match R::get(&self.store, id)? {
            Some(record) if record.app() == app => Ok(record),
            _ => Err(MachineError::NotFound(format!(
                "{} {id} not found in app '{app}'",
                R::KIND
            ))),
        }
    }
}

/// A record that belongs to an app and is named by an id within it.
pub(crate) trait OfApp: Sized {
    /// What it is, in messages.
    const KIND: &'static str;
    /// What its ids look like, in messages.
    const ID_SHAPE: &'static str;
    fn has_id_shape(id: &str) -> bool;
    fn get(store: &Store, id: &str) -> std::result::Result<Option<Self>, StoreError>;
    fn app(&self) -> &str;
}
