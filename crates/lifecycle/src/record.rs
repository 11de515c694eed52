//! The machine as roost keeps it: the record the service changes, the
//! store persists column by column and the edge proxy routes on.
//!
//! It is not the Fly wire type. [`roost_types::Machine`] is what a client
//! is shown, and holds more than is kept with the machine: its events (a
//! table of their own, read with a bound), its check results and egress
//! counters (in memory, reported by the proxies) and a create's lease
//! nonce (known to that one answer). [`MachineRecord::into_view`] is the
//! one place the two meet, so the stored layout and the API can change
//! apart.

use crate::MachineState;
use roost_types::{CheckStatus, ImageRef, Machine, MachineConfig, MachineEgress, MachineEvent};

/// A machine: what it is, what runs it and how far it got.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineRecord {
    pub id: String,
    pub app: String,
    pub name: String,
    pub state: MachineState,
    pub region: String,
    /// The version of the config: changes at every update.
    pub instance_id: String,
    /// The machine's address on its app's private network; empty without
    /// one.
    pub private_ip: String,
    /// The user's spec, as sent (also kept per version).
    pub config: MachineConfig,
    /// The image `config.image` resolved to at create or update.
    pub image_ref: ImageRef,
    pub created_at: String,
    pub updated_at: String,
    /// While true, the edge proxy routes nothing to the machine.
    pub cordoned: bool,
    /// OCI runtime that runs this machine (`crun` or `runc`).
    pub runtime: String,
    /// Host pid of the machine's init while it runs.
    pub init_pid: Option<u32>,
    /// Automatic restarts since the last user-requested start.
    pub restart_count: u32,
}

/// What a machine's wire view shows beside its record, none of it kept
/// with the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shown {
    /// Its newest events, newest first.
    pub events: Vec<MachineEvent>,
    /// The latest results of its health checks.
    pub checks: Vec<CheckStatus>,
    /// The nonce of the lease a create took.
    pub nonce: Option<String>,
    /// Its traffic through the egress proxy.
    pub egress: Option<MachineEgress>,
}

impl MachineRecord {
    /// The machine as the Fly Machines API shows it, with `shown`.
    pub fn into_view(self, shown: Shown) -> Machine {
        Machine {
            id: self.id,
            name: self.name,
            state: self.state,
            region: self.region,
            instance_id: self.instance_id,
            private_ip: self.private_ip,
            config: self.config,
            image_ref: self.image_ref,
            created_at: self.created_at,
            updated_at: self.updated_at,
            events: shown.events,
            checks: shown.checks,
            nonce: shown.nonce,
            cordoned: self.cordoned,
            egress: shown.egress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_carries_the_record_and_what_is_shown_beside_it() {
        let record = MachineRecord {
            id: "0a1b2c3d4e5f60".into(),
            app: "web".into(),
            name: "web-0a1b2c".into(),
            state: MachineState::Started,
            region: "local".into(),
            instance_id: "01V1".into(),
            private_ip: "fdaa:0:1::2".into(),
            config: MachineConfig {
                image: "busybox".into(),
                ..Default::default()
            },
            image_ref: ImageRef {
                digest: "sha256:abc".into(),
                ..Default::default()
            },
            created_at: "t0".into(),
            updated_at: "t1".into(),
            cordoned: true,
            runtime: "runc".into(),
            init_pid: Some(42),
            restart_count: 2,
        };
        let shown = Shown {
            events: vec![MachineEvent {
                id: "e1".into(),
                kind: "start".into(),
                status: "started".into(),
                source: "user".into(),
                timestamp: 1,
                request: None,
            }],
            checks: vec![CheckStatus {
                name: "alive".into(),
                status: "passing".into(),
                ..Default::default()
            }],
            nonce: Some("n".into()),
            egress: Some(MachineEgress {
                allowed: 3,
                ..Default::default()
            }),
        };
        let view = record.clone().into_view(shown.clone());
        assert_eq!(
            view,
            Machine {
                id: record.id,
                name: record.name,
                state: record.state,
                region: record.region,
                instance_id: record.instance_id,
                private_ip: record.private_ip,
                config: record.config,
                image_ref: record.image_ref,
                created_at: record.created_at,
                updated_at: record.updated_at,
                events: shown.events,
                checks: shown.checks,
                nonce: shown.nonce,
                cordoned: true,
                egress: shown.egress,
            }
        );
    }
}
