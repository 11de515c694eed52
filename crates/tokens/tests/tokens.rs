//! Every caveat, attenuation, expiry, revocation and root keys, through the
//! crate's public API only.

use roost_tokens::{
    attenuate, Apps, Caveat, Caveats, Command, Refusal, Request, RevocationId, Right, Rights,
    RootKey, Target, TokenError, Verified,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const M1: &str = "0123456789abc1";
const M2: &str = "0123456789abc2";

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn argv(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn rights(rights: &[Right]) -> Option<Rights> {
    Some(rights.iter().copied().collect())
}

/// A token of `key` with `caveats`, verified (nothing revoked).
fn token(key: &RootKey, caveats: &Caveats) -> String {
    key.mint(caveats).expect("mint").token
}

fn verified(key: &RootKey, token: &str) -> Arc<Verified> {
    key.verifier().verify(token, |_| false).expect("verify")
}

fn allows(token: &Verified, request: Request<'_>) -> Result<(), Refusal> {
    token.authorize(&request, now())
}

fn refused_by(token: &Verified, request: Request<'_>) -> Caveat {
    allows(token, request).expect_err("refused").caveat
}

fn on_app(app: &str) -> Target<'_> {
    Target::App(app)
}

fn on_machine<'a>(app: &'a str, id: &'a str) -> Target<'a> {
    Target::Machine { app, id }
}

#[test]
fn a_token_without_caveats_allows_every_right_on_everything() {
    let key = RootKey::generate(1);
    let admin = verified(&key, &token(&key, &Caveats::default()));
    for right in Right::ALL {
        for target in [Target::Host, on_app("a"), on_machine("a", M1)] {
            assert_eq!(allows(&admin, Request::new(right, target)), Ok(()));
        }
    }
    let rm = argv(&["rm", "-rf", "/"]);
    let exec = Request::new(Right::Exec, on_machine("a", M1)).exec(&rm);
    assert_eq!(allows(&admin, exec), Ok(()));
    let create = Request::new(Right::Lifecycle, on_app("a")).create_machine("x", 10_000);
    assert_eq!(allows(&admin, create), Ok(()));
}

#[test]
fn an_app_list_allows_its_apps_and_their_machines_only() {
    let key = RootKey::generate(1);
    let caveats = Caveats {
        apps: Some(Apps::Names(set(&["a", "b"]))),
        ..Default::default()
    };
    let t = verified(&key, &token(&key, &caveats));
    assert_eq!(allows(&t, Request::new(Right::Read, on_app("a"))), Ok(()));
    assert_eq!(
        allows(&t, Request::new(Right::Exec, on_machine("b", M1))),
        Ok(())
    );
    assert_eq!(
        refused_by(&t, Request::new(Right::Read, on_app("c"))),
        Caveat::Apps
    );
    // Not the host as a whole: that would list other apps.
    assert_eq!(
        refused_by(&t, Request::new(Right::Read, Target::Host)),
        Caveat::Apps
    );
}

#[test]
fn an_app_prefix_allows_the_apps_named_so() {
    let key = RootKey::generate(1);
    let caveats = Caveats {
        apps: Some(Apps::Prefix("web-".into())),
        ..Default::default()
    };
    let t = verified(&key, &token(&key, &caveats));
    assert_eq!(
        allows(&t, Request::new(Right::Read, on_app("web-1"))),
        Ok(())
    );
    for other in ["web", "api-web-1", "we"] {
        assert_eq!(
            refused_by(&t, Request::new(Right::Read, on_app(other))),
            Caveat::Apps,
            "{other}"
        );
    }
}

#[test]
fn a_machine_list_allows_calls_on_those_machines_only() {
    let key = RootKey::generate(1);
    let caveats = Caveats {
        machines: Some(set(&[M1])),
        ..Default::default()
    };
    let t = verified(&key, &token(&key, &caveats));
    assert_eq!(
        allows(&t, Request::new(Right::Lifecycle, on_machine("a", M1))),
        Ok(())
    );
    assert_eq!(
        refused_by(&t, Request::new(Right::Lifecycle, on_machine("a", M2))),
        Caveat::Machines
    );
    assert_eq!(
        refused_by(&t, Request::new(Right::Read, on_app("a"))),
        Caveat::Machines
    );
}

#[test]
fn rights_allow_exactly_the_rights_named() {
    let key = RootKey::generate(1);
    let caveats = Caveats {
        rights: rights(&[Right::Read, Right::Checkpoints]),
        ..Default::default()
    };
    let t = verified(&key, &token(&key, &caveats));
    for right in Right::ALL {
        let outcome = allows(&t, Request::new(right, on_app("a")));
        if matches!(right, Right::Read | Right::Checkpoints) {
            assert_eq!(outcome, Ok(()), "{right}");
        } else {
            let refusal = outcome.expect_err("refused");
            assert_eq!(refusal.caveat, Caveat::Rights, "{right}");
            assert_eq!(
                refusal.to_string(),
                format!(
                    "not allowed: the token's rights caveat refuses the '{right}' right on app 'a'"
                )
            );
        }
    }
}

#[test]
fn the_exec_allow_list_takes_exact_commands_and_whole_argument_prefixes() {
    let key = RootKey::generate(1);
    let caveats = Caveats {
        exec: Some(vec![
            Command::Exact(argv(&["ls", "-l"])),
            Command::Prefix(argv(&["git", "log"])),
        ]),
        ..Default::default()
    };
    let t = verified(&key, &token(&key, &caveats));
    let machine = on_machine("a", M1);
    for ok in [
        &["ls", "-l"][..],
        &["git", "log"],
        &["git", "log", "-1", "--stat"],
    ] {
        let command = argv(ok);
        assert_eq!(
            allows(&t, Request::new(Right::Exec, machine).exec(&command)),
            Ok(()),
            "{ok:?}"
        );
    }
    for refused in [
        &["ls"][..],
        &["ls", "-l", "/"],
        &["git"],
        &["git", "logs"],
        &["sh", "-c", "git log"],
    ] {
        let command = argv(refused);
        assert_eq!(
            refused_by(&t, Request::new(Right::Exec, machine).exec(&command)),
            Caveat::Exec,
            "{refused:?}"
        );
    }
    // An exec asked about without its command is refused; other rights
    // are not the list's business.
    assert_eq!(
        refused_by(&t, Request::new(Right::Exec, machine)),
        Caveat::Exec
    );
    assert_eq!(allows(&t, Request::new(Right::Files, machine)), Ok(()));

    let none = Caveats {
        exec: Some(Vec::new()),
        ..Default::default()
    };
    let t = verified(&key, &token(&key, &none));
    let ls = argv(&["ls"]);
    assert!(allows(&t, Request::new(Right::Exec, machine).exec(&ls)).is_err());
    assert_eq!(allows(&t, Request::new(Right::Read, machine)), Ok(()));
}

#[test]
fn the_create_quota_bounds_the_count_and_the_names_of_created_machines_only() {
    let key = RootKey::generate(1);
    let caveats = Caveats {
        max_machines: Some(3),
        name_prefix: Some("bot-".into()),
        ..Default::default()
    };
    let t = verified(&key, &token(&key, &caveats));
    let create =
        |name, after| Request::new(Right::Lifecycle, on_app("a")).create_machine(name, after);
    assert_eq!(allows(&t, create("bot-1", 3)), Ok(()));
    assert_eq!(refused_by(&t, create("bot-4", 4)), Caveat::Quota);
    assert_eq!(refused_by(&t, create("web", 1)), Caveat::Quota);
    // Starting or stopping is not creating.
    assert_eq!(
        allows(&t, Request::new(Right::Lifecycle, on_machine("a", M1))),
        Ok(())
    );
}

#[test]
fn an_expired_token_allows_nothing() {
    let key = RootKey::generate(1);
    let caveats = Caveats {
        expires: Some(now() + Duration::from_secs(3600)),
        ..Default::default()
    };
    let t = verified(&key, &token(&key, &caveats));
    let read = Request::new(Right::Read, on_app("a"));
    assert_eq!(t.authorize(&read, now()), Ok(()));
    assert_eq!(
        t.authorize(&read, now() + Duration::from_secs(3600)),
        Ok(())
    );
    let refusal = t
        .authorize(&read, now() + Duration::from_secs(3601))
        .expect_err("expired");
    assert_eq!(refusal.caveat, Caveat::Expiry);
    assert_eq!(refusal.to_string(), "the token has expired");
}

/// Each caveat of `narrow`, then a "widening" attenuation of it: the
/// wider child must be refused exactly where the parent is.
#[test]
fn attenuation_narrows_and_never_widens() {
    let key = RootKey::generate(1);
    let parent = Caveats {
        apps: Some(Apps::Names(set(&["a"]))),
        rights: rights(&[Right::Read, Right::Exec]),
        exec: Some(vec![Command::Prefix(argv(&["ls"]))]),
        max_machines: Some(2),
        expires: Some(now() + Duration::from_secs(60)),
        ..Default::default()
    };
    let parent_token = token(&key, &parent);
    let wider = Caveats {
        apps: Some(Apps::Prefix(String::new())),
        rights: Some(Rights::ALL),
        exec: Some(vec![Command::Prefix(Vec::new())]),
        max_machines: Some(100),
        expires: Some(now() + Duration::from_secs(86_400)),
        ..Default::default()
    };
    let child = verified(&key, &attenuate(&parent_token, &wider).expect("attenuate"));
    let rm = argv(&["rm", "-rf", "/"]);
    let later = now() + Duration::from_secs(61);
    let create = Request::new(Right::Read, on_app("a")).create_machine("x", 3);
    let widened: [(Request<'_>, SystemTime, Caveat); 5] = [
        (Request::new(Right::Read, on_app("b")), now(), Caveat::Apps),
        (
            Request::new(Right::Images, on_app("a")),
            now(),
            Caveat::Rights,
        ),
        (
            Request::new(Right::Exec, on_machine("a", M1)).exec(&rm),
            now(),
            Caveat::Exec,
        ),
        (create, now(), Caveat::Quota),
        (
            Request::new(Right::Read, on_app("a")),
            later,
            Caveat::Expiry,
        ),
    ];
    for (request, at, caveat) in widened {
        let refusal = child.authorize(&request, at).expect_err("not widened");
        assert_eq!(refusal.caveat, caveat, "{request:?}");
    }

    // A narrower child is held to its own caveats as well as its parent's.
    let narrower = Caveats {
        machines: Some(set(&[M1])),
        rights: rights(&[Right::Read]),
        ..Default::default()
    };
    let child = verified(
        &key,
        &attenuate(&parent_token, &narrower).expect("attenuate"),
    );
    assert_eq!(
        allows(&child, Request::new(Right::Read, on_machine("a", M1))),
        Ok(())
    );
    let ls = argv(&["ls"]);
    assert_eq!(
        refused_by(
            &child,
            Request::new(Right::Exec, on_machine("a", M1)).exec(&ls)
        ),
        Caveat::Rights
    );
    assert_eq!(
        refused_by(&child, Request::new(Right::Read, on_machine("a", M2))),
        Caveat::Machines
    );
    // And a grandchild by both.
    let grandchild = attenuate(
        &attenuate(&parent_token, &narrower).unwrap(),
        &Caveats {
            apps: Some(Apps::Names(set(&["a", "b"]))),
            ..Default::default()
        },
    )
    .unwrap();
    let grandchild = verified(&key, &grandchild);
    assert_eq!(
        refused_by(&grandchild, Request::new(Right::Read, on_machine("b", M1))),
        Caveat::Apps
    );
    assert_eq!(
        allows(&grandchild, Request::new(Right::Read, on_machine("a", M1))),
        Ok(())
    );
}

#[test]
fn revoking_a_token_revokes_what_was_derived_from_it() {
    let key = RootKey::generate(1);
    let minted = key.mint(&Caveats::default()).unwrap();
    let derived = attenuate(
        &minted.token,
        &Caveats {
            rights: rights(&[Right::Read]),
            ..Default::default()
        },
    )
    .unwrap();
    let verifier = key.verifier();
    // A derived token keeps its parent's id. Both are verified (and so
    // known to the verifier) before the revocation, which must still count.
    assert_eq!(
        verifier.verify(&derived, |_| false).unwrap().id(),
        &minted.id
    );
    assert!(verifier.verify(&minted.token, |_| false).is_ok());
    let revoked = |id: &RevocationId| *id == minted.id;
    for token in [&minted.token, &derived] {
        match verifier.verify(token, revoked) {
            Err(TokenError::Revoked(id)) => assert_eq!(id, minted.id),
            other => panic!("not revoked: {other:?}"),
        }
    }
    // Another token of the same key is not touched.
    let other = key.mint(&Caveats::default()).unwrap();
    assert_ne!(other.id, minted.id);
    assert!(verifier.verify(&other.token, revoked).is_ok());
}

#[test]
fn tokens_of_another_or_a_rotated_root_key_are_refused() {
    let old = RootKey::generate(7);
    let token = token(&old, &Caveats::default());
    let new = old.rotated();
    assert_eq!(new.id(), 8);
    match new.verifier().verify(&token, |_| false) {
        Err(err @ TokenError::UnknownRoot { .. }) => {
            assert_eq!(
                err.to_string(),
                "the token was signed by root key 7, not by this roost's current root key 8: \
                 its root key was rotated out, or it belongs to another roost"
            )
        }
        other => panic!("accepted: {other:?}"),
    }
    // Same number, another secret: the signature gives it away.
    let impostor = RootKey::generate(7);
    assert!(matches!(
        impostor.verifier().verify(&token, |_| false),
        Err(TokenError::Forged)
    ));
    // The new key's own tokens pass.
    assert!(new
        .verifier()
        .verify(&self::token(&new, &Caveats::default()), |_| false)
        .is_ok());
}

#[test]
fn a_root_key_survives_storing_its_private_bytes() {
    let key = RootKey::generate(3);
    let reloaded = RootKey::from_private_bytes(3, &key.private_bytes()).unwrap();
    let token = token(&reloaded, &Caveats::default());
    assert!(key.verifier().verify(&token, |_| false).is_ok());
    assert!(matches!(
        RootKey::from_private_bytes(3, b"short"),
        Err(TokenError::Invalid(_))
    ));
    assert!(!format!("{key:?}").contains(&format!("{:?}", key.private_bytes())));
}

#[test]
fn truncated_tampered_and_foreign_strings_are_refused() {
    let key = RootKey::generate(1);
    let token = token(
        &key,
        &Caveats {
            rights: rights(&[Right::Read]),
            ..Default::default()
        },
    );
    let verifier = key.verifier();
    let truncated = &token[..token.len() / 2];
    assert!(matches!(
        verifier.verify(truncated, |_| false),
        Err(TokenError::Malformed(_))
    ));
    // Every single-character change is refused, whatever it hits.
    for at in (0..token.len()).step_by(7) {
        let mut tampered = token.clone().into_bytes();
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(
            verifier.verify(&tampered, |_| false).is_err(),
            "a change at {at} was accepted"
        );
    }
    for garbage in ["", "not a token", "Bearer x"] {
        assert!(
            matches!(
                verifier.verify(garbage, |_| false),
                Err(TokenError::Malformed(_))
            ),
            "{garbage:?}"
        );
    }
    // Messages describe the token, never quote it.
    let err = verifier.verify(truncated, |_| false).unwrap_err();
    assert!(!err.to_string().contains(truncated), "{err}");
}

#[test]
fn verifiers_and_verified_tokens_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<roost_tokens::Verifier>();
    shared::<Arc<Verified>>();
    shared::<RootKey>();
}

#[test]
fn a_tokens_rights_are_those_every_block_allows_whatever_the_target() {
    let key = RootKey::generate(1);
    let parent = token(
        &key,
        &Caveats {
            apps: Some(Apps::Names(set(&["a"]))),
            rights: rights(&[Right::Read, Right::Exec, Right::Tokens]),
            ..Default::default()
        },
    );
    assert_eq!(
        verified(&key, &parent).rights(),
        rights(&[Right::Read, Right::Exec, Right::Tokens]).unwrap()
    );
    let narrower = Caveats {
        rights: rights(&[Right::Read, Right::Lifecycle]),
        expires: Some(now()),
        ..Default::default()
    };
    let child = attenuate(&parent, &narrower).unwrap();
    assert_eq!(
        verified(&key, &child).rights(),
        rights(&[Right::Read]).unwrap()
    );
    assert_eq!(
        verified(&key, &token(&key, &Caveats::default())).rights(),
        Rights::ALL
    );
}
