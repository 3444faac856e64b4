/// Errors of usher's cryptography.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Input that could not be parsed.
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// A key could not be generated, loaded or used.
    #[error("key error: {0}")]
    Key(String),
    /// Decryption failed: wrong key or tampered data.
    #[error("decryption failed: wrong key or tampered data")]
    Decrypt,
    /// A signature did not verify: forged or tampered data.
    #[error("signature verification failed")]
    Signature,
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A token was refused.
    #[error("{0}")]
    Token(#[from] crate::jwt::TokenError),
}
