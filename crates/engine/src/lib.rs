//! roost's one durable-operation engine, for machines and volumes alike.
//!
//! An operation is a plan from the lifecycle model (an
//! [`Operation`]): a list of idempotent steps. The engine records the plan
//! in an [`OperationLog`] together with the subject's transitional record
//! before the first step runs, records the index of the next step after
//! each one, and ends the operation in the same transaction as the
//! subject's settled record. A process killed anywhere therefore leaves an
//! operation that the next process resumes ([`Engine::run`] from the
//! recorded step) at the step that was under way; because each step checks
//! the world before it acts, running it twice is harmless. A failed step
//! runs the plan's compensation (best effort) and ends the operation with
//! the subject's failure record.
//!
//! The engine knows neither machines, volumes nor SQL: a [`Subject`] runs
//! the steps and keeps its record, an [`OperationLog`] writes that record
//! with the operation. A new kind of subject (a bucket, a second host's
//! machine) is a `Subject` and a log for it; a new operation is a plan in
//! the lifecycle model.
//!
//! `ROOST_CRASH_AT=<op>:<step>` makes the process SIGKILL itself right
//! after that step's action and before its progress is recorded, the worst
//! moment, so that crash tests can stop it at every step of every plan
//! ([`Operation::crash_points`]).

use roost_lifecycle::{Operation, StepName};
use std::future::Future;

/// Environment variable naming the crash point: `<op>:<step>`, e.g.
/// `start:run` or `volume_extend:grow_filesystem`.
pub const CRASH_AT_ENV: &str = "ROOST_CRASH_AT";

/// An operation's id in its log.
pub type OpId = i64;

/// A recorded operation: its id and the index of the step to run next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged {
    pub id: OpId,
    pub next_step: usize,
}

/// Where operations on subjects `S` are recorded. Each call is one
/// transaction: a crash never separates an operation's start or end from
/// the subject's record.
pub trait OperationLog<S: Subject> {
    type Error: std::fmt::Display;

    /// Records `plan` with `subject`'s transitional record.
    fn begin(&self, subject: &S, plan: &S::Plan) -> Result<OpId, Self::Error>;

    /// Records that the step before `next_step` is done.
    fn advance(&self, op: OpId, next_step: usize) -> Result<(), Self::Error>;

    /// Deletes the operation and writes `subject`'s settled or failed record.
    fn finish(&self, op: OpId, subject: &S) -> Result<(), Self::Error>;
}

/// The side of one operation that knows its subject: runs the steps on the
/// host and keeps the record the log writes.
pub trait Subject: Send {
    type Plan: Operation;
    type Error: std::fmt::Display + Send;

    /// The subject's id, for logs.
    fn id(&self) -> &str;

    /// The record takes the state the plan shows before its first step.
    fn begin(&mut self, plan: &Self::Plan);

    /// Called before `step` runs (a machine shows a state per step).
    fn enter(
        &mut self,
        _plan: &Self::Plan,
        _step: <Self::Plan as Operation>::Step,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        async { Ok(()) }
    }

    /// Runs one step (of the plan or of its compensation).
    fn run(
        &mut self,
        plan: &Self::Plan,
        step: <Self::Plan as Operation>::Step,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Every step ran: the record takes the settled state.
    fn settle(&mut self, plan: &Self::Plan);

    /// `step` failed with `error` and the compensation ran: the record
    /// takes the failure state.
    fn fail(
        &mut self,
        plan: &Self::Plan,
        step: <Self::Plan as Operation>::Step,
        error: &Self::Error,
    );
}

/// Runs operations; holds the crash point, if any.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    crash_at: Option<String>,
}

impl Engine {
    /// An engine that kills the process at `crash_at` (`<op>:<step>`).
    pub fn new(crash_at: Option<String>) -> Engine {
        Engine { crash_at }
    }

    /// Records `plan` for `subject` and runs it to the end. The caller
    /// holds the subject's lock.
    pub async fn start<S, L>(
        &self,
        log: &L,
        subject: &mut S,
        plan: &S::Plan,
    ) -> Result<(), S::Error>
    where
        S: Subject,
        L: OperationLog<S>,
        S::Error: From<L::Error>,
    {
        subject.begin(plan);
        let id = log.begin(subject, plan)?;
        self.run(log, subject, plan, Logged { id, next_step: 0 })
            .await
    }

    /// Runs a recorded operation from its next step to the end: one just
    /// begun, or one a previous process left unfinished. The caller holds
    /// the subject's lock.
    pub async fn run<S, L>(
        &self,
        log: &L,
        subject: &mut S,
        plan: &S::Plan,
        op: Logged,
    ) -> Result<(), S::Error>
    where
        S: Subject,
        L: OperationLog<S>,
        S::Error: From<L::Error>,
    {
        for (index, step) in plan.steps().iter().copied().enumerate().skip(op.next_step) {
            subject.enter(plan, step).await?;
            if let Err(err) = subject.run(plan, step).await {
                tracing::error!(subject = subject.id(), op = plan.kind(), step = step.name(), error = %err, "operation step failed");
                self.fail(log, subject, plan, op.id, step, &err).await;
                return Err(err);
            }
            self.crash_if_asked(plan.kind(), step.name());
            log.advance(op.id, index + 1)?;
        }
        subject.settle(plan);
        log.finish(op.id, subject)?;
        tracing::debug!(subject = subject.id(), op = plan.kind(), "operation done");
        Ok(())
    }

    /// A step failed: take down what it may have left, record the failure
    /// and close the operation, so nothing half-done stays behind.
    async fn fail<S, L>(
        &self,
        log: &L,
        subject: &mut S,
        plan: &S::Plan,
        op: OpId,
        failed: <S::Plan as Operation>::Step,
        err: &S::Error,
    ) where
        S: Subject,
        L: OperationLog<S>,
    {
        for step in plan.compensation().iter().copied() {
            if let Err(cleanup) = subject.run(plan, step).await {
                tracing::error!(subject = subject.id(), step = step.name(), error = %cleanup, "cleanup after a failed step failed");
            }
        }
        subject.fail(plan, failed, err);
        if let Err(log_err) = log.finish(op, subject) {
            tracing::error!(subject = subject.id(), error = %log_err, "could not record the failed operation; it is resumed at the next start");
        }
    }

    /// Kills the process (SIGKILL, no cleanup) if `kind:step` is the crash point.
    fn crash_if_asked(&self, kind: &str, step: &str) {
        let Some(point) = self.crash_at.as_deref() else {
            return;
        };
        if point.split_once(':') == Some((kind, step)) {
            tracing::error!(point, "{CRASH_AT_ENV} reached: killing the process");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests;
