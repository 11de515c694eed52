//! roost's durable state: apps, machines, versions, events, leases,
//! volumes, snapshots and the operation logs, in one SQLite database.
//!
//! The interface is deliberately narrow (typed records in, typed records
//! out, no SQL outside this crate) so that moving cluster state to a
//! distributed store later replaces this crate, not its callers.
//!
//! Durability: the database runs in WAL mode with `synchronous=NORMAL`. A
//! committed transaction survives the roost process being killed at any
//! point (what the orchestrator's crash recovery relies on); a power loss may
//! roll back the last few transactions, which recovery then redoes, because
//! every lifecycle step is idempotent.

mod network;
mod operations;
mod schema;
mod secrets;
mod storage;
mod volumes;

pub use network::{MachineAddressRecord, FIRST_APP_NETWORK, FIRST_MACHINE_SLOT};
pub use operations::{Operation, OperationSubject, OperationWrite};
pub use schema::SCHEMA_VERSION;
pub use secrets::SecretRecord;
pub use storage::StorageKeyRecord;

pub use roost_lifecycle::AppRecord;
use roost_lifecycle::MachineRecord;
use roost_types::{ImageRef, Lease, MachineEvent, MachineState};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Events kept per machine unless the store is opened with another bound
/// (`roost up --events-per-machine`). A machine's history would otherwise
/// grow with every start and stop (autostop cycles add two each time), and
/// so would every read of it.
pub const DEFAULT_EVENTS_PER_MACHINE: u32 = 200;

/// How much of the database file reads see through a memory map rather
/// than copied into SQLite's own page cache (2 MiB) with a `pread` each.
/// Listings read pages spread over the whole file (every machine's newest
/// events), which the page cache cannot hold for a fleet, so without the
/// map their cost grew with the history kept. It is address space: only
/// the pages read take memory, and those are the kernel's page cache, which
/// holds the file anyway.
const MMAP_BYTES: i64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error("all {what} are in use")]
    Exhausted { what: &'static str },
    #[error("cannot seal a stored secret: {0}")]
    Sealing(String),
    #[error("the database has layout version {found}, newer than this roost knows ({known}); run a newer roost")]
    NewerSchema { found: u32, known: u32 },
}

