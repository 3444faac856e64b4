//! Password verification with smart lockout (SPEC T5) and TOTP (SPEC T6).
//!
//! Smart lockout, exactly as T5 words it:
//! - consecutive failures are counted per user; a success resets the count;
//! - the 10th consecutive failure locks the account for 60 s; every further 10 failures lock it
//!   again, each time twice as long (60 s, 120 s, 240 s, ... at most a day);
//! - while locked, every attempt, the right password included, is refused as locked and is not
//!   counted (the password is not even checked);
//! - a wrong password equal to one of the last three wrong passwords is not counted again;
//! - the 100th consecutive failure locks the account until an administrator unlocks it.
//!
//! Wrong one-time codes count as failures too (the count is of failed sign-in attempts, any
//! factor), so knowing the password does not open an unlimited guess at the code: for a user who
//! needs MFA, only the completed sign-in (the right code) resets the count. Checks for one user
//! run one at a time, so parallel guesses cannot all pass the lock check first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};
use usher_store::{Record, StoreError};

use crate::model::{TotpMethod, User};
use crate::{DirResult, Directory, DirectoryError, kinds};

/// Longest password checked; longer input is refused without hashing.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Per-user gates serialising credential checks.
#[derive(Debug, Default, Clone)]
pub(crate) struct UserGates(Arc<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>>);

impl UserGates {
    async fn enter(&self, user_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let gate = {
            let mut map = match self.0.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            if map.len() > 4096 {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(user_id).and_then(Weak::upgrade) {
                Some(g) => g,
                None => {
                    let g = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(user_id.to_owned(), Arc::downgrade(&g));
                    g
                }
            }
        };
        gate.lock_owned().await
    }
}

/// The outcome of checking a one-time code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// Right code, not used before.
    Valid,
    /// Wrong, reused, or no authenticator registered.
    Invalid,
    /// Locked by smart lockout.
    Locked,
}

/// Smart-lockout settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock (10).
    pub threshold: u32,
    /// First lock duration in seconds (60).
    pub first_lock_secs: i64,
    /// Longest timed lock (a day).
    pub max_lock_secs: i64,
    /// Failures after which only an administrator unlocks (100).
    pub permanent_after: u32,
    /// Distinct recent wrong passwords remembered (3).
    pub remembered_wrong: usize,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            threshold: 10,
            first_lock_secs: 60,
            max_lock_secs: 86_400,
            permanent_after: 100,
            remembered_wrong: 3,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockoutState {
    consecutive_failures: u32,
    locks: u32,
    locked_until: Option<i64>,
    permanent: bool,
    recent_wrong: Vec<String>,
}

/// The outcome of checking a user's password.
#[derive(Debug, Clone)]
pub enum PasswordCheck {
    /// Right password, account usable.
    Valid(Box<User>),
    /// No such user, or the wrong password (both answered alike: AADSTS50126).
    Invalid,
    /// Locked by smart lockout (AADSTS50053); `until` is `None` when only an admin can unlock.
    Locked {
        /// End of the lock.
        until: Option<i64>,
    },
    /// Right password, account disabled (AADSTS50057).
    Disabled(Box<User>),
    /// Right password, but it is temporary or expired and must be changed (AADSTS50055).
    MustChange(Box<User>),
}

impl Directory {
    /// Checks a user's password, applying smart lockout.
    pub async fn check_password(&self, upn: &str, password: &str) -> DirResult<PasswordCheck> {
        if password.chars().count() > MAX_PASSWORD_CHARS {
            return Ok(PasswordCheck::Invalid);
        }
        let Some(user) = self.find_user_by_upn(upn).await? else {
            // Spend the same work as a real check so timing does not reveal which names exist.
            let _ = self.verify_hash(password, DUMMY_HASH).await;
            return Ok(PasswordCheck::Invalid);
        };
        let _gate = self.user_gates.enter(&user.id).await;
        let now = self.now();
        if let Some(until) = self.locked(&user.id, now).await? {
            return Ok(PasswordCheck::Locked { until });
        }
        let stored = user
            .password_hash
            .clone()
            .unwrap_or_else(|| DUMMY_HASH.to_owned());
        let ok = self.verify_hash(password, &stored).await? && user.password_hash.is_some();
        if !ok {
            self.record_failure(&user.id, &format!("pwd\0{password}"), now)
                .await?;
            return Ok(PasswordCheck::Invalid);
        }
        // With a second factor still to come, only the completed sign-in resets the count.
        if !user.mfa_state.requires_mfa() {
            self.store.delete(kinds::LOCKOUT, &user.id, None).await?;
        }
        if !user.account_enabled {
            return Ok(PasswordCheck::Disabled(Box::new(user)));
        }
        let policy = self.tenant().await?.password_policy;
        if user.force_change_password_next_sign_in || policy.is_expired(user.password_set_at, now) {
            return Ok(PasswordCheck::MustChange(Box::new(user)));
        }
        Ok(PasswordCheck::Valid(Box::new(user)))
    }

    /// When the user is locked: `Some(Some(until))` for a timed lock, `Some(None)` until an admin unlocks.
    async fn locked(&self, user_id: &str, now: i64) -> DirResult<Option<Option<i64>>> {
        Ok(match self.lockout_state(user_id).await? {
            Some(s) if s.permanent => Some(None),
            Some(s) => s.locked_until.filter(|u| *u > now).map(Some),
            None => None,
        })
    }

    async fn verify_hash(&self, password: &str, phc: &str) -> DirResult<bool> {
        self.hashing.verify(password, phc).await
    }

