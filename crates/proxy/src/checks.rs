//! Health checks: TCP connects and HTTP requests to started machines, run
//! on each check's interval by the supervisor.
//!
//! Service checks (`services[].checks`) gate routing: a machine whose
//! latest result for one of them is `critical` gets no new traffic until it
//! passes again. Machine checks (`config.checks`) are only reported. Both
//! land in the machine's `checks` through [`Backends::report_checks`].
//! Defaults (Fly's): interval 15 s, timeout 2 s, no grace period; a
//! service check's port is the service's `internal_port`, an HTTP check
//! sends `GET /`, and 2xx/3xx pass.

use crate::backends::Backends;
use crate::load::{HEALTH_CRITICAL, HEALTH_PASSING, HEALTH_UNKNOWN};
use crate::route::Backend;
use bytes::Bytes;
use http_body_util::Empty;
use roost_types::{CheckStatus, MachineCheck};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest output kept from a failing check.
const MAX_OUTPUT: usize = 512;

/// One check of one machine, resolved.
#[derive(Debug, Clone)]
pub(crate) struct CheckSpec {
    pub name: String,
    pub http: Option<HttpCheck>,
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    pub grace: Duration,
    /// Service checks gate routing; machine checks do not.
    pub gating: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct HttpCheck {
    pub method: http::Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

fn spec(name: String, check: &MachineCheck, port: Option<u16>, gating: bool) -> Option<CheckSpec> {
    let duration = |text: &Option<String>, default: Duration| {
        text.as_deref()
            .and_then(roost_types::parse_duration)
            .unwrap_or(default)
    };
    let port = check.port.and_then(|p| u16::try_from(p).ok()).or(port)?;
    let http = match check.kind.as_deref().unwrap_or("tcp") {
        "http" => Some(HttpCheck {
            method: check
                .method
                .as_deref()
                .and_then(|m| m.to_ascii_uppercase().parse().ok())
                .unwrap_or(http::Method::GET),
            path: check.path.clone().unwrap_or_else(|| "/".into()),
            headers: check
                .headers
                .iter()
                .flat_map(|h| h.values.iter().map(|v| (h.name.clone(), v.clone())))
                .collect(),
        }),
        _ => None,
    };
    Some(CheckSpec {
        name,
        http,
        port,
        interval: duration(&check.interval, DEFAULT_INTERVAL).max(Duration::from_millis(100)),
        timeout: duration(&check.timeout, DEFAULT_TIMEOUT).max(Duration::from_millis(10)),
        grace: duration(&check.grace_period, Duration::ZERO),
        gating,
    })
}

/// Every check of a machine: service checks named like Fly's
/// (`servicecheck-00-http-8080`), then `config.checks` by their keys.
pub(crate) fn specs(backend: &Backend) -> Vec<CheckSpec> {
    let mut specs = Vec::new();
    for route in &backend.routes {
        for check in &route.checks {
            let kind = check.kind.as_deref().unwrap_or("tcp");
            let port = check
                .port
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(route.internal_port);
            let name = format!("servicecheck-{:02}-{kind}-{port}", specs.len());
            specs.extend(spec(name, check, Some(route.internal_port), true));
        }
    }
    for (name, check) in &backend.machine.config.checks {
        specs.extend(spec(name.clone(), check, None, false));
    }
    specs
}

/// Runs one check; `Ok(output)` passes, `Err(output)` is critical.
pub(crate) async fn run(spec: &CheckSpec, ip: IpAddr) -> Result<String, String> {
    let addr = SocketAddr::new(ip, spec.port);
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let Some(check) = &spec.http else {
            return Ok(format!("connected to {addr}"));
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut request = http::Request::builder()
            .method(check.method.clone())
            .uri(&check.path)
            .header(http::header::HOST, addr.to_string())
            .header(http::header::USER_AGENT, "roost-proxy health check");
        for (name, value) in &check.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("bad check request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{} {} on {addr}: {e}", check.method, check.path))?;
        let status = response.status();
        let line = format!("{} {} on {addr}: {status}", check.method, check.path);
        if status.is_success() || status.is_redirection() {
            Ok(line)
        } else {
            Err(line)
        }
    };
    match tokio::time::timeout(spec.timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer from {addr} within {:?}", spec.timeout)),
    }
}

struct Record {
    spec: CheckSpec,
    next_due: Instant,
    running: bool,
    status: Option<CheckStatus>,
}

struct MachineChecks {
    app: String,
    records: BTreeMap<String, Record>,
    reported: Vec<CheckStatus>,
}

/// Check state of every started machine.
pub(crate) struct Checker {
    machines: Mutex<HashMap<String, MachineChecks>>,
    /// The supervisor's wake-up ([`crate::Shared::supervisor_wake`]),
    /// sent when a check ends: its next run must then be scheduled.
    ended: tokio::sync::watch::Sender<()>,
}

impl Checker {
    pub(crate) fn new(ended: tokio::sync::watch::Sender<()>) -> Checker {
        Checker {
            machines: Mutex::default(),
            ended,
        }
    }

