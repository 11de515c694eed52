//! Which machine gets a request: service matching, least-loaded choice,
//! autostart, queueing at the hard limit, forced/preferred instances.
//!
//! Machine lists come from [`Backends::machines`] and are cached per app
//! until [`Backends::change_count`] moves (or for at most
//! [`ProxyConfig::snapshot_max_age`]), so the hot path reads no store.

use crate::backends::{BackendError, Backends};
use crate::load::{InFlight, Slot, Waiters};
use crate::ProxyConfig;
use roost_lifecycle::{self as lifecycle, Intent, MachineRecord, Reason, Refusal, Transition};
use roost_types::{
    AutostopMode, MachineCheck, MachinePort, MachineService, MachineState, DEFAULT_HARD_LIMIT,
    DEFAULT_SOFT_LIMIT,
};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What a listener stands for, which decides the services it reaches
/// (Fly's handlers: the proxy does what a port's handlers say, so a port
/// is reached only by the listener that does exactly that). HTTP and TCP
/// listeners reach only `tcp` services, the UDP listener only `udp` ones,
/// so one public port number can carry both protocols to different
/// services, as on Fly.
#[derive(Debug, Clone)]
pub(crate) enum Listen {
    /// An HTTP listener: services on one of these public ports whose
    /// handlers include `http`, and `tls` if and only if the listener
    /// terminates TLS.
    Http { ports: Arc<[u16]>, tls: bool },
    /// A raw TCP listener: services on this public port with no handler,
    /// or, when it terminates TLS, with exactly `["tls"]`.
    Tcp { port: u16, tls: bool },
    /// A UDP listener: `udp` services on this public port (UDP services
    /// have no handlers).
    Udp { port: u16 },
}

impl Listen {
    /// Whether the client's connection is TLS terminated by the proxy.
    pub(crate) fn is_tls(&self) -> bool {
        match self {
            Listen::Http { tls, .. } | Listen::Tcp { tls, .. } => *tls,
            Listen::Udp { .. } => false,
        }
    }
}

/// The services a listener reaches, for messages.
impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Http { ports, tls } => {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                let ports = ports.join("/");
                if *tls {
                    write!(f, "port {ports} with the tls and http handlers")
                } else {
                    write!(f, "port {ports} with the http handler and no tls handler")
                }
            }
            Listen::Tcp { port, tls: false } => {
                write!(f, "port {port} without handlers (raw TCP)")
            }
            Listen::Tcp { port, tls: true } => {
                write!(
                    f,
                    "port {port} with only the tls handler (TLS-terminated TCP)"
                )
            }
            Listen::Udp { port } => write!(f, "UDP port {port}"),
        }
    }
}

/// A service's `protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
}

/// One service of a machine, with Fly's defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct ServiceRoute {
    pub protocol: Protocol,
    pub internal_port: u16,
    pub ports: Vec<MachinePort>,
    pub soft_limit: usize,
    pub hard_limit: usize,
    pub autostart: bool,
    pub autostop: bool,
    pub min_running: usize,
    pub checks: Vec<MachineCheck>,
}

impl ServiceRoute {
    fn from_service(service: &MachineService) -> Option<ServiceRoute> {
        // Missing means tcp, as on Fly; anything else reaches no listener.
        let protocol = match service.protocol.as_deref() {
            None => Protocol::Tcp,
            Some(p) if p.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
            Some(p) if p.eq_ignore_ascii_case("udp") => Protocol::Udp,
            Some(_) => return None,
        };
        let internal_port = u16::try_from(service.internal_port?).ok()?;
        let concurrency = service.concurrency.clone().unwrap_or_default();
        let limit = |v: Option<i64>, default: u64| v.map_or(default, |v| v.max(1) as u64) as usize;
        let hard_limit = limit(concurrency.hard_limit, DEFAULT_HARD_LIMIT);
        let soft_limit = limit(
            concurrency.soft_limit,
            DEFAULT_SOFT_LIMIT.min(hard_limit as u64),
        )
        .min(hard_limit);
        Some(ServiceRoute {
            protocol,
            internal_port,
            ports: service.ports.clone(),
            soft_limit,
            hard_limit,
            autostart: service.autostart.unwrap_or(true),
            autostop: !matches!(service.autostop.unwrap_or_default(), AutostopMode::Off),
            min_running: service.min_machines_running.unwrap_or(0).max(0) as usize,
            checks: service.checks.clone(),
        })
    }

