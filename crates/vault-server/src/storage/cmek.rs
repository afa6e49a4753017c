//! The stored state of a CMEK rotation job.

use std::fmt;
use std::str::FromStr;

/// Where a CMEK rotation job is.
///
/// # Example
///
/// ```
/// use vault_server::CmekJobStatus;
///
/// assert_eq!(CmekJobStatus::Paused.as_str(), "paused");
/// assert_eq!("completed".parse::<CmekJobStatus>(), Ok(CmekJobStatus::Completed));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CmekJobStatus {
    /// Re-encrypting batches now.
    Running,
    /// Stopped by a restart: the keys live only in memory, so the client must send them again
    /// (the same `POST …/cmek-rotate` resumes the job).
    Paused,
    /// Every flagged version is under the new key.
    Completed,
    /// Stopped on a version that does not open with the old key; `error` says which. Every
    /// version is still readable with exactly the key its fingerprint names.
    Failed,
}

impl CmekJobStatus {
    /// The status as the API and the database spell it.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(vault_server::CmekJobStatus::Running.as_str(), "running");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CmekJobStatus::Running => "running",
            CmekJobStatus::Paused => "paused",
            CmekJobStatus::Completed => "completed",
            CmekJobStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for CmekJobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CmekJobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<CmekJobStatus, String> {
        match s {
            "running" => Ok(CmekJobStatus::Running),
            "paused" => Ok(CmekJobStatus::Paused),
            "completed" => Ok(CmekJobStatus::Completed),
            "failed" => Ok(CmekJobStatus::Failed),
            other => Err(format!("unknown CMEK job status {other:?}")),
        }
    }
}

/// A CMEK rotation job: fingerprints and progress only, never a key.
///
/// # Example
///
/// ```
/// use vault_server::{CmekJobRecord, CmekJobStatus};
///
/// let job = CmekJobRecord {
///     id: "j1".into(), vault_id: "v1".into(), old_fingerprint: "aa".into(),
///     new_fingerprint: "bb".into(), status: CmekJobStatus::Running, processed: 0, total: 3,
///     error: None, created_at: 0, updated_at: 0,
/// };
/// assert_eq!(job.total, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmekJobRecord {
    /// The job id (UUID).
    pub id: String,
    /// The vault.
    pub vault_id: String,
    /// SHA-256 (hex) of the key the values are moved from.
    pub old_fingerprint: String,
    /// SHA-256 (hex) of the key the values are moved to.
    pub new_fingerprint: String,
    /// Where the job is.
    pub status: CmekJobStatus,
    /// Versions re-encrypted so far.
    pub processed: u64,
    /// Versions flagged with the old key when the job started.
    pub total: u64,
    /// Why the job failed or paused.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}
