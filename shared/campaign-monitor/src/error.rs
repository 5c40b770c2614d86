//! Errors, typed by CM's `Code`, with retryable and permanent made explicit.

use std::time::Duration;

/// A CM API failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmError {
    /// The credentials were refused: 50 (no or bad Basic header), 100 (invalid API key),
    /// 120 (invalid OAuth token), 122 (revoked: the user must authorise again), 60 (token lacks
    /// the permission). Permanent until an admin fixes the credentials.
    #[error("Campaign Monitor refused the credentials (code {code}): {message}")]
    Auth {
        /// CM code.
        code: i64,
        /// CM message.
        message: String,
    },
    /// The OAuth access token expired and refreshing it failed.
    #[error("Campaign Monitor token refresh failed: {0}")]
    Refresh(String),
    /// Rate limited (429) and still limited after the retries.
    #[error("Campaign Monitor rate limit: still refused after {attempts} attempts")]
    RateLimited {
        /// Attempts made.
        attempts: u32,
        /// What CM asked us to wait, if it said.
        retry_after: Option<Duration>,
    },
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
    /// CM answered 5xx, still after the retries.
    #[error("Campaign Monitor is unavailable (HTTP {status}) after {attempts} attempts")]
    Unavailable {
        /// HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// Timeouts or connection failures, still after the retries.
    #[error("cannot reach Campaign Monitor after {attempts} attempts: {message}")]
    Network {
        /// Attempts made.
        attempts: u32,
        /// What failed.
        message: String,
    },
    /// A request CM refused (400/403/404): a bad id, parameter or state. Permanent.
    #[error("Campaign Monitor refused {endpoint} (HTTP {status}, code {code}): {message}")]
    Api {
        /// The endpoint (no query string: it may hold an email address).
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// CM code.
        code: i64,
        /// CM message.
        message: String,
    },
    /// CM answered something that does not fit the documented shape.
    #[error("unexpected response from Campaign Monitor {endpoint}: {detail}")]
    Decode {
        /// The endpoint.
        endpoint: String,
        /// What did not fit.
        detail: String,
    },
    /// The client was configured wrongly (bad base URL, zone).
    #[error("Campaign Monitor client configuration: {0}")]
    Config(String),
}

impl CmError {
    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CmError::RateLimited { .. }
                | CmError::Unavailable { .. }
                | CmError::Network { .. }
                | CmError::Vault { retryable: true, .. }
        )
    }

    /// CM's numeric code, when it gave one.
    pub fn code(&self) -> Option<i64> {
        match self {
            CmError::Auth { code, .. } | CmError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}