    /// The port entry through which `listen` reaches this service.
    pub(crate) fn entry_for(&self, listen: &Listen) -> Option<usize> {
        let udp = matches!(listen, Listen::Udp { .. });
        if udp != (self.protocol == Protocol::Udp) {
            return None;
        }
        match listen {
            Listen::Http { ports, tls } => self.ports.iter().position(|p| {
                p.has_handler("http")
                    && p.has_handler("tls") == *tls
                    && ports.iter().any(|port| p.covers(*port))
            }),
            // No handler, or `tls` alone.
            Listen::Tcp { port, tls } => self.ports.iter().position(|p| {
                p.handlers.len() == usize::from(*tls)
                    && p.handlers.iter().all(|h| h.eq_ignore_ascii_case("tls"))
                    && p.covers(*port)
            }),
            Listen::Udp { port } => self.ports.iter().position(|p| p.covers(*port)),
        }
    }
}

/// A machine as routing sees it.
pub(crate) struct Backend {
    pub machine: MachineRecord,
    pub addr: Option<IpAddr>,
    pub routes: Vec<ServiceRoute>,
    pub slot: Arc<Slot>,
}

impl Backend {
    pub(crate) fn id(&self) -> &str {
        &self.machine.id
    }

    fn route_for(&self, listen: &Listen) -> Option<(usize, usize)> {
        self.routes
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.entry_for(listen).map(|e| (i, e)))
    }

    fn is_started(&self) -> bool {
        self.machine.state == MachineState::Started
    }

    /// Started, not being stopped by autostop, not failing a check.
    fn is_routable(&self) -> bool {
        self.is_started() && !self.slot.is_draining() && !self.slot.is_critical()
    }

    /// What a start would do to the machine, as the lifecycle model says.
    fn start(&self) -> Result<Transition, Refusal> {
        lifecycle::transition(self.machine.state, &Intent::start(&self.machine.config))
    }

    /// A start would run (the service accepts it), and autostop is not
    /// taking the machine down.
    fn is_startable(&self) -> bool {
        matches!(self.start(), Ok(Transition::Run(_))) && !self.slot.is_draining()
    }

    /// Whether it will become routable or startable without anyone acting
    /// (an operation is under way on it, or autostop is stopping it).
    fn is_in_transition(&self) -> bool {
        self.slot.is_draining()
            || matches!(self.start(), Err(refusal) if refusal.reason == Reason::Busy)
    }

    /// Whether autostop may consider the machine: any service with autostop.
    pub(crate) fn autostop(&self) -> Option<usize> {
        self.routes
            .iter()
            .filter(|r| r.autostop)
            .map(|r| r.min_running)
            .max()
    }
}

/// The app's machines at one moment.
pub(crate) struct Snapshot {
    pub backends: Vec<Arc<Backend>>,
    /// The started ones among them: all the supervisor's rounds look at
    /// (health checks, autostop), so a stopped fleet costs them nothing.
    pub started: Vec<Arc<Backend>>,
    fetched: Instant,
    change_count: u64,
    stale: AtomicBool,
}

/// Per-app routing state.
pub(crate) struct AppState {
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// One refresh of the machine list at a time.
    refresh: tokio::sync::Mutex<()>,
    /// One autostart at a time: requests arriving while a machine starts
    /// wait here, then find it started instead of starting another.
    start_gate: tokio::sync::Mutex<()>,
    pub(crate) waiters: Arc<Waiters>,
    /// Rotates ties between equally loaded machines.
    turn: AtomicUsize,
}

