//! Why an intent is refused, worded for the robot or human who asked.

use crate::MachineState;

/// Why a transition is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The subject is destroyed: nothing can be done with it any more.
    Gone,
    /// Another operation is under way; the intent may be allowed once it
    /// settles.
    Busy,
    /// The subject rests in a state the intent is not allowed from.
    WrongState,
    /// A destroy of a started machine, which needs `force`.
    NeedsForce,
}

/// A refused intent: the state it met and the states it is allowed from.
///
/// Its `Display` is a neutral sentence about the subject (it names no
/// command of any front end), to be prefixed by the subject's name, e.g.
/// `machine 1234 ` + "is stopped and cannot be restarted: ...".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What is refused: "machine" or "volume".
    pub subject: &'static str,
    /// The state the subject is in, as its name (`stopped`, `extending`).
    pub state: &'static str,
    pub reason: Reason,
    /// The states the intent is allowed from.
    pub allowed: Vec<&'static str>,
    /// What the text says the intent would do: "started", "exec".
    pub(crate) wanted: &'static str,
    /// How the sentence is shaped for this intent.
    pub(crate) wording: Wording,
}

/// The shapes refusal sentences take (kept as they were before the model
/// existed, since robots and tests read them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wording {
    /// "is stopping and cannot be started: ..."
    CannotBe,
    /// "is stopped; exec needs a started machine: start it first"
    NeedsStarted,
    /// "is stopped; only a started machine can be restarted (use start
    /// instead)", with the hint in parentheses if any.
    OnlyAllowed(Option<&'static str>),
    /// "is destroyed and its files are gone; create a new machine"
    FilesGone,
}

impl Refusal {
    pub(crate) fn new(
        subject: &'static str,
        state: &'static str,
        reason: Reason,
        allowed: &[&'static str],
        wanted: &'static str,
        wording: Wording,
    ) -> Refusal {
        Refusal {
            subject,
            state,
            reason,
            allowed: allowed.to_vec(),
            wanted,
            wording,
        }
    }

    /// A refusal of an intent on a subject in `state`, which is gone when
    /// `destroyed` and busy while `transitional`.
    pub(crate) fn in_state(
        subject: &'static str,
        state: &'static str,
        destroyed: bool,
        transitional: bool,
        allowed: Vec<&'static str>,
        wanted: &'static str,
        wording: Wording,
    ) -> Refusal {
        let reason = if destroyed {
            Reason::Gone
        } else if transitional {
            Reason::Busy
        } else {
            Reason::WrongState
        };
        Refusal::new(subject, state, reason, &allowed, wanted, wording)
    }

    /// A refusal of an intent on a machine in `state`.
    pub(crate) fn machine(
        state: MachineState,
        allowed: &[MachineState],
        wanted: &'static str,
        wording: Wording,
    ) -> Refusal {
        Refusal::in_state(
            "machine",
            state.as_str(),
            state == MachineState::Destroyed,
            state.is_transitional(),
            allowed.iter().map(|s| s.as_str()).collect(),
            wanted,
            wording,
        )
    }
}

/// "a", "a or b", "a, b or c".
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [only] => (*only).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (subject, state, wanted) = (self.subject, self.state, self.wanted);
        match (self.reason, self.wording) {
            (Reason::NeedsForce, _) => {
                write!(f, "is {state}: stop it first, or destroy with force=true")
            }
            (Reason::Gone, Wording::FilesGone) => {
                write!(f, "is {state} and its files are gone; create a new machine")
            }
            (Reason::Gone, _) => write!(
                f,
                "is {state} and cannot be {wanted}: it is gone; create a new {subject}"
            ),
            (Reason::Busy, _) => write!(
                f,
                "is {state} and cannot be {wanted}: another operation is under way; wait for it and retry"
            ),
            (Reason::WrongState, _) if self.allowed.is_empty() => {
                write!(f, "is {state} and cannot be {wanted}")
            }
            (Reason::WrongState, Wording::NeedsStarted) => {
                write!(f, "is {state}; {wanted} needs a started machine: start it first")
            }
            (Reason::WrongState, Wording::OnlyAllowed(hint)) => {
                let allowed = one_of(&self.allowed);
                write!(f, "is {state}; only a {allowed} {subject} can be {wanted}")?;
                match hint {
                    Some(hint) => write!(f, " ({hint})"),
                    None => Ok(()),
                }
            }
            (Reason::WrongState, _) => write!(
                f,
                "is {state} and cannot be {wanted}: that is allowed when it is {}",
                one_of(&self.allowed)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::one_of;

    #[test]
    fn lists_read_as_prose() {
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&["a", "b"]), "a or b");
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
        assert_eq!(one_of(&[]), "");
    }
}
