//! High-entropy secrets (client secrets, refresh tokens, codes): generated with 256 bits of
//! randomness, stored only as SHA-256 digests, compared in constant time. A slow hash adds nothing
//! for secrets that cannot be guessed, and would cap the token endpoint's throughput.

use subtle::ConstantTimeEq;
use usher_core::Rng;

/// A fresh secret: 32 random bytes, base64url.
pub fn generate(rng: &dyn Rng) -> String {
    rng.token(32)
}

/// The stored form of a secret: hex SHA-256.
pub fn digest(secret: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    hex(d.as_ref())
}

/// Whether `secret` matches a stored digest, in constant time.
pub fn matches(secret: &str, stored_digest: &str) -> bool {
    digest(secret).as_bytes().ct_eq(stored_digest.as_bytes()).into()
}

/// Keyed fingerprint (HMAC-SHA256, hex, truncated to 128 bits) of a value that must be compared
/// later but not stored, such as a recently tried wrong password.
pub fn fingerprint(key: &[u8], value: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let tag = aws_lc_rs::hmac::sign(&k, value.as_bytes());
    hex(tag.as_ref().get(..16).unwrap_or_default())
}

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// Constant-time equality of two strings.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use usher_core::SystemRng;

    #[test]
    fn digest_matches_only_the_secret() {
        let s = super::generate(&SystemRng);
        assert_eq!(s.len(), 43);
        let d = super::digest(&s);
        assert!(super::matches(&s, &d));
        assert!(!super::matches(&format!("{s}x"), &d));
        assert_eq!(
            super::digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fingerprint_is_keyed() {
        assert_ne!(super::fingerprint(b"k1", "pw"), super::fingerprint(b"k2", "pw"));
        assert_eq!(super::fingerprint(b"k1", "pw"), super::fingerprint(b"k1", "pw"));
        assert_eq!(super::fingerprint(b"k1", "pw").len(), 32);
    }
}
