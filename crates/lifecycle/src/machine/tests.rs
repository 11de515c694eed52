use super::*;

/// The outcome of a transition, reduced to what the table below states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Runs a plan of this kind, settling in this state.
    Runs(OpKind, MachineState),
    Unchanged,
    Proceeds,
    Refused(Reason),
}

use Outcome::{Proceeds, Refused, Runs, Unchanged};

fn outcome(state: MachineState, intent: &Intent) -> Outcome {
    match transition(state, intent) {
        Ok(Transition::Run(plan)) => Runs(plan.kind, plan.settle),
        Ok(Transition::Unchanged) => Unchanged,
        Ok(Transition::Proceed) => Proceeds,
        Err(refusal) => Refused(refusal.reason),
    }
}

fn update() -> Update {
    Update {
        persist: RootfsPersist::Always,
        image_changed: false,
        switch_runtime: None,
        skip_launch: false,
    }
}

/// One intent of every kind, with its name in the table.
fn intents() -> Vec<(&'static str, Intent)> {
    vec![
        ("create", Intent::Create { launch: true }),
        ("start", Intent::Start { reset: false }),
        ("stop", Intent::Stop),
        ("restart", Intent::Restart { reset: false }),
        ("update", Intent::Update(update())),
        ("destroy", Intent::Destroy { force: false }),
        ("destroy!", Intent::Destroy { force: true }),
        ("exit", Intent::Exit(AfterExit::Stop)),
        ("exec", Intent::Exec),
        ("signal", Intent::Signal),
        ("ps", Intent::Processes),
        ("files", Intent::Files),
        ("edit", Intent::Edit),
    ]
}

/// The expected outcome of every state × intent pair, written out by hand
/// so that a change to the rules shows up here as a deliberate edit.
fn expected(state: MachineState, intent: &str) -> Outcome {
    use MachineState as S;
    use OpKind as K;
    let busy = Refused(Reason::Busy);
    let wrong = Refused(Reason::WrongState);
    match state {
        S::Destroyed => Refused(Reason::Gone),
        s if s.is_transitional() => busy,
        S::Created => match intent {
            "create" => Runs(K::Launch, S::Started),
            "start" => Runs(K::Start, S::Started),
            "stop" => Unchanged,
            "update" => Runs(K::Update, S::Started),
            "destroy" | "destroy!" => Runs(K::Destroy, S::Destroyed),
            "files" | "edit" => Proceeds,
            _ => wrong,
        },
        S::Started => match intent {
            "start" => Unchanged,
            "stop" => Runs(K::Stop, S::Stopped),
            "restart" => Runs(K::Restart, S::Started),
            "update" => Runs(K::Update, S::Started),
            "destroy" => Refused(Reason::NeedsForce),
            "destroy!" => Runs(K::Destroy, S::Destroyed),
            "exit" => Runs(K::Exit, S::Stopped),
            "exec" | "signal" | "ps" | "files" | "edit" => Proceeds,
            _ => wrong,
        },
        S::Stopped | S::Failed => match intent {
            "start" => Runs(K::Start, S::Started),
            "stop" => Unchanged,
            "update" => Runs(K::Update, S::Stopped),
            "destroy" | "destroy!" => Runs(K::Destroy, S::Destroyed),
            "files" | "edit" => Proceeds,
            _ => wrong,
        },
        // Nothing suspends a machine yet: a suspended one accepts nothing.
        S::Suspended => wrong,
        _ => unreachable!("every state is covered above"),
    }
}

#[test]
fn every_state_and_intent_pair_follows_the_table() {
    for state in MachineState::ALL {
        for (name, intent) in intents() {
            assert_eq!(
                outcome(state, &intent),
                expected(state, name),
                "{state} x {name}"
            );
        }
    }
}

#[test]
fn refusals_name_the_allowed_states_and_never_a_command() {
    for state in MachineState::ALL {
        for (name, intent) in intents() {
            let Err(refusal) = transition(state, &intent) else {
                continue;
            };
            let text = refusal.to_string();
            assert!(
                text.starts_with(&format!("is {state}")),
                "{state} x {name}: {text}"
            );
            assert!(!text.contains("roost "), "{state} x {name}: {text}");
            if refusal.reason == Reason::WrongState && name != "restart" {
                assert!(
                    refusal.allowed.iter().all(|allowed| text.contains(allowed)),
                    "{state} x {name}: {text}"
                );
            }
        }
    }
    let text = |state, intent| transition(state, &intent).unwrap_err().to_string();
    assert_eq!(
        text(MachineState::Stopping, Intent::Start { reset: false }),
        "is stopping and cannot be started: another operation is under way; wait for it and retry"
    );
    assert_eq!(
        text(MachineState::Destroyed, Intent::Edit),
        "is destroyed and cannot be changed: it is gone; create a new machine"
    );
    assert_eq!(
        text(MachineState::Destroyed, Intent::Files),
        "is destroyed and its files are gone; create a new machine"
    );
    assert_eq!(
        text(MachineState::Stopped, Intent::Exec),
        "is stopped; exec needs a started machine: start it first"
    );
    assert_eq!(
        text(MachineState::Stopped, Intent::Restart { reset: false }),
        "is stopped; only a started machine can be restarted (use start instead)"
    );
    assert_eq!(
        text(MachineState::Started, Intent::Destroy { force: false }),
        "is started: stop it first, or destroy with force=true"
    );
    assert_eq!(
        text(MachineState::Suspended, Intent::Start { reset: false }),
        "is suspended and cannot be started: that is allowed when it is created, stopped or failed"
    );
}