impl AppState {
    fn new() -> AppState {
        AppState {
            snapshot: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            start_gate: tokio::sync::Mutex::new(()),
            waiters: Arc::default(),
            turn: AtomicUsize::new(0),
        }
    }

    pub(crate) fn invalidate(&self) {
        if let Some(snapshot) = &*self.snapshot.read().unwrap_or_else(|p| p.into_inner()) {
            snapshot.stale.store(true, Ordering::SeqCst);
        }
    }
}

/// When [`Router::snapshot`] re-reads an app's machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reread {
    /// Always: the caller must see what the orchestrator holds now.
    Always,
    /// When [`Backends::change_count`] moved, the snapshot was invalidated
    /// or it is older than [`ProxyConfig::snapshot_max_age`] (requests).
    IfOld,
    /// Only when the change count moved or the snapshot was invalidated:
    /// the supervisor's rounds, so an idle fleet costs no store reads.
    IfChanged,
}

/// How a request names its machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Least-loaded machine, never `exclude` (fly-replay `elsewhere`).
    Any { exclude: Option<String> },
    /// One machine.
    Instance { id: String, mode: InstanceMode },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstanceMode {
    /// `fly-force-instance-id`, fly-replay `instance=`: that machine or 503;
    /// at its hard limit the request queues.
    Force,
    /// `fly-prefer-instance-id`, fly-replay `prefer_instance=`: that machine
    /// if it can take the request now, otherwise any.
    Prefer,
    /// A session pinned by the affinity cache: that machine (queueing at
    /// its hard limit, like force) unless it is gone, cordoned, failing or
    /// cannot be started; then any, and the session is pinned anew.
    Sticky,
}

/// Why no machine was chosen; the proxy answers with the status and the
/// message verbatim.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("{0}")]
    UnknownApp(String),
    /// Nothing can serve the request (no service, forced instance gone).
    #[error("{0}")]
    Unavailable(String),
    /// Every machine is at its hard limit for longer than the queue timeout.
    #[error("{0}")]
    Busy(String),
    /// The orchestrator failed.
    #[error("{0}")]
    Backend(String),
}

/// The machine a request goes to, holding one unit of its load.
pub(crate) struct Picked {
    pub backend: Arc<Backend>,
    pub route: usize,
    pub entry: usize,
    pub guard: InFlight,
}

impl Picked {
    pub(crate) fn service(&self) -> &ServiceRoute {
        &self.backend.routes[self.route]
    }

    pub(crate) fn entry(&self) -> &MachinePort {
        &self.service().ports[self.entry]
    }

    /// The port's `http_options.idle_timeout`, or `default`.
    pub(crate) fn idle_timeout(&self, default: Duration) -> Duration {
        self.entry()
            .http_options
            .as_ref()
            .and_then(|o| o.idle_timeout)
            .map(Duration::from_secs)
            .unwrap_or(default)
    }

    pub(crate) fn upstream(&self) -> Option<SocketAddr> {
        let port = self.backend.routes[self.route].internal_port;
        self.backend.addr.map(|ip| SocketAddr::new(ip, port))
    }
}

/// Routing state shared by every connection.
pub(crate) struct Router {
    pub backends: Arc<dyn Backends>,
    pub config: Arc<ProxyConfig>,
    pub epoch: Instant,
    apps: RwLock<HashMap<String, Arc<AppState>>>,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// Bound on routing rounds for one request (each round waits or starts).
const MAX_ROUNDS: usize = 10_000;

impl Router {
    pub(crate) fn new(backends: Arc<dyn Backends>, config: Arc<ProxyConfig>) -> Router {
        Router {
            backends,
            config,
            epoch: Instant::now(),
            apps: RwLock::default(),
            slots: Mutex::default(),
        }
    }

