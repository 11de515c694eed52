//! roost's lifecycle model: which states a machine can be in, and what may
//! happen to it next. Pure: no I/O, no clock, no
//! root, so every rule here is unit-tested on its own.
//!
//! The model has two parts:
//! - **states and intents**: [`MachineState`] (Fly's vocabulary, from
//!   `roost-types`) and [`VolumeState`]; an [`Intent`] or [`VolumeIntent`]
//!   is what a caller or the platform asks for.
//! - **one transition function per subject**, [`transition`] for machines
//!   and [`volume::transition`] for volumes: from a state and an intent to
//!   a plan of idempotent steps, a call that may proceed without a plan,
//!   or a [`Refusal`] that names the states the intent is allowed from.
//!
//! Every caller decides through these functions: the service before it
//! acts, the edge proxy's routing predicates, recovery, and the crash
//! tests, which take their crash points from the plans.
//!
//! A new capability is a new intent and, where it changes the host, new
//! steps: a suspend is `Intent::Suspend` with freeze or checkpoint steps
//! settling in `suspended`, a checkpoint or fork adds intents whose plans
//! copy the machine's upper dir and volumes, and an exec that starts a
//! stopped machine first is an exec intent whose plan is the start steps.
//! The [`Operation`] trait is all the durable engine needs of a plan.
//!
//! What is kept of a machine is a [`MachineRecord`], of a volume a
//! [`VolumeRecord`] and of a snapshot a [`SnapshotRecord`]: roost's own
//! records, not the Fly wire types; each one's `into_view` builds its wire
//! view, the one conversion every front end's answer goes through.
//!
//! A service call also has a [`Caller`]: who asks, with which [`Rights`].
//! [`Caller::may`] is the one check every operation of the service passes
//! before it acts; what a right covers is listed at [`Right`].

mod caller;
mod machine;
mod operation;
mod record;
mod refusal;
pub mod volume;

pub use caller::{Caller, Forbidden, Right, Rights, Scope, Target, Who};
pub use machine::{
    restart_backoff, transition, AfterExit, Intent, MachinePlan, OpKind, Source, Step, StopOptions,
    Update, WAITABLE,
};
pub use operation::{Operation, StepName, Transition};
pub use record::{AppRecord, MachineRecord, Shown, SnapshotRecord, VolumeRecord, VolumeShown};
pub use refusal::{Reason, Refusal};
pub use roost_types::MachineState;
pub use volume::{VolumeIntent, VolumeOpKind, VolumePlan, VolumeSource, VolumeState, VolumeStep};
