//! The tenant's signing keys: ES256, sealed at rest, rotated with overlap. The newest key signs;
//! older keys stay in the JWKS until the tokens they signed have expired.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use usher_crypto::jwt::{Jwk, KeySet, SigningKey};
use usher_directory::Directory;
use usher_store::Record;

use crate::{IdpError, IdpResult, kinds};

/// How long a retired key stays published: longer than any token it signed lives (90 min), plus margin.
pub const OVERLAP_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredKey {
    kid: String,
    sealed_pkcs8: String,
    created_at: i64,
    /// Set when a newer key took over.
    retired_at: Option<i64>,
}

#[derive(Debug)]
struct Ring {
    active: Arc<SigningKey>,
    keyset: Arc<KeySet>,
    jwks: Value,
}

/// The signing keys, shared by every request.
#[derive(Debug, Clone)]
pub struct KeyRing {
    ring: Arc<RwLock<Arc<Ring>>>,
}

fn aad(kid: &str) -> String {
    format!("signing-key:{kid}")
}

impl KeyRing {
    /// Loads the keys, creating the first one if there is none.
    pub async fn load(dir: &Directory) -> IdpResult<Self> {
        let ring = build(dir).await?;
        Ok(Self {
            ring: Arc::new(RwLock::new(Arc::new(ring))),
        })
    }

    fn current(&self) -> IdpResult<Arc<Ring>> {
        self.ring
            .read()
            .map(|r| r.clone())
            .map_err(|_| IdpError::server_error())
    }

    /// The key that signs now.
    pub fn active(&self) -> IdpResult<Arc<SigningKey>> {
        Ok(self.current()?.active.clone())
    }

    /// The published keys, for validation.
    pub fn keyset(&self) -> IdpResult<Arc<KeySet>> {
        Ok(self.current()?.keyset.clone())
    }

    /// The JWKS document.
    pub fn jwks(&self) -> IdpResult<Value> {
        Ok(self.current()?.jwks.clone())
    }

    /// Makes a new key the signing key; the previous one stays published for [`OVERLAP_SECS`].
    pub async fn rotate(&self, dir: &Directory) -> IdpResult<String> {
        let now = dir.clock().now_unix();
        for rec in dir.store().list(kinds::SIGNING_KEY, None, 1000, now).await? {
            let mut k: StoredKey = rec.decode()?;
            if k.retired_at.is_none() {
                k.retired_at = Some(now);
                let mut r = rec.clone();
                r.data = serde_json::to_value(&k).map_err(|_| IdpError::server_error())?;
                r.expires_at = Some(now + OVERLAP_SECS);
                dir.store().update(r).await?;
            }
        }
        let kid = create_key(dir, now).await?;
        self.reload(dir).await?;
        Ok(kid)
    }

    /// Re-reads the keys from the store (after a rotation by another replica).
    pub async fn reload(&self, dir: &Directory) -> IdpResult<()> {
        let ring = build(dir).await?;
        let mut guard = self.ring.write().map_err(|_| IdpError::server_error())?;
        *guard = Arc::new(ring);
        Ok(())
    }
}

async fn create_key(dir: &Directory, now: i64) -> IdpResult<String> {
    let kid = dir.rng().token(12);
    let key = SigningKey::generate(&kid).map_err(|_| IdpError::server_error())?;
    let sealed = dir
        .sealing()
        .seal(key.pkcs8(), &aad(&kid), dir.rng().as_ref())
        .map_err(|_| IdpError::server_error())?;
    let stored = StoredKey {
        kid: kid.clone(),
        sealed_pkcs8: sealed,
        created_at: now,
        retired_at: None,
    };
    dir.store()
        .insert(Record::from_value(kinds::SIGNING_KEY, &kid, &stored)?)
        .await?;
    tracing::info!(kid, "created a signing key");
    Ok(kid)
}

async fn build(dir: &Directory) -> IdpResult<Ring> {
    let now = dir.clock().now_unix();
    let mut stored: Vec<StoredKey> = dir
        .store()
        .list(kinds::SIGNING_KEY, None, 1000, now)
        .await?
        .iter()
        .map(Record::decode)
        .collect::<Result<_, _>>()?;
    if !stored.iter().any(|k| k.retired_at.is_none()) {
        create_key(dir, now).await?;
        return Box::pin(build(dir)).await;
    }
    stored.sort_by_key(|k| k.created_at);
    let mut keys = Vec::new();
    for k in &stored {
        let der = dir.sealing().open(&k.sealed_pkcs8, &aad(&k.kid)).map_err(|e| {
            tracing::error!(kid = k.kid, error = %e, "cannot open a signing key: is the at-rest key the one it was sealed with?");
            IdpError::server_error()
        })?;
        keys.push((
            SigningKey::from_pkcs8(&k.kid, &der).map_err(|_| IdpError::server_error())?,
            k.retired_at.is_none(),
        ));
    }
    let jwks: Vec<Jwk> = keys.iter().map(|(k, _)| k.jwk().clone()).collect();
    let keyset = KeySet::from_jwks(&jwks).map_err(|_| IdpError::server_error())?;
    let active = keys
        .into_iter()
        .rfind(|(_, active)| *active)
        .map(|(k, _)| k)
        .ok_or_else(IdpError::server_error)?;
    Ok(Ring {
        active: Arc::new(active),
        keyset: Arc::new(keyset),
        jwks: json!({ "keys": jwks }),
    })
}
