//! One fuzz input against the tokenizer's parsers. Shared by the libFuzzer
//! target (`cargo +nightly fuzz run parsers`) and the bounded stable driver
//! in `tests/fuzz_parsers.rs`, which runs in every `cargo test`.

/// Feeds `data` to the `Proxy-Tokenizer` header parser and the secret
/// parser. They must never panic, every refusal is a 400, and no error
/// quotes a value back (the seed corpus puts the marker below in tokens
/// and keys); only a bad `allowed_host_pattern`, which is not secret, is
/// quoted.
pub fn check(data: &[u8]) {
    const MARKER: &str = "FUZZ-SECRET-MARKER";
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(header) = roost_tokenizer::ProxyTokenizerHeader::parse(text) {
            assert!(!header.sealed.is_empty());
        }
    }
    if let Err(err) = roost_tokenizer::Secret::from_json(data) {
        let message = err.to_string();
        assert!(
            !message.contains(MARKER) || message.starts_with("allowed_host_pattern"),
            "error quotes a secret: {message}"
        );
        assert_eq!(err.status().as_u16(), 400, "{message}");
    }
}
