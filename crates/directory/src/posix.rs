//! POSIX identities of directory users on machines (SPEC L2): a UID allocated by the server from
//! a configurable range, stable, never reused (the mapping outlives the user), with a private
//! primary group of the same number.

use serde::{Deserialize, Serialize};
use usher_store::{Record, StoreError};

use crate::{DirResult, Directory, DirectoryError, kinds};

/// The first UID of the default range (SPEC L2).
pub const UID_FIRST: u32 = 0x7000_0000;
/// The last UID of the default range.
pub const UID_LAST: u32 = 0x7FFD_FFFF;

/// How many times an allocation retries under contention.
const ATTEMPTS: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counter {
    next: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Mapping {
    uid: u32,
}

impl Directory {
    /// The UID of `object_id` (allocated on first use). The same object always gets the same
    /// number; a number is never given to another object, even after the first is deleted.
    pub async fn posix_id(&self, object_id: &str) -> DirResult<u32> {
        let id = object_id.to_ascii_lowercase();
        for _ in 0..ATTEMPTS {
            let now = self.clock().now_unix();
            if let Some(rec) = self.store().get(kinds::POSIX_ID, &id, now).await? {
                let m: Mapping = rec.decode()?;
                return Ok(m.uid);
            }
            // Take the next number with a compare-and-swap on the counter, then bind it.
            let uid = match self.store().get(kinds::POSIX_COUNTER, "next", now).await? {
                Some(mut rec) => {
                    let c: Counter = rec.decode()?;
                    if c.next > UID_LAST {
                        return Err(DirectoryError::Invalid(format!(
                            "the UID range {UID_FIRST:#x}-{UID_LAST:#x} is exhausted"
                        )));
                    }
                    rec.data = serde_json::to_value(Counter { next: c.next + 1 }).map_err(|e| {
                        DirectoryError::Invalid(format!("cannot encode the UID counter: {e}"))
                    })?;
                    match self.store().update(rec).await {
                        Ok(_) => c.next,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                None => {
                    let first =
                        Record::from_value(kinds::POSIX_COUNTER, "next", &Counter { next: UID_FIRST + 1 })?;
                    match self.store().insert(first).await {
                        Ok(_) => UID_FIRST,
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let rec = Record::from_value(kinds::POSIX_ID, &id, &Mapping { uid })?.with_key(uid.to_string());
            match self.store().insert(rec).await {
                Ok(_) => return Ok(uid),
                // Someone bound this object meanwhile: theirs stands (this number stays unused).
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DirectoryError::Contended)
    }

    /// The object a UID belongs to, if any.
    pub async fn object_of_posix_id(&self, uid: u32) -> DirResult<Option<String>> {
        let now = self.clock().now_unix();
        Ok(self
            .store()
            .get_by_key(kinds::POSIX_ID, &uid.to_string(), now)
            .await?
            .map(|r| r.id))
    }
}
