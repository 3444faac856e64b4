//! Sign-in and audit logs (SPEC T8). Audit events are written before the change they record is
//! acknowledged. Sign-in events go through a batching writer (one transaction for many events) so
//! the token endpoint does not wait for a disk flush per request; reading the log flushes first.

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use usher_store::Store;

use std::sync::Arc;

use crate::{DirResult, Directory};

/// Stream names.
pub mod streams {
    /// Sign-in log.
    pub const SIGNIN: &str = "signin";
    /// Audit log.
    pub const AUDIT: &str = "audit";
}

/// A sign-in attempt, in Graph's `signIn` shape.
#[derive(Debug, Clone, Default)]
pub struct SignInEvent {
    /// User's UPN (empty for app sign-ins).
    pub user_principal_name: String,
    /// User's object id.
    pub user_id: String,
    /// Client application id.
    pub app_id: String,
    /// Client application name.
    pub app_display_name: String,
    /// Resource the token was for.
    pub resource_id: String,
    /// Client IP address.
    pub ip_address: String,
    /// The grant or page used.
    pub client_app_used: String,
    /// Authentication methods satisfied (`password`, `totp`, `clientSecret`, ...).
    pub authentication_methods: Vec<String>,
    /// 0 for success, else the AADSTS code.
    pub error_code: u32,
    /// Why it failed.
    pub failure_reason: String,
    /// Conditional Access outcome (`notApplied` until policies exist).
    pub conditional_access_status: String,
    /// Correlation id of the request.
    pub correlation_id: String,
    /// Every Conditional Access policy's result (Graph's `appliedConditionalAccessPolicies`).
    pub applied_policies: Vec<usher_proto::ca::PolicyResultWire>,
    /// Sign-in risk during the sign-in (`none`, `low`, `medium`, `high`; empty: not assessed).
    pub risk_level: String,
    /// The risk signals seen.
    pub risk_signals: Vec<String>,
}

/// A sign-in log entry as stored: Graph's `signIn` shape.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SignInRecord<'a> {
    id: &'a str,
    created_date_time: &'a str,
    user_principal_name: &'a str,
    user_id: &'a str,
    app_id: &'a str,
    app_display_name: &'a str,
    resource_id: &'a str,
    ip_address: &'a str,
    client_app_used: &'a str,
    authentication_methods_used: &'a [String],
    correlation_id: &'a str,
    conditional_access_status: &'a str,
    applied_conditional_access_policies: &'a [usher_proto::ca::PolicyResultWire],
    risk_level_during_sign_in: &'a str,
    risk_event_types: &'a [String],
    status: SignInStatus<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct SignInStatus<'a> {
    error_code: u32,
    failure_reason: &'a str,
}

/// An audited change, in Graph's `directoryAudit` shape.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    /// What was done (`Add user`, ...).
    pub activity: String,
    /// `UserManagement`, `GroupManagement`, `ApplicationManagement`, ...
    pub category: String,
    /// Who did it: object id.
    pub actor_id: String,
    /// Who did it: UPN or app name.
    pub actor_name: String,
    /// The object changed.
    pub target_id: String,
    /// Its name.
    pub target_name: String,
    /// Its type (`User`, `Group`, ...).
    pub target_type: String,
    /// Extra details.
    pub details: Value,
}

/// Entries queued for the writer at most; past that, writers wait.
const LOG_QUEUE: usize = 8192;
/// Entries written in one transaction at most.
const MAX_BATCH: usize = 2000;
/// How long the writer gathers entries before writing (a flush request writes at once).
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

enum Msg {
    Entry(String, i64, String),
    Flush(oneshot::Sender<()>),
}