fn plan(state: MachineState, intent: Intent) -> MachinePlan {
    match transition(state, &intent) {
        Ok(Transition::Run(plan)) => plan,
        other => panic!("{state} x {intent:?}: {other:?}"),
    }
}

fn names(plan: &MachinePlan) -> Vec<&'static str> {
    plan.steps.iter().map(|s| s.name()).collect()
}

#[test]
fn starts_reset_the_rootfs_as_the_persist_policy_says() {
    use roost_types::RootfsConfig;
    let config = |persist| MachineConfig {
        rootfs: Some(RootfsConfig {
            persist: Some(persist),
            ..Default::default()
        }),
        ..Default::default()
    };
    let start = |persist| {
        names(&plan(
            MachineState::Stopped,
            Intent::start(&config(persist)),
        ))
    };
    let full = [
        "reset_rootfs",
        "mount_rootfs",
        "attach_volumes",
        "write_files",
        "refresh_env",
        "run",
    ];
    assert_eq!(start(RootfsPersist::Never), full);
    assert_eq!(start(RootfsPersist::Restart), full);
    assert_eq!(start(RootfsPersist::Always), full[1..]);
    assert_eq!(
        Intent::start(&MachineConfig::default()),
        Intent::Start { reset: false }
    );
    let restart = |persist| {
        names(&plan(
            MachineState::Started,
            Intent::restart(&config(persist)),
        ))
    };
    let stop = [
        "signal_stop",
        "delete_container",
        "detach_volumes",
        "unmount_rootfs",
    ];
    assert_eq!(
        restart(RootfsPersist::Never),
        [&stop[..], &full[..]].concat()
    );
    assert_eq!(
        restart(RootfsPersist::Restart),
        [&stop[..], &full[1..]].concat()
    );
}

#[test]
fn create_stop_and_destroy_plans() {
    let launch = plan(MachineState::Created, Intent::Create { launch: true });
    assert_eq!(
        names(&launch),
        [
            "prepare",
            "connect_network",
            "mount_rootfs",
            "attach_volumes",
            "write_files",
            "refresh_env",
            "run"
        ]
    );
    assert_eq!(launch.state_during(Step::Prepare), MachineState::Created);
    assert_eq!(launch.state_during(Step::Run), MachineState::Starting);
    let created = plan(MachineState::Created, Intent::Create { launch: false });
    assert_eq!(names(&created), ["prepare", "connect_network"]);
    assert_eq!(created.settle, MachineState::Created);
    assert_eq!(created.first_state(), MachineState::Created);

    let stop = StopOptions {
        signal: Some(2),
        timeout_ms: Some(1500),
    };
    let stopping = plan(MachineState::Started, Intent::Stop).stopping_with(stop);
    assert_eq!(
        (stopping.stop_signal, stopping.stop_timeout_ms),
        (Some(2), Some(1500))
    );
    assert_eq!(
        stopping.state_during(Step::SignalStop),
        MachineState::Stopping
    );

    let destroy = plan(MachineState::Started, Intent::Destroy { force: true });
    assert_eq!(
        names(&destroy),
        [
            "signal_stop",
            "delete_container",
            "detach_volumes",
            "unmount_rootfs",
            "disconnect_network",
            "remove_files"
        ]
    );
    assert_eq!(
        (destroy.stop_signal, destroy.stop_timeout_ms),
        (Some(9), Some(0))
    );
    assert_eq!(
        destroy.state_during(Step::SignalStop),
        MachineState::Destroying
    );
}

#[test]
fn updates_switch_runtime_reset_and_launch_as_asked() {
    let plain = plan(MachineState::Started, Intent::Update(update()));
    assert_eq!(
        names(&plain),
        [
            "signal_stop",
            "delete_container",
            "detach_volumes",
            "unmount_rootfs",
            "prepare",
            "mount_rootfs",
            "attach_volumes",
            "write_files",
            "refresh_env",
            "run"
        ]
    );
    assert_eq!(plain.state_during(Step::Run), MachineState::Replacing);
    let switch = plan(
        MachineState::Started,
        Intent::Update(Update {
            switch_runtime: Some("runc".into()),
            image_changed: true,
            ..update()
        }),
    );
    assert_eq!(switch.runtime.as_deref(), Some("runc"));
    assert_eq!(
        names(&switch)[3..7],
        [
            "unmount_rootfs",
            "switch_runtime",
            "reset_rootfs",
            "prepare"
        ]
    );
    let stays_stopped = plan(
        MachineState::Started,
        Intent::Update(Update {
            skip_launch: true,
            ..update()
        }),
    );
    assert_eq!(stays_stopped.settle, MachineState::Stopped);
    assert_eq!(names(&stays_stopped).last(), Some(&"prepare"));
    let never = Intent::update(
        &MachineConfig {
            rootfs: Some(roost_types::RootfsConfig {
                persist: Some(RootfsPersist::Never),
                ..Default::default()
            }),
            ..Default::default()
        },
        Update {
            image_changed: true,
            ..update()
        },
    );
    let never = plan(MachineState::Stopped, never);
    // A stopped machine is rebuilt, not started; a `never` rootfs is reset
    // at its next start, so the image change needs no reset of its own.
    assert_eq!(never.settle, MachineState::Stopped);
    assert!(!never.steps.contains(&Step::ResetRootfs));
}