pub struct Store {
    conn: Mutex<Connection>,
    /// How many of a machine's newest events are kept; older ones are
    /// deleted as new ones are written.
    events_per_machine: u32,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrating an
    /// older layout forward first, keeping
    /// [`DEFAULT_EVENTS_PER_MACHINE`] events per machine.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_keeping_events(path, DEFAULT_EVENTS_PER_MACHINE)
    }

    /// [`Store::open`] keeping `events_per_machine` (at least 1) events
    /// per machine. A machine holding more, written under a larger bound or
    /// by a roost from before the bound, is cut down at its next event;
    /// reads return at most the bound meanwhile.
    pub fn open_keeping_events(path: &Path, events_per_machine: u32) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;
        // After the migrations, which read every row once: through the map
        // those pages would stay in the daemon's resident set.
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        Ok(Store {
            conn: Mutex::new(conn),
            events_per_machine: events_per_machine.max(1),
        })
    }

    /// How many events are kept per machine.
    pub fn events_per_machine(&self) -> u32 {
        self.events_per_machine
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back), so a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn create_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO apps (name, data) VALUES (?1, ?2)",
            params![app.name, serde_json::to_string(app)?],
        )?;
        if inserted == 0 {
            return Err(StoreError::AlreadyExists {
                kind: "app",
                name: app.name.clone(),
            });
        }
        Ok(())
    }

    pub fn get_app(&self, name: &str) -> Result<Option<AppRecord>, StoreError> {
        self.get_json("SELECT data FROM apps WHERE name = ?1", name)
    }

    pub fn list_apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        self.list_json("SELECT data FROM apps ORDER BY name", [])
    }

    /// Replaces the app's egress policy.
    pub fn set_app_egress(
        &self,
        name: &str,
        policy: &roost_types::EgressPolicy,
    ) -> Result<AppRecord, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let data: Option<String> = tx
            .query_row("SELECT data FROM apps WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()?;
        let mut app: AppRecord = match data {
            Some(data) => serde_json::from_str(&data)?,
            None => {
                return Err(StoreError::NotFound {
                    kind: "app",
                    name: name.to_string(),
                })
            }
        };
        app.egress = Some(policy.clone());
        tx.execute(
            "UPDATE apps SET data = ?2 WHERE name = ?1",
            params![name, serde_json::to_string(&app)?],
        )?;
        tx.commit()?;
        Ok(app)
    }

    /// Deletes an app and every record of its machines.
    pub fn delete_app(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let machine_filter = "machine_id IN (SELECT id FROM machines WHERE app = ?1)";
        for table in ["versions", "events", "leases"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE {machine_filter}"),
                [name],
            )?;
        }
        tx.execute(
            "DELETE FROM operations WHERE subject = 'machine' AND subject_id IN (SELECT id FROM machines WHERE app = ?1)",
            [name],
        )?;
        tx.execute("DELETE FROM machines WHERE app = ?1", [name])?;
        tx.execute("DELETE FROM app_secrets WHERE app = ?1", [name])?;
        tx.execute("DELETE FROM machine_addresses WHERE app = ?1", [name])?;
        tx.execute("DELETE FROM app_networks WHERE app = ?1", [name])?;
        tx.execute("DELETE FROM apps WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_machine(&self, id: &str) -> Result<Option<MachineRecord>, StoreError> {
        let sql = format!("SELECT {MACHINE_COLUMNS} FROM machines WHERE id = ?1");
        Ok(self.read_machines(&sql, [id])?.pop())
    }

    /// Machines of `app` (all apps when `None`), oldest first.
    pub fn list_machines(&self, app: Option<&str>) -> Result<Vec<MachineRecord>, StoreError> {
        let sql = format!(
            "SELECT {MACHINE_COLUMNS} FROM machines WHERE ?1 IS NULL OR app = ?1 ORDER BY rowid"
        );
        self.read_machines(&sql, [app])
    }

    /// Replaces a machine's record, optionally appending an event in the
    /// same transaction (a state change and its event are never split).
    pub fn update_machine(
        &self,
        record: &MachineRecord,
        event: Option<&MachineEvent>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        write_machine(&tx, record)?;
        if let Some(event) = event {
            self.insert_event(&tx, &record.id, event)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn add_version(
        &self,
        machine_id: &str,
        version: &str,
        config: &roost_types::MachineConfig,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO versions (machine_id, version, config) VALUES (?1, ?2, ?3)",
            params![machine_id, version, serde_json::to_string(config)?],
        )?;
        Ok(())
    }

    /// Versions of a machine, newest first (as Fly lists them).
    pub fn list_versions(
        &self,
        machine_id: &str,
    ) -> Result<Vec<roost_types::MachineVersion>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT version, config FROM versions WHERE machine_id = ?1 ORDER BY seq DESC",
        )?;
        let rows = stmt.query_map([machine_id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (version, config) = row?;
            Ok(roost_types::MachineVersion {
                version,
                user_config: serde_json::from_str(&config)?,
            })
        })
        .collect()
    }

    pub fn append_event(&self, machine_id: &str, event: &MachineEvent) -> Result<(), StoreError> {
        self.insert_event(&self.conn(), machine_id, event)
    }

    /// A machine's `limit` newest events, newest first (as Fly lists
    /// them); there are never more than the bound.
    pub fn list_events(
        &self,
        machine_id: &str,
        limit: u32,
    ) -> Result<Vec<MachineEvent>, StoreError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE machine_id = ?1 ORDER BY seq DESC LIMIT ?2"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![machine_id, limit.min(self.events_per_machine)])?;
        let mut events = Vec::new();
        while let Some(row) = rows.next()? {
            events.push(read_event(row, 0)?);
        }
        Ok(events)
    }

    /// The machines of `app`, oldest first, each with its `events` newest
    /// events (newest first): two queries however many machines there are,
    /// each reading only the rows it returns (the events through the
    /// `(machine_id, seq)` index, from each machine's `events`-th newest),
    /// under one hold of the connection, so no write falls between them.
    /// The events come in the machines' order, so each goes to its
    /// machine without a lookup.
    pub fn list_machines_with_events(
        &self,
        app: &str,
        events: u32,
    ) -> Result<Vec<(MachineRecord, Vec<MachineEvent>)>, StoreError> {
        let conn = self.conn();
        let sql = format!("SELECT {MACHINE_COLUMNS} FROM machines WHERE app = ?1 ORDER BY rowid");
        let mut listed: Vec<(MachineRecord, Vec<MachineEvent>)> =
            read_machines(&conn, &sql, [app])?
                .into_iter()
                .map(|record| (record, Vec::new()))
                .collect();
        let limit = events.min(self.events_per_machine);
        if limit == 0 || listed.is_empty() {
            return Ok(listed);
        }
        let sql = format!(
            "SELECT m.id, e.{} FROM machines m
             JOIN events e ON e.machine_id = m.id AND e.seq >= coalesce(
                 (SELECT seq FROM events WHERE machine_id = m.id
                  ORDER BY seq DESC LIMIT 1 OFFSET ?2 - 1), 0)
             WHERE m.app = ?1
             ORDER BY m.rowid, e.seq DESC",
            EVENT_COLUMNS.replace(", ", ", e.")
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![app, limit])?;
        let mut slots = listed.iter_mut();
        let mut slot = slots.next();
        while let Some(row) = rows.next()? {
            let id = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            while let Some((record, _)) = &slot {
                if record.id == id {
                    break;
                }
                slot = slots.next();
            }
            match &mut slot {
                Some((_, events)) => events.push(read_event(row, 1)?),
                None => break,
            }
        }
        Ok(listed)
    }

    /// How many machines that are not destroyed each app has (apps
    /// without any are absent).
    pub fn machine_counts(&self) -> Result<HashMap<String, u64>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT app, count(*) FROM machines WHERE state != ?1 GROUP BY app")?;
        let rows = stmt.query_map([MachineState::Destroyed.as_str()], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn get_lease(&self, machine_id: &str) -> Result<Option<Lease>, StoreError> {
        self.get_json("SELECT data FROM leases WHERE machine_id = ?1", machine_id)
    }

    pub fn put_lease(&self, machine_id: &str, lease: &Lease) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO leases (machine_id, data) VALUES (?1, ?2)",
            params![machine_id, serde_json::to_string(lease)?],
        )?;
        Ok(())
    }

    pub fn delete_lease(&self, machine_id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM leases WHERE machine_id = ?1", [machine_id])?;
        Ok(())
    }

    /// Machines in `state`, across all apps.
    pub fn machines_in_state(&self, state: MachineState) -> Result<Vec<MachineRecord>, StoreError> {
        let sql = format!("SELECT {MACHINE_COLUMNS} FROM machines WHERE state = ?1 ORDER BY rowid");
        self.read_machines(&sql, [state.as_str()])
    }

    /// The machines `sql` selects ([`MACHINE_COLUMNS`] first).
    fn read_machines(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<MachineRecord>, StoreError> {
        read_machines(&self.conn(), sql, params)
    }

    /// Appends a machine's event and deletes those older than its
    /// `events_per_machine` newest (an index range, so the cost is the
    /// rows dropped, not the history kept).
    fn insert_event(
        &self,
        conn: &Connection,
        machine_id: &str,
        event: &MachineEvent,
    ) -> Result<(), StoreError> {
        let request = event.request.as_ref().map(serde_json::to_string);
        conn.prepare_cached(
            "INSERT INTO events (machine_id, id, kind, status, source, timestamp, request) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            machine_id,
            event.id,
            event.kind,
            event.status,
            event.source,
            event.timestamp,
            request.transpose()?,
        ])?;
        conn.execute(
            "DELETE FROM events WHERE machine_id = ?1 AND seq <= (
                 SELECT seq FROM events WHERE machine_id = ?1
                 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            params![machine_id, self.events_per_machine],
        )?;
        Ok(())
    }

    /// The JSON record in column 0 of the row `sql` selects by `key`.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let data: Option<String> = self
            .conn()
            .query_row(sql, [key], |row| row.get(0))
            .optional()?;
        Ok(data.map(|d| serde_json::from_str(&d)).transpose()?)
    }

    /// The JSON records in column 0 of the rows `sql` selects.
    fn list_json<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map(params, |row| row.get::<_, String>(0))?;
        rows.map(|data| Ok(serde_json::from_str(&data?)?)).collect()
    }
}

