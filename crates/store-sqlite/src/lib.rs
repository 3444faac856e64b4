//! SQLite backend of usher's store: the embedded default. WAL journal with `synchronous=FULL`,
//! so an acknowledged write survives a crash or power loss; migrations run at open.
#![warn(missing_docs)]

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use usher_store::{LogEntry, Record, Store, StoreError, StoreResult};

/// Rows per multi-row INSERT of log entries (3 parameters each).
const LOG_ROWS_PER_STATEMENT: usize = 300;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/0001_init.sql"))];

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

fn row_to_record(row: &sqlx::sqlite::SqliteRow) -> StoreResult<Record> {
    let data: String = row.try_get("data").map_err(db_err)?;
    Ok(Record {
        kind: row.try_get("kind").map_err(db_err)?,
        id: row.try_get("id").map_err(db_err)?,
        key: row.try_get("key").map_err(db_err)?,
        version: row.try_get("version").map_err(db_err)?,
        expires_at: row.try_get("expires_at").map_err(db_err)?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and runs migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::open_with(options).await
    }

    /// Opens a `sqlite://` URL.
    pub async fn open_url(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        Self::open_with(options).await
    }

    async fn open_with(options: SqliteConnectOptions) -> StoreResult<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        let current = current.unwrap_or(0);
        for (version, sql) in MIGRATIONS {
            if *version <= current {
                continue;
            }
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(db_err)?;
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            tracing::info!(version, "applied SQLite migration");
        }
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, kind: &str, id: &str, now: i64) -> StoreResult<Option<Record>> {
        let row = sqlx::query(
            "SELECT kind, id, key, version, expires_at, data FROM records WHERE kind = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)"
        )
        .bind(kind)
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(row_to_record).transpose()
    }

    async fn get_by_key(&self, kind: &str, key: &str, now: i64) -> StoreResult<Option<Record>> {
        let row = sqlx::query(
            "SELECT kind, id, key, version, expires_at, data FROM records WHERE kind = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"
        )
        .bind(kind)
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(row_to_record).transpose()
    }

    async fn list(
        &self,
        kind: &str,
        after: Option<&str>,
        limit: usize,
        now: i64,
    ) -> StoreResult<Vec<Record>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT kind, id, key, version, expires_at, data FROM records WHERE kind = ? AND id > ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY id LIMIT ?"
        )
        .bind(kind)
        .bind(after.unwrap_or(""))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(row_to_record).collect()
    }

    async fn insert(&self, mut record: Record) -> StoreResult<Record> {
        let data = record.data.to_string();
        let result = sqlx::query(
            "INSERT INTO records (kind, id, key, version, expires_at, data) VALUES (?, ?, ?, 1, ?, ?)",
        )
        .bind(&record.kind)
        .bind(&record.id)
        .bind(&record.key)
        .bind(record.expires_at)
        .bind(&data)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => {
                record.version = 1;
                Ok(record)
            }
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict {
                kind: record.kind,
                id: record.id,
                reason: "the id or key is already taken",
            }),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn update(&self, mut record: Record) -> StoreResult<Record> {
        let data = record.data.to_string();
        let result = sqlx::query(
            "UPDATE records SET key = ?, expires_at = ?, data = ?, version = version + 1 WHERE kind = ? AND id = ? AND version = ?",
        )
        .bind(&record.key)
        .bind(record.expires_at)
        .bind(&data)
        .bind(&record.kind)
        .bind(&record.id)
        .bind(record.version)
        .execute(&self.pool)
        .await;
        match result {
            Ok(r) if r.rows_affected() == 1 => {
                record.version += 1;
                Ok(record)
            }
            Ok(_) => {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM records WHERE kind = ? AND id = ?")
                        .bind(&record.kind)
                        .bind(&record.id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(db_err)?;
                match exists {
                    Some(_) => Err(StoreError::Conflict {
                        kind: record.kind,
                        id: record.id,
                        reason: "the record changed since it was read",
                    }),
                    None => Err(StoreError::NotFound {
                        kind: record.kind,
                        id: record.id,
                    }),
                }
            }
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict {
                kind: record.kind,
                id: record.id,
                reason: "the key is already taken",
            }),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn delete(&self, kind: &str, id: &str, version: Option<i64>) -> StoreResult<bool> {
        let result = match version {
            Some(v) => {
                sqlx::query("DELETE FROM records WHERE kind = ? AND id = ? AND version = ?")
                    .bind(kind)
                    .bind(id)
                    .bind(v)
                    .execute(&self.pool)
                    .await
            }
            None => {
                sqlx::query("DELETE FROM records WHERE kind = ? AND id = ?")
                    .bind(kind)
                    .bind(id)
                    .execute(&self.pool)
                    .await
            }
        }
        .map_err(db_err)?;
        Ok(result.rows_affected() > 0)
    }

    async fn take(&self, kind: &str, id: &str, now: i64) -> StoreResult<Option<Record>> {
        let row = sqlx::query("DELETE FROM records WHERE kind = ? AND id = ? RETURNING kind, id, key, version, expires_at, data")
            .bind(kind)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let record = row.as_ref().map(row_to_record).transpose()?;
        Ok(record.filter(|r| !r.is_expired(now)))
    }

    async fn append_log(&self, entries: Vec<(String, i64, String)>) -> StoreResult<Vec<i64>> {
        // Many rows per statement, and no RETURNING: sqlx streams returned rows one by one across
        // threads, which costs a wake-up per entry. Inside this transaction the rows of one
        // statement get consecutive sequence numbers, ending at the last inserted rowid.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut seqs = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(LOG_ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO log (stream, at, data) VALUES {}",
                vec!["(?, ?, ?)"; chunk.len()].join(", ")
            );
            // Only placeholders are formatted into the statement; values are bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (stream, at, data) in chunk {
                q = q.bind(stream.clone()).bind(*at).bind(data.clone());
            }
            let result = q.execute(&mut *tx).await.map_err(db_err)?;
            let last = result.last_insert_rowid();
            let n = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
            seqs.extend((last - n + 1)..=last);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(seqs)
    }

    async fn read_log(&self, stream: &str, before: Option<i64>, limit: usize) -> StoreResult<Vec<LogEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT seq, stream, at, data FROM log WHERE stream = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
        )
        .bind(stream)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|row| {
                let data: String = row.try_get("data").map_err(db_err)?;
                Ok(LogEntry {
                    seq: row.try_get("seq").map_err(db_err)?,
                    stream: row.try_get("stream").map_err(db_err)?,
                    at: row.try_get("at").map_err(db_err)?,
                    data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    async fn purge_expired(&self, now: i64) -> StoreResult<u64> {
        let r = sqlx::query("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(r.rows_affected())
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
