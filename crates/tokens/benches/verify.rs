//! What checking a token costs: `cargo bench -p roost-tokens --bench verify`
//! (`-- --iterations N`, default 20,000).
//!
//! The token is one a robot would hold: minted with five caveats (an app,
//! rights, an exec allow-list, a create quota, an expiry), then narrowed
//! offline by one more block (a machine). Timed, interleaved in each
//! iteration: `verify` by a verifier that has not seen the token (decode,
//! both signatures, root key, revocation lookups in a list of 1,000 ids),
//! `verify` by one that has (its cache, then the revocation lookups),
//! `authorize` of an allowed exec on the verified token, and the last
//! two together: what each request carrying the token costs. Target:
//! that p50 < 50 us.

use roost_tokens::{
    attenuate, Apps, Caveats, Command, Request, RevocationId, Right, RootKey, Target,
};
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant, SystemTime};

fn iterations() -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|pair| pair[0] == "--iterations")
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(20_000)
        .clamp(100, 10_000_000)
}

fn micros(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn main() {
    let key = RootKey::generate(1);
    let caveats = Caveats {
        apps: Some(Apps::Names(BTreeSet::from(["web".to_string()]))),
        rights: Some(
            [Right::Read, Right::Exec, Right::Lifecycle]
                .into_iter()
                .collect(),
        ),
        exec: Some(vec![
            Command::Exact(vec!["uptime".into()]),
            Command::Prefix(vec!["git".into(), "log".into()]),
        ]),
        max_machines: Some(5),
        expires: Some(SystemTime::now() + Duration::from_secs(3600)),
        ..Default::default()
    };
    let minted = key.mint(&caveats).expect("mint");
    let narrower = Caveats {
        machines: Some(BTreeSet::from(["0123456789abcd".to_string()])),
        ..Default::default()
    };
    let token = attenuate(&minted.token, &narrower).expect("attenuate");
    let verifier = key.verifier();
    let revoked: HashSet<RevocationId> = (0..1000)
        .map(|n| RevocationId(format!("{n:0128x}")))
        .collect();
    let is_revoked = |id: &RevocationId| revoked.contains(id);
    let argv: Vec<String> = vec!["git".into(), "log".into(), "-1".into()];
    let target = Target::Machine {
        app: "web",
        id: "0123456789abcd",
    };
    let request = Request::new(Right::Exec, target).exec(&argv);

    let n = iterations();
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for i in 0..n + n / 10 {
        // A verifier that has not seen the token: what its first use costs.
        let fresh = key.verifier();
        let began = Instant::now();
        fresh.verify(&token, is_revoked).expect("verify");
        let first = began.elapsed();
        let began = Instant::now();
        let verified = verifier.verify(&token, is_revoked).expect("verify");
        let seen = began.elapsed();
        let began = Instant::now();
        verified
            .authorize(&request, SystemTime::now())
            .expect("authorize");
        let authorized = began.elapsed();
        let began = Instant::now();
        verifier
            .verify(&token, is_revoked)
            .expect("verify")
            .authorize(&request, SystemTime::now())
            .expect("authorize");
        let request_check = began.elapsed();
        // The first tenth warms caches and is not counted.
        if i >= n / 10 {
            for (kept, took) in samples
                .iter_mut()
                .zip([first, seen, authorized, request_check])
            {
                kept.push(took);
            }
        }
    }
    println!(
        "token check: {n} iterations, a token of 5 caveats + 1 attenuation block ({} bytes), times in us",
        token.len()
    );
    println!();
    println!("{:<44}{:>9}{:>9}", "", "p50", "p99");
    let mut medians = Vec::new();
    for (what, samples) in [
        "verify, first use (decode, signatures)",
        "verify, token seen before",
        "authorize (one exec)",
        "a request's check: verify + authorize",
    ]
    .into_iter()
    .zip(&mut samples)
    {
        samples.sort();
        let (median, tail) = (micros(samples, 0.5), micros(samples, 0.99));
        medians.push(median);
        println!("{what:<44}{median:>9.1}{tail:>9.1}");
    }
    println!();
    println!(
        "target: a request's check p50 = {:.1} us, < 50 us: {}",
        medians[3],
        if medians[3] < 50.0 { "PASS" } else { "MISS" }
    );
    println!(
        "  (a token's first use adds its signatures once: {:.1} us)",
        medians[0] - medians[1]
    );
}
