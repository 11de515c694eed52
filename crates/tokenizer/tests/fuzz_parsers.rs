//! Bounded fuzzing of the header and secret parsers on stable Rust: the
//! libFuzzer target's check (`fuzz/fuzz_targets/check.rs`) run on a seed
//! corpus and on random mutations of it (bit flips, byte changes,
//! insertions, deletions, truncations, splices) from a fixed-seed PRNG.
//! `ROOST_FUZZ_ITERATIONS` sets the number of mutated inputs (default
//! 20000). Coverage-guided fuzzing: `cargo +nightly fuzz run parsers` in
//! `crates/tokenizer/fuzz`.

#[path = "../fuzz/fuzz_targets/check.rs"]
mod check;

const SEEDS: &[&str] = &[
    r#"{"inject_processor":{"token":"FUZZ-SECRET-MARKER","fmt":"Bearer %s","dst":"Authorization"},"no_auth":{}}"#,
    r#"{"inject_processor":{"token":"FUZZ-SECRET-MARKER","allowed_fmt":["a %s"],"allowed_dst":["X-A"]},"bearer_auth":{"digest":"n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="},"allowed_hosts":["a.test"],"allowed_host_pattern":"b\\.test"}"#,
    r#"{"inject_hmac_processor":{"key":"RlVaWi1TRUNSRVQtTUFSS0VS","hash":"sha256","fmt":"%x"},"no_auth":{}}"#,
    r#"{"oauth2_processor":{"token":{"access_token":"FUZZ-SECRET-MARKER","refresh_token":"FUZZ-SECRET-MARKER"}},"no_auth":{}}"#,
    r#"{"sigv4_processor":{"access_key":"FUZZ-SECRET-MARKER","secret_key":"FUZZ-SECRET-MARKER"},"no_auth":{}}"#,
    r#"{"inject_processor":{"token":["FUZZ-SECRET-MARKER"]},"macaroon_auth":{"key":"eA=="}}"#,
    "c2VhbGVk; {\"dst\":\"X-Key\",\"fmt\":\"%s\\r\\n\",\"st\":\"refresh\",\"msg\":\"m\"}",
    "c2VhbGVk",
    " ; {}",
];

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    const INTERESTING: &[u8] = b"{}[]\":,;%\\\r\n\0 sxX-_";
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = at.min(input.len() - 1);
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = at.min(input.len() - 1);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => input.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 if at < input.len() => {
                input.remove(at);
            }
            4 => input.truncate(at),
            5 => {
                let other = SEEDS[rng.below(SEEDS.len())].as_bytes();
                let from = rng.below(other.len());
                let len = rng.below(other.len() - from + 1);
                input.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => input.insert(at, rng.next() as u8),
        }
    }
}

#[test]
fn parsers_survive_mutated_input() {
    let iterations: usize = std::env::var("ROOST_FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    for seed in SEEDS {
        check::check(seed.as_bytes());
    }
    let mut rng = Rng(0x5eed_0f70_6be4);
    for _ in 0..iterations {
        let mut input = SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec();
        mutate(&mut rng, &mut input);
        check::check(&input);
    }
}
