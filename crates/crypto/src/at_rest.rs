//! Encryption at rest with AES-256-GCM (signing keys, TOTP secrets). The sealed form is
//! base64url(nonce || ciphertext || tag); the associated data binds a value to its purpose and
//! owner so one sealed value cannot be swapped for another.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use usher_core::Rng;
use zeroize::Zeroizing;

use crate::{CryptoError, b64url, b64url_decode};

/// A 256-bit key-encryption key.
pub struct SealingKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

impl SealingKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| CryptoError::Key("an at-rest key must be 32 bytes".into()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// A fresh random key, returned with its bytes (to be persisted by the caller).
    pub fn generate(rng: &dyn Rng) -> Result<(Self, Zeroizing<Vec<u8>>), CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; 32]);
        rng.fill(&mut bytes);
        Ok((Self::from_bytes(&bytes)?, bytes))
    }

    /// Encrypts `plaintext`, binding it to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &str, rng: &dyn Rng) -> Result<String, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce);
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| CryptoError::Key("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(b64url(&out))
    }

    /// Decrypts a sealed value; fails if the key, the data or `aad` differ.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let raw = b64url_decode(sealed)?;
        if raw.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use usher_core::SystemRng;

    use super::SealingKey;

    #[test]
    fn seal_open_and_tamper() {
        let (k, _) = SealingKey::generate(&SystemRng).unwrap_or_else(|_| unreachable!());
        let sealed = k
            .seal(b"secret key bytes", "signing-key:k1", &SystemRng)
            .unwrap_or_default();
        assert_eq!(
            k.open(&sealed, "signing-key:k1").map(|v| v.to_vec()).ok(),
            Some(b"secret key bytes".to_vec())
        );
        assert!(k.open(&sealed, "signing-key:k2").is_err(), "aad binds");
        let (other, _) = SealingKey::generate(&SystemRng).unwrap_or_else(|_| unreachable!());
        assert!(other.open(&sealed, "signing-key:k1").is_err(), "wrong key");
        let mut bad = sealed.into_bytes();
        if let Some(b) = bad.last_mut() {
            *b = if *b == b'A' { b'B' } else { b'A' };
        }
        assert!(
            k.open(&String::from_utf8(bad).unwrap_or_default(), "signing-key:k1")
                .is_err()
        );
    }
}
