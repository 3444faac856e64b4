//! PostgreSQL backend of usher's store: the scale-out path. Commits wait for the WAL flush
//! (`synchronous_commit=on`), so an acknowledged write survives a crash; migrations run at open.
#![warn(missing_docs)]

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use usher_store::{LogEntry, Record, Store, StoreError, StoreResult};

/// Rows per multi-row INSERT of log entries (3 parameters each).
const LOG_ROWS_PER_STATEMENT: usize = 300;

/// Advisory lock key that serialises migrations across replicas ("usher" in ASCII).
const MIGRATION_LOCK_ID: i64 = 0x0075_7368_6572;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/0001_init.sql"))];

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

fn row_to_record(row: &sqlx::postgres::PgRow) -> StoreResult<Record> {
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

impl PostgresStore {
    /// Connects to a `postgres://` URL and runs migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(e.to_string()))?
            .options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        // Several replicas may start at once: migrate in one transaction under an advisory lock,
        // reading the schema version only once the lock is held.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_ID)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let current = current.unwrap_or(0);
        for (version, sql) in MIGRATIONS {
            if *version <= current {
                continue;
            }
            sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(db_err)?;
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tracing::info!(version, "applied PostgreSQL migration");
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn get(&self, kind: &str, id: &str, now: i64) -> StoreResult<Option<Record>> {
        let row = sqlx::query(
            "SELECT kind, id, key, version, expires_at, data FROM records WHERE kind = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3)"
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
            "SELECT kind, id, key, version, expires_at, data FROM records WHERE kind = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)"
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
            "SELECT kind, id, key, version, expires_at, data FROM records WHERE kind = $1 AND id > $2 AND (expires_at IS NULL OR expires_at > $3) ORDER BY id LIMIT $4"
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
            "INSERT INTO records (kind, id, key, version, expires_at, data) VALUES ($1, $2, $3, 1, $4, $5)",
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
            "UPDATE records SET key = $1, expires_at = $2, data = $3, version = version + 1 WHERE kind = $4 AND id = $5 AND version = $6",
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
                    sqlx::query_scalar("SELECT version FROM records WHERE kind = $1 AND id = $2")
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
                sqlx::query("DELETE FROM records WHERE kind = $1 AND id = $2 AND version = $3")
                    .bind(kind)
                    .bind(id)
                    .bind(v)
                    .execute(&self.pool)
                    .await
            }
            None => {
                sqlx::query("DELETE FROM records WHERE kind = $1 AND id = $2")
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
        let row = sqlx::query("DELETE FROM records WHERE kind = $1 AND id = $2 RETURNING kind, id, key, version, expires_at, data")
            .bind(kind)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let record = row.as_ref().map(row_to_record).transpose()?;
        Ok(record.filter(|r| !r.is_expired(now)))
    }

    async fn append_log(&self, entries: Vec<(String, i64, String)>) -> StoreResult<Vec<i64>> {
        // Many rows per statement: the sign-in log takes one entry per token request.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut seqs = Vec::with_capacity(entries.len());
        for chunk in entries.chunks(LOG_ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3))
                .collect();
            let sql = format!(
                "INSERT INTO log (stream, at, data) VALUES {} RETURNING seq",
                rows.join(", ")
            );
            // Only placeholders are formatted into the statement; values are bound.
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            for (stream, at, data) in chunk {
                q = q.bind(stream.clone()).bind(*at).bind(data.clone());
            }
            let mut got = q.fetch_all(&mut *tx).await.map_err(db_err)?;
            got.sort_unstable();
            seqs.extend(got);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(seqs)
    }

    async fn read_log(&self, stream: &str, before: Option<i64>, limit: usize) -> StoreResult<Vec<LogEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT seq, stream, at, data FROM log WHERE stream = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
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
        let r = sqlx::query("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= $1")
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

/// Helpers for tests that need a fresh PostgreSQL database.
pub mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};

    use sqlx::Connection;

    /// Name of the environment variable that points tests at a PostgreSQL server.
    pub const TEST_URL_VAR: &str = "USHER_TEST_POSTGRES_URL";

    /// Creates an empty database on the server named by `USHER_TEST_POSTGRES_URL` and returns
    /// its URL.
    pub async fn fresh_database() -> Result<String, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var(TEST_URL_VAR).map_err(|_| {
            format!(
                "{TEST_URL_VAR} is not set: run the tests through scripts/test.sh, which starts PostgreSQL"
            )
        })?;
        let name = format!(
            "usher_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos() % 1_000_000_000
        );
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .map_err(|e| format!("connect {base}: {e}"))?;
        // The name is built from digits and a fixed prefix only.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("create database: {e}"))?;
        let mut url = url_without_db(&base);
        url.push('/');
        url.push_str(&name);
        if let Some(q) = base.split_once('?').map(|(_, q)| q) {
            url.push('?');
            url.push_str(q);
        }
        Ok(url)
    }

    fn url_without_db(base: &str) -> String {
        let no_query = base.split('?').next().unwrap_or(base);
        let after_scheme = no_query.find("://").map_or(0, |i| i + 3);
        match no_query[after_scheme..].find('/') {
            Some(i) => no_query[..after_scheme + i].to_owned(),
            None => no_query.to_owned(),
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn strips_database() {
            assert_eq!(
                super::url_without_db("postgres://u@h:5/db?x=1"),
                "postgres://u@h:5"
            );
            assert_eq!(super::url_without_db("postgres://u@h:5"), "postgres://u@h:5");
        }
    }
}