#[test]
fn exits_restart_destroy_or_stop_by_policy() {
    use roost_types::{MachineRestart, RestartPolicy as P};
    let config = |policy, max_retries, auto_destroy| MachineConfig {
        restart: Some(MachineRestart {
            policy,
            max_retries,
        }),
        auto_destroy: Some(auto_destroy),
        ..Default::default()
    };
    let restart = AfterExit::Restart { reset: false };
    assert_eq!(
        AfterExit::of(&config(P::Always, None, true), Some(0), 99),
        restart
    );
    assert_eq!(
        AfterExit::of(&config(P::OnFailure, None, false), Some(1), 2),
        restart
    );
    assert_eq!(
        AfterExit::of(&config(P::OnFailure, None, false), Some(1), 3),
        AfterExit::Stop
    );
    assert_eq!(
        AfterExit::of(&config(P::OnFailure, Some(5), false), None, 4),
        restart
    );
    assert_eq!(
        AfterExit::of(&config(P::OnFailure, None, false), Some(0), 0),
        AfterExit::Stop
    );
    assert_eq!(
        AfterExit::of(&config(P::No, None, true), Some(1), 0),
        AfterExit::Destroy
    );
    assert_eq!(
        AfterExit::of(&MachineConfig::default(), Some(1), 0),
        restart
    );

    let again = plan(MachineState::Started, Intent::Exit(restart));
    assert_eq!(
        (again.kind, again.settle, again.source),
        (OpKind::Restart, MachineState::Started, Source::Platform)
    );
    assert_eq!(
        names(&again)[..3],
        ["delete_container", "detach_volumes", "unmount_rootfs"]
    );
    assert_eq!(
        again.state_during(Step::DeleteContainer),
        MachineState::Stopping
    );
    assert_eq!(again.state_during(Step::Run), MachineState::Starting);
    let gone = plan(MachineState::Started, Intent::Exit(AfterExit::Destroy));
    assert_eq!(
        (gone.kind, gone.settle),
        (OpKind::Destroy, MachineState::Destroyed)
    );
    assert_eq!(names(&gone).last(), Some(&"remove_files"));
    let stopped = plan(MachineState::Started, Intent::Exit(AfterExit::Stop));
    assert_eq!(
        (stopped.kind, stopped.settle),
        (OpKind::Exit, MachineState::Stopped)
    );
    assert_eq!(stopped.steps, TAKE_DOWN);

    assert_eq!(restart_backoff(1), Duration::from_millis(200));
    assert_eq!(restart_backoff(6), Duration::from_millis(6400));
    assert_eq!(restart_backoff(60), Duration::from_millis(6400));
}

#[test]
fn crash_points_name_every_step_and_failures_take_the_machine_down() {
    let start = plan(MachineState::Stopped, Intent::Start { reset: true });
    assert_eq!(
        start.crash_points(),
        [
            "start:reset_rootfs",
            "start:mount_rootfs",
            "start:attach_volumes",
            "start:write_files",
            "start:refresh_env",
            "start:run"
        ]
    );
    assert_eq!(start.compensation(), TAKE_DOWN);
}

#[test]
fn plans_recorded_before_the_model_still_read() {
    let recorded = serde_json::json!({
        "kind": "update",
        "steps": ["signal_stop", "delete_container", "unmount_rootfs", "prepare", "run"],
        "settle": "started",
        "stop_signal": null,
        "stop_timeout_ms": 5000,
        "source": "user"
    });
    let plan: MachinePlan = serde_json::from_value(recorded).unwrap();
    assert_eq!(plan.kind, OpKind::Update);
    assert_eq!(plan.steps.len(), 5);
    assert_eq!(plan.stop_timeout_ms, Some(5000));
    assert_eq!(plan.runtime, None);
    let exit: MachinePlan = serde_json::from_value(serde_json::json!({
        "kind": "exit", "steps": [], "settle": "stopped", "source": "flyd"
    }))
    .unwrap();
    assert_eq!(exit.source, Source::Platform);
    assert_eq!(serde_json::to_value(&exit).unwrap()["source"], "flyd");
}