/// A machine's columns, in the order [`read_machine`] reads and
/// [`machine_values`] writes them.
const MACHINE_COLUMNS: &str = "id, app, name, state, region, instance_id, private_ip, config, \
    image_registry, image_repository, image_tag, image_digest, image_labels, created_at, \
    updated_at, cordoned, runtime, init_pid, restart_count";

/// An event's columns, in the order [`read_event`] reads them.
const EVENT_COLUMNS: &str = "id, kind, status, source, timestamp, request";

/// The event in the row's [`EVENT_COLUMNS`], from column `first` on.
fn read_event(row: &Row<'_>, first: usize) -> Result<MachineEvent, StoreError> {
    let request = match row.get_ref(first + 5)?.as_str_or_null() {
        Ok(Some(text)) => serde_json::from_str(text)?,
        Ok(None) => None,
        Err(err) => return Err(rusqlite::Error::from(err).into()),
    };
    Ok(MachineEvent {
        id: row.get(first)?,
        kind: row.get(first + 1)?,
        status: row.get(first + 2)?,
        source: row.get(first + 3)?,
        timestamp: row.get(first + 4)?,
        request,
    })
}

/// The machines `sql` selects on `conn` ([`MACHINE_COLUMNS`] first).
fn read_machines(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<MachineRecord>, StoreError> {
    read_rows(conn, sql, params, read_machine)
}

/// The records `read` makes of the rows `sql` selects on `conn`.
fn read_rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        records.push(read(row)?);
    }
    Ok(records)
}

