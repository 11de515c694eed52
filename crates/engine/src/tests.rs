//! The engine over a log kept in a JSON file and a subject whose steps
//! append to a file, so that a crash in a child process can be checked and
//! resumed by the parent.

use super::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Leg {
    A,
    B,
    C,
    Undo,
}

impl StepName for Leg {
    fn name(self) -> &'static str {
        match self {
            Leg::A => "a",
            Leg::B => "b",
            Leg::C => "c",
            Leg::Undo => "undo",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Walk {
    steps: Vec<Leg>,
}

impl Operation for Walk {
    type Step = Leg;
    fn kind(&self) -> &'static str {
        "walk"
    }
    fn steps(&self) -> &[Leg] {
        &self.steps
    }
    fn compensation(&self) -> &'static [Leg] {
        &[Leg::Undo]
    }
}

fn walk() -> Walk {
    Walk {
        steps: vec![Leg::A, Leg::B, Leg::C],
    }
}

/// A subject whose record is a state name and whose steps append their
/// names to `actions`.
struct Trail {
    state: &'static str,
    actions: PathBuf,
    fail_at: Option<Leg>,
}

impl Trail {
    fn new(dir: &Path) -> Trail {
        Trail {
            state: "new",
            actions: dir.join("actions"),
            fail_at: None,
        }
    }

    fn actions(&self) -> String {
        std::fs::read_to_string(&self.actions).unwrap_or_default()
    }
}

impl Subject for Trail {
    type Plan = Walk;
    type Error = String;

    fn id(&self) -> &str {
        "trail"
    }

    fn begin(&mut self, _plan: &Walk) {
        self.state = "walking";
    }

    async fn run(&mut self, _plan: &Walk, step: Leg) -> Result<(), String> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.actions)
            .map_err(|e| e.to_string())?;
        write!(file, "{}.", step.name()).map_err(|e| e.to_string())?;
        match self.fail_at {
            Some(leg) if leg == step => Err(format!("{} broke", step.name())),
            _ => Ok(()),
        }
    }

    fn settle(&mut self, _plan: &Walk) {
        self.state = "arrived";
    }

    fn fail(&mut self, _plan: &Walk, _step: Leg, _error: &String) {
        self.state = "failed";
    }
}

/// The log's file: unfinished operations and the subject's last record.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    ops: Vec<(OpId, usize, Walk)>,
    record: String,
}

struct FileLog(PathBuf);

impl FileLog {
    fn read(&self) -> Ledger {
        std::fs::read(&self.0)
            .map(|bytes| serde_json::from_slice(&bytes).expect("ledger"))
            .unwrap_or_default()
    }

    fn write(&self, ledger: &Ledger) -> Result<(), String> {
        std::fs::write(&self.0, serde_json::to_vec(ledger).expect("json"))
            .map_err(|e| e.to_string())
    }
}

impl OperationLog<Trail> for FileLog {
    type Error = String;

    fn begin(&self, subject: &Trail, plan: &Walk) -> Result<OpId, String> {
        let mut ledger = self.read();
        let id = ledger.ops.len() as OpId + 1;
        ledger.ops.push((id, 0, plan.clone()));
        ledger.record = subject.state.into();
        self.write(&ledger)?;
        Ok(id)
    }

    fn advance(&self, op: OpId, next_step: usize) -> Result<(), String> {
        let mut ledger = self.read();
        for row in ledger.ops.iter_mut().filter(|row| row.0 == op) {
            row.1 = next_step;
        }
        self.write(&ledger)
    }

    fn finish(&self, op: OpId, subject: &Trail) -> Result<(), String> {
        let mut ledger = self.read();
        ledger.ops.retain(|row| row.0 != op);
        ledger.record = subject.state.into();
        self.write(&ledger)
    }
}

#[tokio::test]
async fn every_step_runs_in_order_and_the_end_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog(dir.path().join("log"));
    let mut trail = Trail::new(dir.path());
    Engine::default()
        .start(&log, &mut trail, &walk())
        .await
        .unwrap();
    assert_eq!(trail.actions(), "a.b.c.");
    let ledger = log.read();
    assert!(ledger.ops.is_empty());
    assert_eq!(ledger.record, "arrived");
}

#[tokio::test]
async fn a_failed_step_is_compensated_and_the_failure_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog(dir.path().join("log"));
    let mut trail = Trail::new(dir.path());
    trail.fail_at = Some(Leg::B);
    let err = Engine::default()
        .start(&log, &mut trail, &walk())
        .await
        .unwrap_err();
    assert_eq!(err, "b broke");
    assert_eq!(trail.actions(), "a.b.undo.");
    let ledger = log.read();
    assert!(ledger.ops.is_empty());
    assert_eq!(ledger.record, "failed");
}

#[tokio::test]
async fn a_crash_point_elsewhere_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog(dir.path().join("log"));
    let mut trail = Trail::new(dir.path());
    for point in ["walk", "walk:d", "run:b", "walk:b:c"] {
        Engine::new(Some(point.into()))
            .start(&log, &mut trail, &walk())
            .await
            .unwrap();
    }
    assert_eq!(trail.actions(), "a.b.c.".repeat(4));
}

/// Set in the child process that is to crash, to its temp dir.
const CHILD_DIR: &str = "ROOST_ENGINE_TEST_CRASH_DIR";

#[tokio::test]
async fn a_crash_after_a_step_is_resumed_at_that_step() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let dir = PathBuf::from(dir);
        let log = FileLog(dir.join("log"));
        let _ = Engine::new(Some("walk:b".into()))
            .start(&log, &mut Trail::new(&dir), &walk())
            .await;
        unreachable!("the crash point kills the process");
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::a_crash_after_a_step_is_resumed_at_that_step",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status}");

    let log = FileLog(dir.path().join("log"));
    let mut trail = Trail::new(dir.path());
    // Step b ran, but its end was never recorded: b is next.
    assert_eq!(trail.actions(), "a.b.");
    let ledger = log.read();
    assert_eq!(ledger.record, "walking");
    let [(id, next_step, plan)] = &ledger.ops[..] else {
        panic!("one unfinished operation: {ledger:?}");
    };
    assert_eq!(*next_step, 1);
    Engine::default()
        .run(
            &log,
            &mut trail,
            plan,
            Logged {
                id: *id,
                next_step: *next_step,
            },
        )
        .await
        .unwrap();
    assert_eq!(trail.actions(), "a.b.b.c.");
    let ledger = log.read();
    assert!(ledger.ops.is_empty());
    assert_eq!(ledger.record, "arrived");
}
