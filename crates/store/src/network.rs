//! Private-network numbers: which network number each app has and which
//! address slot each machine holds in it.
//!
//! The store only hands out and remembers small integers; what they mean
//! (the `fdaa::/16` address plan) is `roost-net`'s business. Numbers are
//! allocated lowest-free-first inside one transaction, so two concurrent
//! allocations never get the same number, and a number is never reused
//! while its holder exists: an app's network number lives until the app is
//! deleted, a machine's slot until [`Store::free_machine_address`] (destroy).

use crate::{Store, StoreError};
use rusqlite::{params, OptionalExtension, Transaction};

/// The network number of app `?1`.
const APP_NETWORK: &str = "SELECT number FROM app_networks WHERE app = ?1";
/// The address slot of machine `?1`.
const MACHINE_SLOT: &str = "SELECT slot FROM machine_addresses WHERE machine_id = ?1";

/// Lowest app network number; 0 is reserved for roost's own services.
pub const FIRST_APP_NETWORK: u16 = 1;
/// Lowest machine slot; 0 is the subnet-router anycast address and 1 the
/// app's gateway on the host.
pub const FIRST_MACHINE_SLOT: u32 = 2;

/// One machine's address slot, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineAddressRecord {
    pub machine_id: String,
    pub app: String,
    pub slot: u32,
}

impl Store {
    /// The app's network number, allocating the lowest free one on first use.
    pub fn allocate_app_network(&self, app: &str) -> Result<u16, StoreError> {
        let number = self.get_or_allocate(
            Allocation {
                existing: APP_NETWORK,
                taken: "SELECT number FROM app_networks ORDER BY number",
                range: (i64::from(FIRST_APP_NETWORK), i64::from(u16::MAX)),
                what: "app network numbers",
            },
            app,
            &[],
            |tx, number| {
                tx.execute(
                    "INSERT INTO app_networks (app, number) VALUES (?1, ?2)",
                    params![app, number],
                )
            },
        )?;
        u16::try_from(number).map_err(|_| StoreError::Exhausted {
            what: "app network numbers",
        })
    }

    /// The app's network number, if it has one.
    pub fn app_network(&self, app: &str) -> Result<Option<u16>, StoreError> {
        Ok(self
            .number(APP_NETWORK, app)?
            .and_then(|n| u16::try_from(n).ok()))
    }

    /// The app owning network `number`, if any.
    pub fn app_of_network(&self, number: u16) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT app FROM app_networks WHERE number = ?1",
                [number],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Every app's network number, by number.
    pub fn list_app_networks(&self) -> Result<Vec<(String, u16)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT app, number FROM app_networks ORDER BY number")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, u16>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The machine's address slot in its app's network, allocating the
    /// lowest free one on first use (so a retried create gets the same one).
    pub fn allocate_machine_address(&self, app: &str, machine_id: &str) -> Result<u32, StoreError> {
        let slot = self.get_or_allocate(
            Allocation {
                existing: MACHINE_SLOT,
                taken: "SELECT slot FROM machine_addresses WHERE app = ?1 ORDER BY slot",
                range: (i64::from(FIRST_MACHINE_SLOT), i64::from(u32::MAX)),
                what: "machine addresses",
            },
            machine_id,
            &[&app],
            |tx, slot| {
                tx.execute(
                    "INSERT INTO machine_addresses (machine_id, app, slot) VALUES (?1, ?2, ?3)",
                    params![machine_id, app, slot],
                )
            },
        )?;
        u32::try_from(slot).map_err(|_| StoreError::Exhausted {
            what: "machine addresses",
        })
    }

    /// The machine's address slot, if it holds one.
    pub fn machine_address(&self, machine_id: &str) -> Result<Option<u32>, StoreError> {
        Ok(self
            .number(MACHINE_SLOT, machine_id)?
            .and_then(|n| u32::try_from(n).ok()))
    }