/// The machine in the row's first [`MACHINE_COLUMNS`].
fn read_machine(row: &Row<'_>) -> Result<MachineRecord, StoreError> {
    Ok(MachineRecord {
        id: row.get(0)?,
        app: row.get(1)?,
        name: row.get(2)?,
        state: parse_name(row.get(3)?)?,
        region: row.get(4)?,
        instance_id: row.get(5)?,
        private_ip: row.get(6)?,
        config: json_column(row, 7)?,
        image_ref: ImageRef {
            registry: row.get(8)?,
            repository: row.get(9)?,
            tag: row.get(10)?,
            digest: row.get(11)?,
            labels: json_column(row, 12)?,
        },
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
        cordoned: row.get(15)?,
        runtime: row.get(16)?,
        init_pid: row.get(17)?,
        restart_count: row.get(18)?,
    })
}

/// The JSON document in column `index`, read in place.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    index: usize,
) -> Result<T, StoreError> {
    let text = row
        .get_ref(index)?
        .as_str()
        .map_err(rusqlite::Error::from)?;
    Ok(serde_json::from_str(text)?)
}

/// `name` as the serde name of a `T` (a state, a subject): text that is
/// none is a corrupt record, as in any JSON column.
fn parse_name<T: serde::de::DeserializeOwned>(name: String) -> Result<T, StoreError> {
    Ok(serde_json::from_value(serde_json::Value::String(name))?)
}

/// Runs `sql`, whose parameters are [`MACHINE_COLUMNS`] in order, with
/// `record`'s values.
fn write_machine_row(
    conn: &Connection,
    sql: &str,
    record: &MachineRecord,
) -> Result<usize, StoreError> {
    let image = &record.image_ref;
    Ok(conn.prepare_cached(sql)?.execute(params![
        record.id,
        record.app,
        record.name,
        record.state.as_str(),
        record.region,
        record.instance_id,
        record.private_ip,
        serde_json::to_string(&record.config)?,
        image.registry,
        image.repository,
        image.tag,
        image.digest,
        serde_json::to_string(&image.labels)?,
        record.created_at,
        record.updated_at,
        record.cordoned,
        record.runtime,
        record.init_pid,
        record.restart_count,
    ])?)
}

/// Inserts a new machine's row and its first version.
fn insert_machine(conn: &Connection, record: &MachineRecord) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO machines ({MACHINE_COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    );
    write_machine_row(conn, &sql, record)?;
    conn.execute(
        "INSERT INTO versions (machine_id, version, config) VALUES (?1, ?2, ?3)",
        params![
            record.id,
            record.instance_id,
            serde_json::to_string(&record.config)?
        ],
    )?;
    Ok(())
}

