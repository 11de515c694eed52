//! What the durable-operation engine needs of a plan, whatever it plans
//! for (a machine or a volume).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// One idempotent unit of an operation: running it twice leaves the host
/// as running it once, so an operation interrupted by a crash can resume
/// at the step that was under way.
pub trait StepName: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    /// The step's name in logs, events and crash points.
    fn name(self) -> &'static str;
}

/// A planned operation, as the engine records, runs and resumes it.
pub trait Operation: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    type Step: StepName;

    /// The operation's name in events, logs and crash points
    /// (`start`, `volume_fork`).
    fn kind(&self) -> &'static str;

    /// The steps, in order.
    fn steps(&self) -> &[Self::Step];

    /// The steps that take down what a failed step may have left, run best
    /// effort before the failure is recorded.
    fn compensation(&self) -> &'static [Self::Step];

    /// `ROOST_CRASH_AT` values that stop the process right after each step
    /// (`start:run`): a crash test crashes at every one of them.
    fn crash_points(&self) -> Vec<String> {
        self.steps()
            .iter()
            .map(|step| format!("{}:{}", self.kind(), step.name()))
            .collect()
    }
}

/// What an allowed intent does; `P` is the plan of the subject's
/// operations.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition<P = crate::MachinePlan> {
    /// Run this plan as a durable operation.
    Run(P),
    /// The subject is already where the intent would take it.
    Unchanged,
    /// The call proceeds on the subject as it is, with no operation.
    Proceed,
}