/// The batching log writer.
#[derive(Debug, Clone)]
pub struct LogWriter {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl LogWriter {
    pub(crate) fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Msg>(LOG_QUEUE);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = Vec::new();
                let mut flushes = Vec::new();
                let take = |msg: Msg,
                            batch: &mut Vec<(String, i64, String)>,
                            flushes: &mut Vec<oneshot::Sender<()>>| match msg {
                    Msg::Entry(s, at, v) => batch.push((s, at, v)),
                    Msg::Flush(ack) => flushes.push(ack),
                };
                take(first, &mut batch, &mut flushes);
                // Under load, gather entries for a moment so one transaction (one fsync) carries many.
                let deadline = tokio::time::Instant::now() + GATHER;
                while batch.len() < MAX_BATCH && flushes.is_empty() {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(msg)) => take(msg, &mut batch, &mut flushes),
                        Ok(None) | Err(_) => break,
                    }
                }
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(msg) => take(msg, &mut batch, &mut flushes),
                        Err(_) => break,
                    }
                }
                if !batch.is_empty() {
                    let n = batch.len();
                    if let Err(first_error) = store.append_log(batch.clone()).await {
                        tracing::warn!(error = %first_error, "could not write log entries; retrying once");
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        if let Err(e) = store.append_log(batch).await {
                            tracing::error!(error = %e, lost = n, "could not write log entries");
                        }
                    }
                }
                for ack in flushes {
                    let _ = ack.send(());
                }
            }
        });
        Self { tx }
    }

    /// Queues an entry. When the writer falls behind, this waits for room (backpressure) rather
    /// than dropping entries or growing without bound.
    async fn send(&self, stream: &str, at: i64, value: String) {
        if self
            .tx
            .send(Msg::Entry(stream.to_owned(), at, value))
            .await
            .is_err()
        {
            tracing::error!(stream, "log writer stopped; entry dropped");
        }
    }

    /// Waits until every entry sent before this call is stored.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

impl Directory {
    /// Records a sign-in attempt (batched).
    pub async fn log_sign_in(&self, e: SignInEvent) {
        let at = self.now();
        let id = self.new_id();
        let created = usher_core::rfc3339(at);
        let entry = SignInRecord {
            id: &id,
            created_date_time: &created,
            user_principal_name: &e.user_principal_name,
            user_id: &e.user_id,
            app_id: &e.app_id,
            app_display_name: &e.app_display_name,
            resource_id: &e.resource_id,
            ip_address: &e.ip_address,
            client_app_used: &e.client_app_used,
            authentication_methods_used: &e.authentication_methods,
            correlation_id: &e.correlation_id,
            conditional_access_status: if e.conditional_access_status.is_empty() {
                "notApplied"
            } else {
                &e.conditional_access_status
            },
            applied_conditional_access_policies: &e.applied_policies,
            risk_level_during_sign_in: if e.risk_level.is_empty() {
                "none"
            } else {
                &e.risk_level
            },
            risk_event_types: &e.risk_signals,
            status: SignInStatus {
                error_code: e.error_code,
                failure_reason: if e.error_code == 0 && e.failure_reason.is_empty() {
                    "Other."
                } else {
                    &e.failure_reason
                },
            },
        };
        match serde_json::to_string(&entry) {
            Ok(text) => self.logs.send(streams::SIGNIN, at, text).await,
            Err(err) => tracing::error!(error = %err, "could not encode a sign-in log entry"),
        }
    }

    /// Records an audited change durably before returning.
    pub async fn audit(&self, e: AuditEvent) -> DirResult<()> {
        let at = self.now();
        let value = json!({
            "id": self.new_id(),
            "activityDateTime": usher_core::rfc3339(at),
            "activityDisplayName": e.activity,
            "category": e.category,
            "result": "success",
            "initiatedBy": {"user": {"id": e.actor_id, "userPrincipalName": e.actor_name}},
            "targetResources": [{"id": e.target_id, "displayName": e.target_name, "type": e.target_type}],
            "additionalDetails": e.details,
        });
        self.store
            .append_log(vec![(streams::AUDIT.to_owned(), at, value.to_string())])
            .await?;
        Ok(())
    }

    /// Reads a log newest first (`stream`: `signin` or `audit`), after flushing pending entries.
    pub async fn read_log(&self, stream: &str, limit: usize) -> DirResult<Vec<Value>> {
        self.logs.flush().await;
        let entries = self.store.read_log(stream, None, limit).await?;
        Ok(entries.into_iter().map(|e| e.data).collect())
    }
}