    /// Starts the checks of `backends` that are due; forgets machines that
    /// are no longer started. Called by the supervisor on each round.
    /// Returns when the next of these checks that is not running falls
    /// due: the round that must come then (a running one reports its end
    /// through the supervisor's wake-up).
    pub(crate) fn schedule(
        self: &Arc<Self>,
        reporter: &Arc<dyn Backends>,
        app: &str,
        backends: &[Arc<Backend>],
    ) -> Option<Instant> {
        let now = Instant::now();
        let mut next_due: Option<Instant> = None;
        let mut due = Vec::new();
        let mut cleared = Vec::new();
        {
            let mut machines = self.machines.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = HashSet::new();
            for backend in backends {
                let id = backend.id().to_string();
                let (Some(ip), true) = (
                    backend.addr,
                    backend.machine.state == roost_types::MachineState::Started,
                ) else {
                    continue;
                };
                let specs = specs(backend);
                if specs.is_empty() {
                    continue;
                }
                seen.insert(id.clone());
                let age = backend.slot.started_age().unwrap_or_default();
                let entry = machines.entry(id.clone()).or_insert_with(|| MachineChecks {
                    app: app.to_string(),
                    records: BTreeMap::new(),
                    reported: Vec::new(),
                });
                entry
                    .records
                    .retain(|name, _| specs.iter().any(|s| &s.name == name));
                for spec in specs {
                    let record = entry
                        .records
                        .entry(spec.name.clone())
                        .or_insert_with(|| Record {
                            next_due: now + spec.grace.saturating_sub(age),
                            running: false,
                            status: None,
                            spec: spec.clone(),
                        });
                    record.spec = spec;
                    if record.running {
                        continue;
                    }
                    if now >= record.next_due {
                        record.running = true;
                        due.push((id.clone(), ip, record.spec.clone()));
                    } else {
                        next_due =
                            Some(next_due.map_or(record.next_due, |t| t.min(record.next_due)));
                    }
                }
            }
            machines.retain(|id, checks| {
                let keep = checks.app != app || seen.contains(id);
                if !keep {
                    cleared.push((checks.app.clone(), id.clone(), !checks.reported.is_empty()));
                }
                keep
            });
        }
        for (app, id, reported) in cleared {
            if let Some(backend) = backends.iter().find(|b| b.id() == id) {
                backend.slot.health.store(HEALTH_UNKNOWN, Ordering::SeqCst);
            }
            if reported {
                reporter.report_checks(&app, &id, Vec::new());
            }
        }
        for (id, ip, spec) in due {
            let checker = self.clone();
            let reporter = reporter.clone();
            let slot = backends
                .iter()
                .find(|b| b.id() == id)
                .map(|b| b.slot.clone());
            tokio::spawn(async move {
                let result = run(&spec, ip).await;
                if let Err(output) = &result {
                    tracing::debug!(machine = %id, check = %spec.name, %output, "health check failing");
                }
                let status = CheckStatus {
                    name: spec.name.clone(),
                    status: if result.is_ok() {
                        "passing"
                    } else {
                        "critical"
                    }
                    .into(),
                    output: truncate(result.unwrap_or_else(|e| e)),
                    updated_at: rfc3339_now(),
                };
                if let Some(slot) = slot {
                    checker.record(&reporter, &id, &spec, status, &slot);
                }
                checker.ended.send_replace(());
            });
        }
        next_due
    }

    fn record(
        &self,
        reporter: &Arc<dyn Backends>,
        id: &str,
        spec: &CheckSpec,
        status: CheckStatus,
        slot: &crate::load::Slot,
    ) {
        let report = {
            let mut machines = self.machines.lock().unwrap_or_else(|p| p.into_inner());
            let Some(checks) = machines.get_mut(id) else {
                return;
            };
            let Some(record) = checks.records.get_mut(&spec.name) else {
                return;
            };
            record.running = false;
            record.next_due = Instant::now() + spec.interval;
            record.status = Some(status);
            let critical = checks.records.values().any(|r| {
                r.spec.gating && r.status.as_ref().is_some_and(|s| s.status == "critical")
            });
            let any_gating = checks
                .records
                .values()
                .any(|r| r.spec.gating && r.status.is_some());
            let health = match (critical, any_gating) {
                (true, _) => HEALTH_CRITICAL,
                (false, true) => HEALTH_PASSING,
                (false, false) => HEALTH_UNKNOWN,
            };
            if slot.health.swap(health, Ordering::SeqCst) != health {
                tracing::info!(machine = %id, healthy = !critical, "machine health changed");
            }
            let current: Vec<CheckStatus> = checks
                .records
                .values()
                .filter_map(|r| r.status.clone())
                .collect();
            // Report when a status or output changes; timestamps alone do not.
            let changed = current.len() != checks.reported.len()
                || current
                    .iter()
                    .zip(&checks.reported)
                    .any(|(a, b)| a.name != b.name || a.status != b.status || a.output != b.output);
            if !changed {
                return;
            }
            checks.reported = current.clone();
            (checks.app.clone(), current)
        };
        reporter.report_checks(&report.0, id, report.1);
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// RFC 3339 UTC time (seconds), without a date library.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_shape() {
        let now = super::rfc3339_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }
}