/// Replaces an existing machine's row (its id and app never change).
fn write_machine(conn: &Connection, record: &MachineRecord) -> Result<(), StoreError> {
    let updated = write_machine_row(
        conn,
        "UPDATE machines SET name = ?3, state = ?4, region = ?5, instance_id = ?6, \
         private_ip = ?7, config = ?8, image_registry = ?9, image_repository = ?10, \
         image_tag = ?11, image_digest = ?12, image_labels = ?13, created_at = ?14, \
         updated_at = ?15, cordoned = ?16, runtime = ?17, init_pid = ?18, restart_count = ?19 \
         WHERE id = ?1 AND app = ?2",
        record,
    )?;
    if updated == 0 {
        return Err(StoreError::NotFound {
            kind: "machine",
            name: record.id.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_types::MachineConfig;

    /// A store in a temp dir (also for the other modules' tests).
    pub(crate) fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("roost.db")).unwrap();
        (dir, store)
    }

    pub(crate) fn app(name: &str) -> AppRecord {
        AppRecord {
            id: name.to_string(),
            name: name.to_string(),
            org_slug: "personal".to_string(),
            network: "default".to_string(),
            created_at: "2026-01-01T00:00:00Z".to_string(),
            egress: None,
        }
    }

    pub(crate) fn machine(id: &str, app: &str) -> MachineRecord {
        MachineRecord {
            id: id.to_string(),
            app: app.to_string(),
            name: format!("name-{id}"),
            state: MachineState::Created,
            region: "local".to_string(),
            instance_id: "v1".to_string(),
            private_ip: String::new(),
            config: MachineConfig::default(),
            image_ref: ImageRef::default(),
            created_at: String::new(),
            updated_at: String::new(),
            cordoned: false,
            runtime: "crun".to_string(),
            init_pid: None,
            restart_count: 0,
        }
    }

    /// Inserts `record` with its launch event and unfinished launch
    /// operation, as the service creates a machine.
    pub(crate) fn launch(store: &Store, record: &MachineRecord) -> Operation {
        let event = event("launch");
        let write = OperationWrite::NewMachine {
            record,
            event: &event,
        };
        store
            .begin_operation(write, "launch", &serde_json::json!({}))
            .unwrap()
    }

    pub(crate) fn event(kind: &str) -> MachineEvent {
        MachineEvent {
            id: kind.to_string(),
            kind: kind.to_string(),
            status: kind.to_string(),
            source: "user".to_string(),
            timestamp: 0,
            request: None,
        }
    }

    #[test]
    fn duplicate_app_is_refused() {
        let (_dir, store) = store();
        store.create_app(&app("a")).unwrap();
        assert!(matches!(
            store.create_app(&app("a")),
            Err(StoreError::AlreadyExists { kind: "app", .. })
        ));
        assert_eq!(store.list_apps().unwrap().len(), 1);
    }

    #[test]
    fn an_app_egress_policy_is_replaced_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roost.db");
        let policy = roost_types::EgressPolicy {
            default: roost_types::EgressDefault::Deny,
            allow: vec!["deb.debian.org".into()],
            deny: vec![],
        };
        {
            let store = Store::open(&path).unwrap();
            store.create_app(&app("a")).unwrap();
            assert_eq!(store.get_app("a").unwrap().unwrap().egress, None);
            store.set_app_egress("a", &policy).unwrap();
            assert!(matches!(
                store.set_app_egress("nope", &policy),
                Err(StoreError::NotFound { kind: "app", .. })
            ));
        }
        let store = Store::open(&path).unwrap();
        let stored = store.get_app("a").unwrap().unwrap();
        assert_eq!(stored.egress, Some(policy));
        assert_eq!(stored.org_slug, "personal");
    }

    #[test]
    fn deleting_an_app_removes_its_machines() {
        let (_dir, store) = store();
        store.create_app(&app("a")).unwrap();
        store.create_app(&app("b")).unwrap();
        for (id, app) in [("m1", "a"), ("m2", "b")] {
            launch(&store, &machine(id, app));
        }
        store.delete_app("a").unwrap();
        assert!(store.get_machine("m1").unwrap().is_none());
        assert!(store.list_events("m1", 10).unwrap().is_empty());
        assert_eq!(store.list_machines(None).unwrap().len(), 1);
        assert_eq!(store.unfinished_operations().unwrap().len(), 1);
    }

    /// A store at `dir` keeping `bound` events, with app `a` and machines
    /// `m1` and `m2`, each with its launch event and `extra` more.
    fn store_with_events(dir: &Path, bound: u32, extra: usize) -> Store {
        let store = Store::open_keeping_events(&dir.join("roost.db"), bound).unwrap();
        store.create_app(&app("a")).unwrap();
        for id in ["m1", "m2"] {
            launch(&store, &machine(id, "a"));
            for n in 0..extra {
                store
                    .append_event(id, &event(&format!("{id}-{n}")))
                    .unwrap();
            }
        }
        store
    }

    fn kinds(events: &[MachineEvent]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn events_beyond_the_bound_are_dropped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_events(dir.path(), 3, 4);
        assert_eq!(
            kinds(&store.list_events("m1", 100).unwrap()),
            ["m1-3", "m1-2", "m1-1"]
        );
        assert_eq!(
            kinds(&store.list_events("m2", 2).unwrap()),
            ["m2-3", "m2-2"]
        );
        let rows: u32 = store
            .conn()
            .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 6, "each machine keeps exactly the bound");
        // A state change's event is bounded too.
        let mut record = store.get_machine("m1").unwrap().unwrap();
        record.state = MachineState::Stopped;
        store.update_machine(&record, Some(&event("stop"))).unwrap();
        assert_eq!(
            kinds(&store.list_events("m1", 100).unwrap()),
            ["stop", "m1-3", "m1-2"]
        );
    }

    #[test]
    fn a_lower_bound_cuts_a_longer_history_at_its_next_event() {
        let dir = tempfile::tempdir().unwrap();
        drop(store_with_events(dir.path(), 10, 5));
        let store = Store::open_keeping_events(&dir.path().join("roost.db"), 2).unwrap();
        assert_eq!(store.list_events("m1", 100).unwrap().len(), 2);
        store.append_event("m1", &event("new")).unwrap();
        assert_eq!(
            kinds(&store.list_events("m1", 100).unwrap()),
            ["new", "m1-4"]
        );
        let listed = store.list_machines_with_events("a", 100).unwrap();
        assert_eq!(
            kinds(&listed[1].1),
            ["m2-4", "m2-3"],
            "read under the bound"
        );
    }

    #[test]
    fn listing_gives_each_machine_its_newest_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_events(dir.path(), 200, 5);
        store.create_app(&app("b")).unwrap();
        launch(&store, &machine("m3", "b"));
        let listed = store.list_machines_with_events("a", 2).unwrap();
        let ids: Vec<_> = listed.iter().map(|(r, _)| r.id.as_str()).collect();
        assert_eq!(ids, ["m1", "m2"]);
        assert_eq!(kinds(&listed[0].1), ["m1-4", "m1-3"]);
        assert_eq!(kinds(&listed[1].1), ["m2-4", "m2-3"]);
        let all = store.list_machines_with_events("a", 100).unwrap();
        assert_eq!(kinds(&all[0].1).len(), 6);
        assert_eq!(kinds(&all[0].1).last(), Some(&"launch"));
        assert!(store.list_machines_with_events("a", 0).unwrap()[0]
            .1
            .is_empty());
        let b = store.list_machines_with_events("b", 10).unwrap();
        assert_eq!(kinds(&b[0].1), ["launch"]);
        assert!(store
            .list_machines_with_events("none", 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn machines_are_counted_per_app_without_destroyed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_events(dir.path(), 200, 0);
        let mut record = store.get_machine("m2").unwrap().unwrap();
        record.state = MachineState::Destroyed;
        store.update_machine(&record, None).unwrap();
        let counts = store.machine_counts().unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts["a"], 1);
    }

    #[test]
    fn updating_a_missing_machine_is_not_found() {
        let (_dir, store) = store();
        assert!(matches!(
            store.update_machine(&machine("nope", "a"), None),
            Err(StoreError::NotFound { .. })
        ));
    }
}
