use super::*;
use crate::Reason;

/// The outcome of a transition, reduced to what the table below states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Runs a plan of this kind, settling in this state.
    Runs(VolumeOpKind, VolumeState),
    Proceeds,
    Refused(Reason),
}

use Outcome::{Proceeds, Refused, Runs};

fn outcome(state: VolumeState, intent: VolumeIntent) -> Outcome {
    match transition(state, intent) {
        Ok(Transition::Run(plan)) => Runs(plan.kind, plan.settle()),
        Ok(Transition::Unchanged) => unreachable!("no volume intent is ever a no-op"),
        Ok(Transition::Proceed) => Proceeds,
        Err(refusal) => Refused(refusal.reason),
    }
}

const INTENTS: [VolumeIntent; 6] = [
    VolumeIntent::Extend,
    VolumeIntent::Snapshot,
    VolumeIntent::Destroy,
    VolumeIntent::Mount,
    VolumeIntent::Fork,
    VolumeIntent::Edit,
];

/// The expected outcome of every state × intent pair, written out by hand
/// so that a change to the rules shows up here as a deliberate edit.
fn expected(state: VolumeState, intent: VolumeIntent) -> Outcome {
    use VolumeIntent as I;
    use VolumeOpKind as K;
    match (state, intent) {
        (V::Destroyed, _) => Refused(Reason::Gone),
        (V::Created, I::Extend) => Runs(K::Extend, V::Created),
        (V::Created, I::Snapshot) => Runs(K::Snapshot, V::Created),
        (V::Created, I::Destroy) => Runs(K::Destroy, V::Destroyed),
        (V::Created, I::Mount | I::Fork | I::Edit) => Proceeds,
        // A machine keeps its volume while the volume grows.
        (V::Extending, I::Mount) => Proceeds,
        (
            V::Creating | V::Restoring | V::Hydrating | V::Extending | V::Destroying,
            I::Extend | I::Snapshot | I::Destroy | I::Mount | I::Fork | I::Edit,
        ) => Refused(Reason::Busy),
    }
}

#[test]
fn every_state_and_intent_pair_follows_the_table() {
    for state in VolumeState::ALL {
        for intent in INTENTS {
            assert_eq!(
                outcome(state, intent),
                expected(state, intent),
                "{state} x {intent:?}"
            );
        }
    }
}

#[test]
fn refusals_name_the_state_and_never_a_command() {
    for state in VolumeState::ALL {
        for intent in INTENTS {
            let Err(refusal) = transition(state, intent) else {
                continue;
            };
            let text = refusal.to_string();
            assert!(text.starts_with(&format!("is {state}")), "{text}");
            assert!(text.contains(intent.wanted()), "{text}");
            assert!(!text.contains("roost "), "{text}");
            assert_eq!(refusal.subject, "volume");
        }
    }
    let text = |state, intent| transition(state, intent).unwrap_err().to_string();
    assert_eq!(
        text(V::Extending, VolumeIntent::Snapshot),
        "is extending and cannot be snapshotted: another operation is under way; wait for it and retry"
    );
    assert_eq!(
        text(V::Destroyed, VolumeIntent::Mount),
        "is destroyed and cannot be mounted: it is gone; create a new volume"
    );
    assert_eq!(
        transition(V::Creating, VolumeIntent::Mount)
            .unwrap_err()
            .allowed,
        ["created", "extending"]
    );
}

#[test]
fn states_read_back_from_their_names() {
    for state in VolumeState::ALL {
        assert_eq!(VolumeState::parse(state.as_str()), Some(state));
        assert_eq!(
            state.is_transitional(),
            !matches!(state, V::Created | V::Destroyed)
        );
    }
    assert_eq!(VolumeState::parse("pending"), None);
}

#[test]
fn every_kind_has_one_step_and_builds_are_undone_on_failure() {
    let gib = 1 << 30;
    let ext4 = || "ext4".to_string();
    let create = VolumePlan::build(VolumeSource::Empty { fstype: ext4() }, gib);
    assert_eq!(create.crash_points(), ["volume_create:allocate_image"]);
    assert_eq!(
        (
            create.state_during(),
            create.settle(),
            create.failed_state()
        ),
        (V::Creating, V::Created, Some(V::Destroyed))
    );
    assert_eq!(create.compensation(), [VolumeStep::RemoveImage]);
    let restore = VolumePlan::build(
        VolumeSource::Snapshot {
            id: "vs_1".into(),
            fstype: ext4(),
        },
        gib,
    );
    assert_eq!(
        (
            restore.kind,
            restore.state_during(),
            restore.source.as_deref()
        ),
        (VolumeOpKind::Restore, V::Restoring, Some("vs_1"))
    );
    let fork = VolumePlan::build(
        VolumeSource::Volume {
            id: "vol_1".into(),
            fstype: "xfs".into(),
        },
        gib,
    );
    assert_eq!(fork.crash_points(), ["volume_fork:copy_volume"]);
    assert_eq!(fork.fstype.as_deref(), Some("xfs"));

    let volume = VolumeRecord {
        id: "vol_1".into(),
        app: "a".into(),
        name: "data".into(),
        state: V::Created,
        size_gb: 1,
        region: "local".into(),
        zone: "local".into(),
        encrypted: false,
        created_at: String::new(),
        fstype: "ext4".into(),
        snapshot_retention: 5,
        auto_backup_enabled: true,
        host_dedication_key: String::new(),
    };
    let plan = |intent| match transition(V::Created, intent) {
        Ok(Transition::Run(plan)) => plan.on(&volume),
        other => panic!("{intent:?}: {other:?}"),
    };
    let snapshot = plan(VolumeIntent::Snapshot);
    assert_eq!(snapshot.crash_points(), ["volume_snapshot:take_snapshot"]);
    assert_eq!(snapshot.compensation(), [VolumeStep::DiscardSnapshot]);
    assert_eq!(snapshot.state_during(), V::Created);
    assert_eq!(snapshot.failed_state(), None);
    assert_eq!(snapshot.previous.as_ref(), Some(&volume));
    let extend = plan(VolumeIntent::Extend);
    assert_eq!(extend.crash_points(), ["volume_extend:grow_filesystem"]);
    assert_eq!(extend.state_during(), V::Extending);
    assert!(extend.compensation().is_empty());
    let destroy = plan(VolumeIntent::Destroy);
    assert_eq!(destroy.crash_points(), ["volume_destroy:remove_image"]);
    assert_eq!(
        (destroy.state_during(), destroy.settle()),
        (V::Destroying, V::Destroyed)
    );
    for kind in VolumeOpKind::ALL {
        assert_eq!(VolumePlan::new(kind).steps().len(), 1, "{kind:?}");
    }
}

#[test]
fn plans_recorded_before_the_model_still_read() {
    // A plan's `previous` of those days was the wire volume: the store's
    // migration 5 makes it a record (crates/store/tests/migrate.rs).
    let create: VolumePlan =
        serde_json::from_value(serde_json::json!({"kind": "create", "size": 1})).unwrap();
    assert_eq!((create.kind, create.previous), (VolumeOpKind::Create, None));
}

#[test]
fn states_serialize_as_their_names() {
    for state in VolumeState::ALL {
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
    }
}
