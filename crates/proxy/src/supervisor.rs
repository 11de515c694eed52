//! The proxy's background loop. A round re-reads the machines of each app
//! that changed since the last one (an unchanged fleet costs no store
//! reads), runs due health checks and stops idle machines (autostop).
//!
//! Rounds are event-driven. One runs when a machine changes
//! ([`crate::Backends::changed`]), when a check or an autostop the loop
//! began has ended (what follows must be scheduled), and when the earliest
//! thing the last round saw coming falls due: a check's next run, a
//! machine reaching the autostop idle limit. So a fleet with nothing
//! started, or nothing started that is checked or autostopped, costs no
//! wake-up until it changes. Rounds are at least
//! [`crate::ProxyConfig::tick`] apart (the first a tick after the start),
//! so a burst of changes is handled in one.
//!
//! Autostop: a started machine whose services have `autostop` on, with
//! nothing in flight for [`ProxyConfig::autostop_idle`], is stopped
//! through [`Backends::stop`] while more than `min_machines_running`
//! machines of the app stay started. The machine is marked draining first
//! (routing skips it) and only if its in-flight count is zero, so no
//! request is sent to a machine on its way down.
//!
//! [`ProxyConfig::autostop_idle`]: crate::ProxyConfig::autostop_idle
//! [`Backends::stop`]: crate::Backends::stop

use crate::route::Reread;
use crate::Shared;
use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Instant;

pub(crate) async fn run(shared: Weak<Shared>) {
    let Some((tick, mut work_ended)) = shared
        .upgrade()
        .map(|s| (s.config.tick, s.supervisor_wake.subscribe()))
    else {
        return;
    };
    let mut apps = Apps::default();
    let mut last_round = tokio::time::Instant::now();
    // The first round is due at once (a tick after the start).
    let mut due = Some(Instant::now());
    loop {
        tokio::time::sleep_until(last_round + tick).await;
        let changed = match shared.upgrade() {
            Some(shared) => shared
                .router
                .backends
                .changed(apps.change_count.unwrap_or_default()),
            None => return,
        };
        let falls_due = async {
            match due {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = changed => {}
            // An error is the proxy gone: the upgrade below ends the loop.
            _ = work_ended.changed() => {}
            () = falls_due => {}
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        last_round = tokio::time::Instant::now();
        due = sweep(&shared, &mut apps).await;
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

/// The earlier of two deadlines, either of which may be none.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One round; returns when the next one is due without a change (`None`:
/// nothing is coming). A failed read is retried a tick later.
async fn sweep(shared: &Arc<Shared>, apps: &mut Apps) -> Option<Instant> {
    let router = &shared.router;
    let retry = Some(Instant::now() + shared.config.tick);
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
                return retry;
            }
        }
    }
    let mut live = HashSet::new();
    let mut due = None;
    for app in &apps.names {
        let (state, snapshot) = match router.snapshot(app, Reread::IfChanged).await {
            Ok(found) => found,
            Err(err) => {
                tracing::debug!(app, error = %err, "proxy supervisor skips app");
                due = earliest(due, retry);
                continue;
            }
        };
        if changed {
            live.extend(snapshot.backends.iter().map(|b| b.id().to_string()));
        }
        let checks = shared
            .checker
            .schedule(&router.backends, app, &snapshot.started);
        due = earliest(due, checks);
        autostop(shared, app, &state, &snapshot);
        due = earliest(due, autostop_due(shared, &snapshot));
    }
    if changed {
        router.retain_slots(&live);
    }
    due
}

/// When the next machine of the snapshot reaches the autostop idle
/// limit, counting from now: only machines autostop may stop (more of
/// the app's machines are started than the service keeps running).
fn autostop_due(shared: &Shared, snapshot: &crate::route::Snapshot) -> Option<Instant> {
    let idle_limit = shared.config.autostop_idle;
    let running = autostop_candidates(snapshot);
    let now = Instant::now();
    running
        .iter()
        .filter(|b| b.autostop().is_some_and(|min| running.len() > min))
        .map(|b| now + idle_limit.saturating_sub(b.slot.idle_for()))
        .min()
}

/// The started machines autostop counts as running and may stop: those
/// with services that autostop is not already taking down.
fn autostop_candidates(snapshot: &crate::route::Snapshot) -> Vec<&Arc<crate::route::Backend>> {
    snapshot
        .started
        .iter()
        .filter(|b| !b.routes.is_empty() && !b.slot.is_draining())
        .collect()
}

fn autostop(
    shared: &Arc<Shared>,
    app: &str,
    state: &Arc<crate::route::AppState>,
    snapshot: &crate::route::Snapshot,
) {
    let idle_limit = shared.config.autostop_idle;
    let started = autostop_candidates(snapshot);
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
            // A machine still started (the stop failed) is idle from now.
            shared.supervisor_wake.send_replace(());
        });
    }
}