    async fn lockout_state(&self, user_id: &str) -> DirResult<Option<LockoutState>> {
        let rec = self.store.get(kinds::LOCKOUT, user_id, self.now()).await?;
        Ok(rec.map(|r| r.decode()).transpose()?)
    }

    async fn record_failure(&self, user_id: &str, attempt: &str, now: i64) -> DirResult<()> {
        self.note_failure(user_id, now).await?;
        let fp = usher_crypto::secret::fingerprint(&self.fingerprint_key, &format!("{user_id}\0{attempt}"));
        let policy = self.lockout;
        for _ in 0..20 {
            let existing = self.store.get(kinds::LOCKOUT, user_id, now).await?;
            let mut state: LockoutState = match &existing {
                Some(r) => r.decode()?,
                None => LockoutState::default(),
            };
            // Attempts while locked are not counted; neither is a repeated wrong secret.
            if state.permanent
                || state.locked_until.is_some_and(|u| u > now)
                || state.recent_wrong.contains(&fp)
            {
                return Ok(());
            }
            state.recent_wrong.push(fp.clone());
            while state.recent_wrong.len() > policy.remembered_wrong {
                state.recent_wrong.remove(0);
            }
            state.consecutive_failures += 1;
            if state.consecutive_failures >= policy.permanent_after {
                state.permanent = true;
            } else if state.consecutive_failures.is_multiple_of(policy.threshold) {
                state.locks += 1;
                let factor = 1i64 << (state.locks - 1).min(20);
                state.locked_until = Some(now + (policy.first_lock_secs * factor).min(policy.max_lock_secs));
            }
            let result = match existing {
                Some(mut r) => {
                    r.data =
                        serde_json::to_value(&state).map_err(|e| DirectoryError::Invalid(e.to_string()))?;
                    self.store.update(r).await.map(|_| ())
                }
                None => self
                    .store
                    .insert(Record::from_value(kinds::LOCKOUT, user_id, &state)?)
                    .await
                    .map(|_| ()),
            };
            match result {
                Ok(()) => {
                    if state.locked_until.is_some_and(|u| u > now) || state.permanent {
                        tracing::warn!(
                            user_id,
                            failures = state.consecutive_failures,
                            "account locked by smart lockout"
                        );
                    }
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DirectoryError::Contended)
    }

    /// Clears smart lockout for a user.
    pub async fn unlock_user(&self, id_or_upn: &str) -> DirResult<User> {
        let user = self.get_user(id_or_upn).await?;
        self.store.delete(kinds::LOCKOUT, &user.id, None).await?;
        Ok(user)
    }

    /// Registers a TOTP authenticator whose secret the user was shown, once they prove it with a
    /// current code. Returns whether the code was right. An authenticator registered meanwhile
    /// (another sign-in) is never replaced.
    pub async fn register_totp(&self, user_id: &str, secret: &[u8], code: &str) -> DirResult<bool> {
        let _gate = self.user_gates.enter(user_id).await;
        let now = self.now();
        if self.locked(user_id, now).await?.is_some() {
            return Ok(false);
        }
        let Some(step) = usher_crypto::totp::verify(secret, code, now) else {
            return Ok(false);
        };
        let sealed = self
            .sealing
            .seal(secret, &format!("totp:{user_id}"), self.rng.as_ref())?;
        let mut registered = false;
        self.modify::<User, _>(kinds::USER, user_id, |u| {
            registered = false;
            if u.totp.is_none() {
                u.totp = Some(TotpMethod {
                    sealed_secret: sealed.clone(),
                    registered_at: now,
                    last_step: step,
                });
                registered = true;
            }
            Ok(None)
        })
        .await?;
        if registered {
            self.store.delete(kinds::LOCKOUT, user_id, None).await?;
        }
        Ok(registered)
    }

    /// Checks a TOTP code under smart lockout; each code is accepted once. A wrong code counts
    /// as a failed sign-in; the right one completes the sign-in and resets the count.
    pub async fn verify_totp(&self, user_id: &str, code: &str) -> DirResult<TotpCheck> {
        let _gate = self.user_gates.enter(user_id).await;
        let now = self.now();
        if self.locked(user_id, now).await?.is_some() {
            return Ok(TotpCheck::Locked);
        }
        let user = self.get_user(user_id).await?;
        let Some(method) = &user.totp else {
            return Ok(TotpCheck::Invalid);
        };
        let secret = self
            .sealing
            .open(&method.sealed_secret, &format!("totp:{}", user.id))?;
        let step = usher_crypto::totp::verify(&secret, code, now).filter(|s| *s > method.last_step);
        let Some(step) = step else {
            self.record_failure(&user.id, &format!("otp\0{code}"), now)
                .await?;
            return Ok(TotpCheck::Invalid);
        };
        let mut replayed = false;
        self.modify::<User, _>(kinds::USER, &user.id, |u| {
            replayed = false;
            match u.totp.as_mut() {
                Some(m) if m.last_step < step => m.last_step = step,
                _ => replayed = true,
            }
            Ok(None)
        })
        .await?;
        if replayed {
            return Ok(TotpCheck::Invalid);
        }
        self.store.delete(kinds::LOCKOUT, &user.id, None).await?;
        Ok(TotpCheck::Valid)
    }
}

/// A valid argon2id hash of a random password, verified against when the user does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5r1/xVqkTa1+VqG+NfVpD6m0cJ0rN+1gzBo2lRAdl3s";
