//! usher's directory (SPEC D1–D4, D7, T5, T8): the tenant, users, groups, applications and
//! service principals, password verification with smart lockout, TOTP, and the sign-in and
//! audit logs. Storage goes through the `usher-store` trait; time and randomness are passed in.
#![warn(missing_docs)]

mod apps;
mod auth;
mod bootstrap;
pub mod conditional_access;
mod error;
mod groups;
mod hashing;
mod logs;
pub mod model;
mod passkeys;
pub mod posix;
pub mod risk;
mod users;

use std::sync::Arc;

use usher_core::{Clock, Rng};
use usher_store::Store;

pub use apps::NewApplication;
pub use auth::{LockoutPolicy, PasswordCheck, TotpCheck};
pub use bootstrap::{BootstrapOptions, BootstrapReport, OWNER_ROLE_ID, derived_guid};
pub use error::DirectoryError;
pub use logs::{AuditEvent, LogWriter, SignInEvent};
pub use users::{NewUser, UserPatch};

/// Result of directory operations.
pub type DirResult<T> = Result<T, DirectoryError>;

/// Record kinds of the directory.
pub mod kinds {
    /// The tenant.
    pub const TENANT: &str = "tenant";
    /// Users (key: lower-cased UPN).
    pub const USER: &str = "user";
    /// Groups.
    pub const GROUP: &str = "group";
    /// Applications (key: appId).
    pub const APPLICATION: &str = "application";
    /// Service principals (key: appId).
    pub const SERVICE_PRINCIPAL: &str = "sp";
    /// Smart-lockout state per user (id: user id).
    pub const LOCKOUT: &str = "lockout";
    /// POSIX UIDs of directory objects (id: object id; key: the UID). Never deleted.
    pub const POSIX_ID: &str = "posix_id";
    /// The next free UID.
    pub const POSIX_COUNTER: &str = "posix_counter";
}

/// The directory service.
#[derive(Debug, Clone)]
pub struct Directory {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Rng>,
    /// Runs argon2 on a fixed pool of threads (CPU and memory = threads × 19 MiB).
    hashing: hashing::HashPool,
    /// Key of the fingerprints of recently tried wrong passwords.
    fingerprint_key: Arc<[u8]>,
    sealing: Arc<usher_crypto::at_rest::SealingKey>,
    lockout: LockoutPolicy,
    logs: LogWriter,
    apps_cache: apps::AppCache,
    /// One gate per user: credential checks of a user run one at a time, so concurrent guesses
    /// cannot all pass the lockout check before any failure is counted.
    user_gates: auth::UserGates,
    group_cache: groups::GroupCache,
    ca_cache: conditional_access::CaCache,
    risk_cache: risk::RiskCache,
    /// Bumped at every change of users and groups: machines' login caches wait on it.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Directory {
    /// A directory over `store`. `sealing` encrypts secrets at rest; `fingerprint_key` keys the
    /// fingerprints kept for smart lockout.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Rng>,
        sealing: Arc<usher_crypto::at_rest::SealingKey>,
        fingerprint_key: Arc<[u8]>,
    ) -> Self {
        let hashing_threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(1);
        let logs = LogWriter::spawn(store.clone());
        let hashing = hashing::HashPool::start(hashing_threads, rng.clone());
        Self {
            store,
            clock,
            rng,
            hashing,
            fingerprint_key,
            sealing,
            lockout: LockoutPolicy::default(),
            logs,
            apps_cache: apps::AppCache::default(),
            user_gates: auth::UserGates::default(),
            group_cache: groups::GroupCache::default(),
            ca_cache: conditional_access::CaCache::default(),
            risk_cache: risk::RiskCache::default(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// Replaces the lockout policy (tests and operators).
    #[must_use]
    pub fn with_lockout_policy(mut self, policy: LockoutPolicy) -> Self {
        self.lockout = policy;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The randomness source.
    pub fn rng(&self) -> &Arc<dyn Rng> {
        &self.rng
    }

    /// The log writer.
    pub fn logs(&self) -> &LogWriter {
        &self.logs
    }

    /// The at-rest sealing key.
    pub fn sealing(&self) -> &usher_crypto::at_rest::SealingKey {
        &self.sealing
    }

    fn now(&self) -> i64 {
        self.clock.now_unix()
    }

    /// A receiver that sees every later change of users and groups (this server's changes;
    /// another replica's are seen when a long poll times out).
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn changed(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A fresh random GUID (object ids, trace and correlation ids).
    pub fn new_id(&self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill(&mut b);
        uuid::Builder::from_random_bytes(b).into_uuid().to_string()
    }
}
