//! The proxy's background loop: on every tick it re-reads the machines of
//! each app that changed since (an unchanged fleet costs no store reads),
//! runs due health checks and stops idle machines (autostop).
//!
//! Autostop: a started machine whose services have `autostop` on, with
//! nothing in flight for [`ProxyConfig::autostop_idle`], is stopped
//! through [`Backends::stop`] while more than `min_machines_running`
//! machines of the app stay started. The machine is marked draining first
//! (routing skips it) and only if its in-flight count is zero, so no
//! request is sent to a machine on its way down.

use crate::route::Reread;
use crate::Shared;
use std::collections::HashSet;
use std::sync::{Arc, Weak};

pub(crate) async fn run(shared: Weak<Shared>) {
    let mut apps = Apps::default();
    loop {
        let Some(tick) = shared.upgrade().map(|s| s.config.tick) else {
            return;
        };
        tokio::time::sleep(tick).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        sweep(&shared, &mut apps).await;
    }
}

/// The apps of the last sweep, read again only when a machine changed
/// (an app without machines has nothing to check or stop).
#[derive(Default)]
struct Apps {
    names: Vec<String>,
    /// [`crate::Backends::change_count`] when `names` was read.
    change_count: Option<u64>,
}

async fn sweep(shared: &Arc<Shared>, apps: &mut Apps) {
    let router = &shared.router;
    let change_count = router.backends.change_count();
    let changed = apps.change_count != Some(change_count);
    if changed {
        match router.backends.apps().await {
            Ok(names) => {
                *apps = Apps {
                    names,
                    change_count: Some(change_count),
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "proxy supervisor cannot list apps");
                return;
            }
        }
    }
    let mut live = HashSet::new();
    for app in &apps.names {
        let (state, snapshot) = match router.snapshot(app, Reread::IfChanged).await {
            Ok(found) => found,
            Err(err) => {
                tracing::debug!(app, error = %err, "proxy supervisor skips app");
                continue;
            }
        };
        if changed {
            live.extend(snapshot.backends.iter().map(|b| b.id().to_string()));
        }
        shared
            .checker
            .schedule(&router.backends, app, &snapshot.started);
        autostop(shared, app, &state, &snapshot);
    }
    if changed {
        router.retain_slots(&live);
    }
}

fn autostop(
    shared: &Arc<Shared>,
    app: &str,
    state: &Arc<crate::route::AppState>,
    snapshot: &crate::route::Snapshot,
) {
    let idle_limit = shared.config.autostop_idle;
    let started: Vec<_> = snapshot
        .started
        .iter()
        .filter(|b| !b.routes.is_empty() && !b.slot.is_draining())
        .collect();
    let mut running = started.len();
    // Longest idle first, so the machines stopped are the coldest ones.
    let mut idle: Vec<_> = started
        .iter()
        .filter_map(|b| b.autostop().map(|min| (b, min, b.slot.idle_for())))
        .filter(|(_, _, idle)| *idle >= idle_limit)
        .collect();
    idle.sort_by_key(|(_, _, idle)| std::cmp::Reverse(*idle));
    for (backend, min_running, idle_for) in idle {
        if running <= min_running || !backend.slot.try_drain() {
            continue;
        }
        running -= 1;
        let shared = shared.clone();
        let state = state.clone();
        let backend = (*backend).clone();
        let app = app.to_string();
        tracing::info!(
            app,
            machine = backend.id(),
            idle_secs = idle_for.as_secs(),
            "autostop: stopping idle machine"
        );
        tokio::spawn(async move {
            let id = backend.id();
            if let Err(err) = shared.router.backends.stop(&app, id).await {
                tracing::warn!(app, machine = id, error = %err, "autostop failed");
            }
            // Re-read before routing may use the machine again, so no
            // request sees it as started once it is not.
            state.invalidate();
            let _ = shared.router.snapshot(&app, Reread::Always).await;
            backend.slot.end_drain();
        });
    }
}