    /// The machine holding address slot `slot` of `app`'s network.
    pub fn machine_at_slot(&self, app: &str, slot: u32) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT machine_id FROM machine_addresses WHERE app = ?1 AND slot = ?2",
                params![app, slot],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// The number `sql` selects for `key`.
    fn number(&self, sql: &str, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn()
            .query_row(sql, [key], |row| row.get(0))
            .optional()?)
    }

    /// Every allocated machine address.
    pub fn list_machine_addresses(&self) -> Result<Vec<MachineAddressRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT machine_id, app, slot FROM machine_addresses ORDER BY app, slot")?;
        let rows = stmt.query_map([], |row| {
            Ok(MachineAddressRecord {
                machine_id: row.get(0)?,
                app: row.get(1)?,
                slot: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Releases the machine's address slot (no-op when it holds none).
    pub fn free_machine_address(&self, machine_id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM machine_addresses WHERE machine_id = ?1",
            [machine_id],
        )?;
        Ok(())
    }
}

/// How one kind of number is found and handed out.
struct Allocation {
    /// Selects the number held by `?1` (the holder).
    existing: &'static str,
    /// Selects, sorted, the numbers taken in the holder's pool.
    taken: &'static str,
    range: (i64, i64),
    what: &'static str,
}

impl Store {
    /// The number `holder` has, or the lowest free one of its `pool`, in one
    /// transaction so concurrent callers never get the same number.
    fn get_or_allocate(
        &self,
        allocation: Allocation,
        holder: &str,
        pool: &[&dyn rusqlite::ToSql],
        insert: impl FnOnce(&Transaction<'_>, i64) -> rusqlite::Result<usize>,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let existing: Option<i64> = tx
            .query_row(allocation.existing, [holder], |row| row.get(0))
            .optional()?;
        let number = match existing {
            Some(number) => number,
            None => {
                let number = lowest_free(&tx, &allocation, pool)?;
                insert(&tx, number)?;
                number
            }
        };
        tx.commit()?;
        Ok(number)
    }
}

/// The lowest number of the allocation's range that `pool` has not taken.
fn lowest_free(
    tx: &Transaction<'_>,
    allocation: &Allocation,
    pool: &[&dyn rusqlite::ToSql],
) -> Result<i64, StoreError> {
    let (first, last) = allocation.range;
    let mut stmt = tx.prepare(allocation.taken)?;
    let taken = stmt.query_map(pool, |row| row.get::<_, i64>(0))?;
    let mut candidate = first;
    for number in taken {
        let number = number?;
        if number > candidate {
            break;
        }
        candidate = candidate.max(number + 1);
    }
    if candidate > last {
        return Err(StoreError::Exhausted {
            what: allocation.what,
        });
    }
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::store;

    #[test]
    fn app_networks_are_stable_and_lowest_free() {
        let (_dir, store) = store();
        assert_eq!(store.allocate_app_network("a").unwrap(), 1);
        assert_eq!(store.allocate_app_network("b").unwrap(), 2);
        assert_eq!(store.allocate_app_network("a").unwrap(), 1);
        assert_eq!(store.app_of_network(2).unwrap().as_deref(), Some("b"));
        store.delete_app("a").unwrap();
        assert_eq!(store.app_network("a").unwrap(), None);
        assert_eq!(store.allocate_app_network("c").unwrap(), 1);
        assert_eq!(
            store.list_app_networks().unwrap(),
            [("c".to_string(), 1), ("b".to_string(), 2)]
        );
    }

    #[test]
    fn machine_slots_are_per_app_reused_after_free_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roost.db");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.allocate_machine_address("a", "m1").unwrap(), 2);
            assert_eq!(store.allocate_machine_address("a", "m2").unwrap(), 3);
            assert_eq!(store.allocate_machine_address("b", "m3").unwrap(), 2);
            assert_eq!(store.allocate_machine_address("a", "m1").unwrap(), 2);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.machine_address("m2").unwrap(), Some(3));
        assert_eq!(
            store.machine_at_slot("a", 3).unwrap().as_deref(),
            Some("m2")
        );
        assert_eq!(store.machine_at_slot("b", 3).unwrap(), None);
        store.free_machine_address("m1").unwrap();
        store.free_machine_address("m1").unwrap();
        assert_eq!(store.machine_address("m1").unwrap(), None);
        assert_eq!(store.allocate_machine_address("a", "m4").unwrap(), 2);
        assert_eq!(store.allocate_machine_address("a", "m5").unwrap(), 4);
        assert_eq!(store.list_machine_addresses().unwrap().len(), 4);
    }
}
