//! usher's storage abstraction: a versioned record store with a unique secondary key per kind,
//! one-shot records, and append-only logs. Backends live in their own crates; one conformance
//! suite (`usher-store-tests`) runs against each.
//!
//! Every write returns only after the backend has made it durable (SQLite WAL with
//! `synchronous=FULL`, PostgreSQL with `synchronous_commit=on`).
#![warn(missing_docs)]

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Errors of every store backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No record with that id (or key).
    #[error("record `{kind}/{id}` not found")]
    NotFound {
        /// The record kind.
        kind: String,
        /// The id or key looked up.
        id: String,
    },
    /// The id or unique key is taken, or the record changed since it was read.
    #[error("conflict on `{kind}/{id}`: {reason}")]
    Conflict {
        /// The record kind.
        kind: String,
        /// The id written.
        id: String,
        /// What conflicted.
        reason: &'static str,
    },
    /// The database could not be reached or refused the operation.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database URL or configuration is not usable.
    #[error("invalid store configuration: {0}")]
    Config(String),
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Kind of record (`user`, `group`, ...): a namespace for ids and keys.
    pub kind: String,
    /// Id, unique within the kind.
    pub id: String,
    /// Optional secondary key, unique within the kind (for example a lower-cased UPN).
    pub key: Option<String>,
    /// Version, starting at 1 and increased by every update.
    pub version: i64,
    /// Unix time after which the record no longer exists for readers.
    pub expires_at: Option<i64>,
    /// The record's JSON data.
    pub data: Value,
}

impl Record {
    /// A new record (version 0 until inserted).
    pub fn new(kind: &str, id: impl Into<String>, data: Value) -> Self {
        Self {
            kind: kind.to_owned(),
            id: id.into(),
            key: None,
            version: 0,
            expires_at: None,
            data,
        }
    }

    /// Sets the unique secondary key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets an expiry time.
    #[must_use]
    pub fn with_expiry(mut self, at: i64) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// A record holding a serialised value.
    pub fn from_value<T: Serialize>(kind: &str, id: impl Into<String>, value: &T) -> StoreResult<Self> {
        let data = serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Self::new(kind, id, data))
    }

    /// Decodes the data.
    pub fn decode<T: DeserializeOwned>(&self) -> StoreResult<T> {
        serde_json::from_value(self.data.clone())
            .map_err(|e| StoreError::Corrupt(format!("{}/{}: {e}", self.kind, self.id)))
    }

    /// Whether the record has expired at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// An entry of an append-only log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Sequence number, increasing across all streams.
    pub seq: i64,
    /// Stream name (`signin`, `audit`, ...).
    pub stream: String,
    /// Unix time of the event.
    pub at: i64,
    /// The event.
    pub data: Value,
}

/// The storage every usherd replica shares.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Reads one record; expired records read as absent.
    async fn get(&self, kind: &str, id: &str, now: i64) -> StoreResult<Option<Record>>;

    /// Reads one record by its secondary key; expired records read as absent.
    async fn get_by_key(&self, kind: &str, key: &str, now: i64) -> StoreResult<Option<Record>>;

    /// Lists records of a kind in id order, starting after `after`, at most `limit`.
    async fn list(&self, kind: &str, after: Option<&str>, limit: usize, now: i64)
    -> StoreResult<Vec<Record>>;

    /// Inserts a new record; `Conflict` if the id or key is taken. Returns it with version 1.
    async fn insert(&self, record: Record) -> StoreResult<Record>;

    /// Replaces a record's key, expiry and data if its stored version equals `record.version`
    /// (compare-and-swap); `Conflict` otherwise, `NotFound` if it is gone. Returns the new version.
    async fn update(&self, record: Record) -> StoreResult<Record>;

    /// Deletes a record; with `version`, only if it is unchanged. Returns whether one was deleted.
    async fn delete(&self, kind: &str, id: &str, version: Option<i64>) -> StoreResult<bool>;

    /// Atomically deletes and returns a record (one-time use: authorization codes and the like).
    /// Expired records are deleted and read as absent.
    async fn take(&self, kind: &str, id: &str, now: i64) -> StoreResult<Option<Record>>;

    /// Appends entries `(stream, unix time, JSON text)` to logs in one transaction, returning their
    /// sequence numbers. The JSON is produced by the caller (serialised once, on the hot path).
    async fn append_log(&self, entries: Vec<(String, i64, String)>) -> StoreResult<Vec<i64>>;

    /// Reads a log stream newest first, entries with `seq < before` (all when `None`), at most `limit`.
    async fn read_log(&self, stream: &str, before: Option<i64>, limit: usize) -> StoreResult<Vec<LogEntry>>;

    /// Removes expired records; returns how many.
    async fn purge_expired(&self, now: i64) -> StoreResult<u64>;

    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
}
