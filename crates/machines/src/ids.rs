//! Identifiers in the shapes Fly clients expect.

use rand::Rng;

/// A machine id: 14 lowercase hex characters, like Fly's.
pub fn machine_id() -> String {
    let bytes: [u8; 7] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True if `id` has the shape of a machine id.
pub fn is_machine_id(id: &str) -> bool {
    id.len() == 14 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An instance (version) id: a 26-character ULID, time-ordered like Fly's.
pub fn instance_id() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let millis = chrono::Utc::now().timestamp_millis().max(0) as u128;
    let random: u128 = rand::thread_rng().gen::<u128>() & ((1u128 << 80) - 1);
    let value = (millis << 80) | random;
    (0..26)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// A random secret of `bytes` bytes, hex-encoded (lease nonces, tokens).
pub fn secret_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill(&mut buf[..]);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let id = machine_id();
        assert!(is_machine_id(&id), "{id}");
        assert!(!is_machine_id("ABCDEF01234567"));
        assert!(!is_machine_id("../etc"));
        let a = instance_id();
        assert_eq!(a.len(), 26);
        assert_eq!(secret_hex(16).len(), 32);
    }
}
