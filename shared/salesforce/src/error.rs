//! Errors, classified by Salesforce's `errorCode` / `statusCode`, not only by HTTP status.

/// A Salesforce failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfError {
    /// The token endpoint refused (`invalid_grant`, `invalid_client`, ...). Permanent until an
    /// admin fixes the connected app, user or key.
    #[error("Salesforce refused to authenticate: {error}: {description}")]
    Auth {
        /// OAuth `error`.
        error: String,
        /// OAuth `error_description`.
        description: String,
    },
    /// The session stayed invalid after renewing it once.
    #[error("Salesforce session invalid even after re-authenticating: {0}")]
    Session(String),
    /// Our own guard: the org's daily API usage passed the configured share.
    #[error("not starting new work: the org has used {used} of its {max} daily API requests (guard at {percent}%)")]
    AllocationGuard {
        /// Calls used in the rolling 24 hours.
        used: u64,
        /// The allocation.
        max: u64,
        /// The guard, in percent.
        percent: u32,
    },
    /// Salesforce refused: `REQUEST_LIMIT_EXCEEDED` (403).
    #[error("Salesforce request limit exceeded: {0}")]
    RequestLimit(String),
    /// The tokens the deployment's processes share could not be read, renewed in turn or
    /// saved.
    #[error("shared tokens: {message}")]
    Vault {
        /// What failed (never a token).
        message: String,
        /// A later attempt may succeed (the store or the secret was unreachable, another process
        /// was still renewing).
        retryable: bool,
    },
    /// 5xx, `SERVER_UNAVAILABLE` or `UNABLE_TO_LOCK_ROW`, still after the retries.
    #[error("Salesforce unavailable ({code}) after {attempts} attempts")]
    Unavailable {
        /// The code or HTTP status.
        code: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Timeouts or connection failures, still after the retries.
    #[error("cannot reach Salesforce after {attempts} attempts: {message}")]
    Network {
        /// Attempts made.
        attempts: u32,
        /// What failed.
        message: String,
    },
    /// A request Salesforce refused (bad field, malformed query, ...). Permanent.
    #[error("Salesforce refused the request (HTTP {status}, {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// `errorCode`.
        code: String,
        /// Message.
        message: String,
    },
    /// A Bulk API 2.0 job failed or was aborted.
    #[error("Bulk API job {job_id} ended {state}: {message}")]
    Bulk {
        /// Job id.
        job_id: String,
        /// Final state.
        state: String,
        /// `errorMessage`.
        message: String,
    },
    /// A response that does not fit the documented shape.
    #[error("unexpected Salesforce response: {0}")]
    Decode(String),
    /// Client configuration (key, URL).
    #[error("Salesforce client configuration: {0}")]
    Config(String),
}

impl SfError {
    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SfError::Unavailable { .. } | SfError::Network { .. } | SfError::Vault { retryable: true, .. }
        )
    }
}

/// `errorCode`s worth retrying with backoff.
pub fn is_transient_code(code: &str) -> bool {
    matches!(
        code,
        "UNABLE_TO_LOCK_ROW" | "SERVER_UNAVAILABLE" | "QUERY_TIMEOUT" | NOT_PROCESSED
    )
}

/// Our code for a record Salesforce gave no outcome for: a Bulk job's row in no result file
/// (or matching no uploaded row), a row the job left unprocessed, a record with no result.
/// Nothing says it failed, so it is written again (our updates and duplicate-tolerant creates
/// make that harmless), and if it still has no outcome it waits in the retry queue: never a
/// permanent failure.
pub const NOT_PROCESSED: &str = "NOT_PROCESSED";