    pub(crate) fn slot(&self, id: &str) -> Option<Arc<Slot>> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Drops load records of machines no longer listed anywhere.
    pub(crate) fn retain_slots(&self, live: &HashSet<String>) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, slot| live.contains(id) || slot.load() > 0);
    }

    pub(crate) fn app_state(&self, app: &str) -> Option<Arc<AppState>> {
        self.apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            .cloned()
    }

    /// The app's machines, from the cache unless `reread` says otherwise.
    pub(crate) async fn snapshot(
        &self,
        app: &str,
        reread: Reread,
    ) -> Result<(Arc<AppState>, Arc<Snapshot>), RouteError> {
        let state = self.app_state(app);
        if let Some(state) = &state {
            if let Some(snapshot) = self.current(state, reread) {
                return Ok((state.clone(), snapshot));
            }
        }
        let state = match state {
            Some(state) => state,
            None => Arc::new(AppState::new()),
        };
        let _refresh = state.refresh.lock().await;
        if reread != Reread::Always {
            if let Some(snapshot) = self.current(&state, reread) {
                return Ok((state.clone(), snapshot));
            }
        }
        let began = Instant::now();
        // Read the counter first: a change during the listing then makes
        // the next request list again.
        let change_count = self.backends.change_count();
        let machines = self.backends.machines(app).await.map_err(|err| match err {
            BackendError::NotFound(_) => RouteError::UnknownApp(format!(
                "no app named {app:?} on this roost (requests are routed by Host: <app>.{})",
                self.config.domain
            )),
            other => RouteError::Backend(format!("cannot list the machines of app {app}: {other}")),
        })?;
        let state = {
            let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
            apps.entry(app.to_string())
                .or_insert_with(|| state.clone())
                .clone()
        };
        let backends: Vec<Arc<Backend>> = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            machines
                .into_iter()
                .filter(|m| m.state != MachineState::Destroyed)
                .map(|machine| {
                    let slot = slots
                        .entry(machine.id.clone())
                        .or_insert_with(|| Arc::new(Slot::new(state.waiters.clone(), self.epoch)))
                        .clone();
                    slot.observe_started(machine.state == MachineState::Started);
                    Arc::new(Backend {
                        addr: machine.private_ip.parse().ok(),
                        routes: machine
                            .config
                            .services
                            .iter()
                            .filter_map(ServiceRoute::from_service)
                            .collect(),
                        machine,
                        slot,
                    })
                })
                .collect()
        };
        let started = backends
            .iter()
            .filter(|b| b.is_started())
            .cloned()
            .collect();
        let snapshot = Arc::new(Snapshot {
            backends,
            started,
            fetched: Instant::now(),
            change_count,
            stale: AtomicBool::new(false),
        });
        *state.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
        tracing::debug!(
            app,
            machines = snapshot.backends.len(),
            micros = began.elapsed().as_micros() as u64,
            "proxy re-read the app's machines"
        );
        Ok((state, snapshot))
    }

    fn current(&self, state: &AppState, reread: Reread) -> Option<Arc<Snapshot>> {
        let snapshot = state
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let fresh = match reread {
            Reread::Always => false,
            Reread::IfOld => snapshot.fetched.elapsed() < self.config.snapshot_max_age,
            Reread::IfChanged => true,
        } && !snapshot.stale.load(Ordering::SeqCst)
            && snapshot.change_count == self.backends.change_count();
        fresh.then_some(snapshot)
    }

    /// Chooses the machine for a request to `app` through `listen` and takes
    /// one unit of its load. May start a machine (autostart) and wait for
    /// its port, or wait for capacity up to the queue timeout.
    pub(crate) async fn route(
        &self,
        app: &str,
        listen: &Listen,
        target: &Target,
    ) -> Result<Picked, RouteError> {
        let queue_deadline = tokio::time::Instant::now() + self.config.queue_timeout;
        let mut failed_starts: HashSet<String> = HashSet::new();
        let mut target = target.clone();
        for _ in 0..MAX_ROUNDS {
            let (state, snapshot) = self.snapshot(app, Reread::IfOld).await?;
            let candidates: Vec<(&Arc<Backend>, usize, usize)> = snapshot
                .backends
                .iter()
                .filter(|b| !b.machine.cordoned)
                .filter_map(|b| b.route_for(listen).map(|(route, entry)| (b, route, entry)))
                .collect();
            let step = match &target {
                Target::Instance { id, mode } => {
                    self.instance_step(app, &snapshot, &candidates, id, *mode, &failed_starts)
                }
                Target::Any { exclude } => self.any_step(
                    app,
                    listen,
                    &state,
                    &candidates,
                    exclude.as_deref(),
                    &failed_starts,
                ),
            };
            match step {
                Step::Picked(picked) => return Ok(picked),
                Step::Fail(err) => return Err(err),
                Step::Fallback => target = Target::Any { exclude: None },
                Step::Start(backend, route) => {
                    let _gate = state.start_gate.lock().await;
                    // Someone else may have started a machine while this
                    // request waited for the gate.
                    let (_, fresh) = self.snapshot(app, Reread::Always).await?;
                    let already = fresh
                        .backends
                        .iter()
                        .find(|b| b.id() == backend.id())
                        .is_some_and(|b| b.is_started());
                    let capacity = matches!(target, Target::Any { .. })
                        && fresh.backends.iter().any(|b| {
                            !b.machine.cordoned
                                && b.is_routable()
                                && b.route_for(listen)
                                    .is_some_and(|(r, _)| b.slot.load() < b.routes[r].soft_limit)
                        });
                    if !already && !capacity {
                        if let Err(err) = self.start(app, &backend, route).await {
                            tracing::warn!(app, machine = backend.id(), error = %err, "autostart failed");
                            failed_starts.insert(backend.id().to_string());
                        }
                    }
                    state.invalidate();
                    state.waiters.wake();
                }
                Step::Wait(why) => {
                    if tokio::time::Instant::now() >= queue_deadline {
                        return Err(RouteError::Busy(why));
                    }
                    // A wake-up can be missed between the check and the
                    // wait; polling every 100 ms bounds what that costs.
                    let until = queue_deadline
                        .min(tokio::time::Instant::now() + Duration::from_millis(100));
                    state.waiters.wait(until).await;
                }
            }
        }
        Err(RouteError::Busy(format!(
            "app {app}: gave up routing after {MAX_ROUNDS} rounds"
        )))
    }

    /// Routes a raw TCP connection or a UDP flow (`what`, for the log) of
    /// `app` to any machine. Such clients cannot be told why nothing
    /// answers, so a failure is logged, at info level (it is about the
    /// client's app, not a fault of the proxy), and gives `None`.
    pub(crate) async fn route_or_log(
        &self,
        app: &str,
        listen: &Listen,
        what: &str,
    ) -> Option<Picked> {
        match self
            .route(app, listen, &Target::Any { exclude: None })
            .await
        {
            Ok(picked) => Some(picked),
            Err(err) => {
                tracing::info!(app, service = %listen, error = %err, "{what} refused: no machine");
                None
            }
        }
    }

    fn instance_step(
        &self,
        app: &str,
        snapshot: &Snapshot,
        candidates: &[(&Arc<Backend>, usize, usize)],
        id: &str,
        mode: InstanceMode,
        failed_starts: &HashSet<String>,
    ) -> Step {
        let unavailable = |why: String| match mode {
            InstanceMode::Force => Step::Fail(RouteError::Unavailable(why)),
            InstanceMode::Prefer | InstanceMode::Sticky => Step::Fallback,
        };
        let Some(&(backend, route, entry)) = candidates.iter().find(|(b, _, _)| b.id() == id)
        else {
            let why = match snapshot.backends.iter().find(|b| b.id() == id) {
                Some(b) if b.machine.cordoned => {
                    format!("machine {id} of app {app} is cordoned: it gets no traffic")
                }
                Some(_) => {
                    format!("machine {id} of app {app} has no service for this port and handler")
                }
                None => format!("app {app} has no machine {id}"),
            };
            return unavailable(why);
        };
        let service = &backend.routes[route];
        if backend.is_routable() {
            if let Some(guard) = backend.slot.try_acquire(service.hard_limit) {
                return Step::Picked(picked(backend, route, entry, guard));
            }
            return match mode {
                InstanceMode::Prefer => Step::Fallback,
                _ => Step::Wait(format!(
                    "machine {id} of app {app} is at its concurrency hard_limit ({}) and stayed there for {:?}; try again later",
                    service.hard_limit, self.config.queue_timeout
                )),
            };
        }
        if backend.is_started() && backend.slot.is_critical() {
            return unavailable(format!(
                "machine {id} of app {app} is failing its health checks"
            ));
        }
        if backend.is_startable() && service.autostart && !failed_starts.contains(id) {
            return Step::Start(backend.clone(), route);
        }
        if backend.is_in_transition() {
            return match mode {
                InstanceMode::Prefer => Step::Fallback,
                _ => Step::Wait(format!(
                    "machine {id} of app {app} is {} and did not become available in {:?}",
                    backend.machine.state, self.config.queue_timeout
                )),
            };
        }
        let why = if failed_starts.contains(id) {
            format!("machine {id} of app {app} could not be started")
        } else if backend.is_startable() {
            format!(
                "machine {id} of app {app} is {} and its service has autostart off",
                backend.machine.state
            )
        } else {
            format!("machine {id} of app {app} is {}", backend.machine.state)
        };
        unavailable(why)
    }

    fn any_step(
        &self,
        app: &str,
        listen: &Listen,
        state: &AppState,
        candidates: &[(&Arc<Backend>, usize, usize)],
        exclude: Option<&str>,
        failed_starts: &HashSet<String>,
    ) -> Step {
        if candidates.is_empty() {
            return Step::Fail(RouteError::Unavailable(format!(
                "app {app} has no uncordoned machine with a service for {listen}"
            )));
        }
        let eligible: Vec<&(&Arc<Backend>, usize, usize)> = candidates
            .iter()
            .filter(|(b, _, _)| b.is_routable() && Some(b.id()) != exclude)
            .collect();
        // 1. The least-loaded machine below its soft limit.
        let limit_soft = |c: &(&Arc<Backend>, usize, usize)| c.0.routes[c.1].soft_limit;
        let limit_hard = |c: &(&Arc<Backend>, usize, usize)| c.0.routes[c.1].hard_limit;
        if let Some(picked) = self.least_loaded(state, &eligible, limit_soft) {
            return Step::Picked(picked);
        }
        // 2. Autostart: a stopped machine, when none has spare capacity.
        let startable = candidates.iter().find(|(b, route, _)| {
            b.is_startable()
                && b.routes[*route].autostart
                && Some(b.id()) != exclude
                && !failed_starts.contains(b.id())
        });
        if let Some((backend, route, _)) = startable {
            return Step::Start((*backend).clone(), *route);
        }
        // 3. Above the soft limit, below the hard one.
        if let Some(picked) = self.least_loaded(state, &eligible, limit_hard) {
            return Step::Picked(picked);
        }
        // 4. Queue, if anything can free up.
        let in_transition = candidates.iter().any(|(b, _, _)| b.is_in_transition());
        if eligible.is_empty() && !in_transition {
            let states: Vec<String> = candidates
                .iter()
                .map(|(b, _, _)| {
                    let why = if b.is_started() && b.slot.is_critical() {
                        "failing health checks".to_string()
                    } else if failed_starts.contains(b.id()) {
                        format!("{}, start failed", b.machine.state)
                    } else if b.is_startable() {
                        format!("{}, autostart off", b.machine.state)
                    } else if Some(b.id()) == exclude {
                        "excluded by fly-replay elsewhere".to_string()
                    } else {
                        b.machine.state.to_string()
                    };
                    format!("{} ({why})", b.id())
                })
                .collect();
            return Step::Fail(RouteError::Unavailable(format!(
                "app {app} has no machine that can take this request: {}",
                states.join(", ")
            )));
        }
        let hard: Vec<String> = eligible
            .iter()
            .map(|c| format!("{} ({})", c.0.id(), limit_hard(c)))
            .collect();
        Step::Wait(format!(
            "every started machine of app {app} is at its concurrency hard_limit [{}] and none could be started; waited {:?}, try again later",
            hard.join(", "),
            self.config.queue_timeout
        ))
    }

    fn least_loaded(
        &self,
        state: &AppState,
        eligible: &[&(&Arc<Backend>, usize, usize)],
        limit: impl Fn(&(&Arc<Backend>, usize, usize)) -> usize,
    ) -> Option<Picked> {
        // A few attempts: another request may take the last unit between
        // reading a load and acquiring it.
        for _ in 0..4 {
            let n = eligible.len();
            if n == 0 {
                return None;
            }
            let start = state.turn.fetch_add(1, Ordering::Relaxed);
            let best = (0..n)
                .map(|i| eligible[(start + i) % n])
                .filter(|c| c.0.slot.load() < limit(c))
                .min_by_key(|c| c.0.slot.load())?;
            if let Some(guard) = best.0.slot.try_acquire(limit(best)) {
                return Some(picked(best.0, best.1, best.2, guard));
            }
        }
        None
    }

    /// Starts a machine through the orchestrator and waits until its
    /// service port accepts connections. A UDP port cannot be probed
    /// without handing the program a datagram it did not ask for, so for a
    /// UDP service the wait ends with the orchestrator's start; a datagram
    /// that arrives before the program binds is answered by port
    /// unreachable, which ends its flow (udp.rs), and the client's next
    /// datagram is routed again.
    async fn start(&self, app: &str, backend: &Backend, route: usize) -> Result<(), String> {
        let id = backend.id();
        let began = Instant::now();
        let deadline = tokio::time::Instant::now() + self.config.start_timeout;
        tracing::info!(
            app,
            machine = id,
            "autostart: starting machine for a request"
        );
        match tokio::time::timeout_at(deadline, self.backends.start(app, id)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(err.to_string()),
            Err(_) => {
                return Err(format!(
                    "not started within {:?}",
                    self.config.start_timeout
                ))
            }
        }
        let addr = backend
            .addr
            .map(|ip| SocketAddr::new(ip, backend.routes[route].internal_port))
            .ok_or_else(|| format!("machine {id} has no private address"))?;
        if backend.routes[route].protocol == Protocol::Tcp {
            wait_for_port(addr, deadline).await?;
        }
        tracing::info!(
            app,
            machine = id,
            elapsed_ms = began.elapsed().as_millis() as u64,
            "autostart: machine ready"
        );
        Ok(())
    }
}

/// Polls until `addr` accepts a TCP connection.
pub(crate) async fn wait_for_port(
    addr: SocketAddr,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let mut pause = Duration::from_millis(1);
    loop {
        let attempt = tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await;
        match attempt {
            Ok(Ok(_)) => return Ok(()),
            Err(_) => return Err(format!("port {addr} did not accept connections in time")),
            Ok(Err(err)) if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "port {addr} did not accept connections in time: {err}"
                ))
            }
            Ok(Err(_)) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

fn picked(backend: &Arc<Backend>, route: usize, entry: usize, guard: InFlight) -> Picked {
    Picked {
        backend: backend.clone(),
        route,
        entry,
        guard,
    }
}

enum Step {
    Picked(Picked),
    Fail(RouteError),
    /// Preferred/sticky instance unavailable: route to any machine.
    Fallback,
    Start(Arc<Backend>, usize),
    Wait(String),
}
