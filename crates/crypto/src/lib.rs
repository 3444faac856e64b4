//! usher's cryptography, the only crate that touches crypto libraries: password hashing
//! (argon2id), digests of high-entropy secrets, encryption at rest (AES-256-GCM), ES256 JWT
//! signing and strict validation, TOTP, and OpenSSH keys and certificates.
#![warn(missing_docs)]

pub mod at_rest;
pub mod jwt;
pub mod password;
pub mod secret;
pub mod ssh;
pub mod totp;

mod error;
pub use error::CryptoError;

/// Unpadded base64url.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| CryptoError::Malformed("invalid base64url"))
}
