//! Password hashing with argon2id (19 MiB, t=2, p=1: the OWASP minimum), PHC strings.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use usher_core::Rng;

use crate::CryptoError;

fn hasher() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(19 * 1024, 2, 1, Some(32)).map_err(|e| CryptoError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with a fresh 16-byte salt.
pub fn hash(password: &str, rng: &dyn Rng) -> Result<String, CryptoError> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt);
    let phc = hasher()?
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| CryptoError::Hash(e.to_string()))?;
    Ok(phc.to_string())
}

/// Verifies a password against a PHC string (constant time in the hash comparison). A malformed
/// stored hash verifies as false.
pub fn verify(password: &str, phc: &str) -> bool {
    match hasher() {
        Ok(h) => h.verify_password(password.as_bytes(), phc).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use usher_core::SystemRng;

    #[test]
    fn hash_and_verify() {
        let h = super::hash("correct horse", &SystemRng).unwrap_or_default();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("correct horsf", &h));
        assert!(!super::verify("correct horse", "not a hash"));
        let h2 = super::hash("correct horse", &SystemRng).unwrap_or_default();
        assert_ne!(h, h2, "salted");
    }
}
