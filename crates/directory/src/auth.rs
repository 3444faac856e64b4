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

use serde::{Deserialize, Serialize};
use usher_store::{Record, StoreError};

use crate::model::{TotpMethod, User};
use crate::{DirResult, Directory, DirectoryError, kinds};

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
        let Some(user) = self.find_user_by_upn(upn).await? else {
            // Spend the same work as a real check so timing does not reveal which names exist.
            let _ = self.verify_hash(password, DUMMY_HASH).await;
            return Ok(PasswordCheck::Invalid);
        };
        let now = self.now();
        let state = self.lockout_state(&user.id).await?;
        if let Some(s) = &state {
            if s.permanent {
                return Ok(PasswordCheck::Locked { until: None });
            }
            if let Some(until) = s.locked_until.filter(|u| *u > now) {
                return Ok(PasswordCheck::Locked { until: Some(until) });
            }
        }
        let stored = user
            .password_hash
            .clone()
            .unwrap_or_else(|| DUMMY_HASH.to_owned());
        let ok = self.verify_hash(password, &stored).await? && user.password_hash.is_some();
        if !ok {
            self.record_failure(&user.id, password, now).await?;
            return Ok(PasswordCheck::Invalid);
        }
        if state.is_some() {
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

    async fn verify_hash(&self, password: &str, phc: &str) -> DirResult<bool> {
        self.hashing.verify(password, phc).await
    }

    async fn lockout_state(&self, user_id: &str) -> DirResult<Option<LockoutState>> {
        let rec = self.store.get(kinds::LOCKOUT, user_id, self.now()).await?;
        Ok(rec.map(|r| r.decode()).transpose()?)
    }

    async fn record_failure(&self, user_id: &str, password: &str, now: i64) -> DirResult<()> {
        let fp = usher_crypto::secret::fingerprint(&self.fingerprint_key, &format!("{user_id}\0{password}"));
        let policy = self.lockout;
        for _ in 0..20 {
            let existing = self.store.get(kinds::LOCKOUT, user_id, now).await?;
            let mut state: LockoutState = match &existing {
                Some(r) => r.decode()?,
                None => LockoutState::default(),
            };
            if state.recent_wrong.contains(&fp) {
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
    /// current code. Returns whether the code was right.
    pub async fn register_totp(&self, user_id: &str, secret: &[u8], code: &str) -> DirResult<bool> {
        let now = self.now();
        let Some(step) = usher_crypto::totp::verify(secret, code, now) else {
            return Ok(false);
        };
        let sealed = self
            .sealing
            .seal(secret, &format!("totp:{user_id}"), self.rng.as_ref())?;
        self.modify::<User, _>(kinds::USER, user_id, |u| {
            u.totp = Some(TotpMethod {
                sealed_secret: sealed.clone(),
                registered_at: now,
                last_step: step,
            });
            Ok(None)
        })
        .await?;
        Ok(true)
    }

    /// Checks a TOTP code; each code is accepted once.
    pub async fn verify_totp(&self, user_id: &str, code: &str) -> DirResult<bool> {
        let user = self.get_user(user_id).await?;
        let Some(method) = &user.totp else {
            return Ok(false);
        };
        let secret = self
            .sealing
            .open(&method.sealed_secret, &format!("totp:{}", user.id))?;
        let now = self.now();
        let Some(step) = usher_crypto::totp::verify(&secret, code, now) else {
            return Ok(false);
        };
        if step <= method.last_step {
            return Ok(false);
        }
        let mut replayed = false;
        self.modify::<User, _>(kinds::USER, &user.id, |u| {
            match u.totp.as_mut() {
                Some(m) if m.last_step < step => m.last_step = step,
                _ => replayed = true,
            }
            Ok(None)
        })
        .await?;
        Ok(!replayed)
    }
}

/// A valid argon2id hash of a random password, verified against when the user does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$5r1/xVqkTa1+VqG+NfVpD6m0cJ0rN+1gzBo2lRAdl3s";
