//! The one reader of the environment, for every binary (the three functions and `cm-sf-admin`).
//! Each value is read once at start; a binary asks for what it needs and a missing one names
//! the variable.

use std::collections::BTreeMap;

use crate::StartupError;

/// The variables this project reads.
/// (`MIMALLOC_*` are read by the allocator itself, before `main`: listed so the template's
/// check knows them.)
pub const VARIABLES: [&str; 23] = [
    "STATE_TABLE",
    "EVENT_BUS",
    "KEYS_SECRET_ID",
    "CM_SECRET_ID",
    "SF_SECRET_ID",
    "WEBHOOK_SECRET_ID",
    "FAILED_INVOCATIONS_QUEUE_URL",
    "CM_BASE_URL",
    "SF_API_VERSION",
    "LOG_LEVEL",
    "AWS_LAMBDA_LOG_LEVEL",
    "RUST_LOG",
    "AWS_LAMBDA_FUNCTION_NAME",
    "ALLOW_PLAIN_HTTP",
    "CONSOLE_SECRET_ID",
    "CONSOLE_ORG_ID",
    "CONSOLE_SF_LOGIN_URL",
    "CONSOLE_PUBLIC_ORIGIN",
    "AWS_REGION",
    "CM_PAGES_IN_FLIGHT",
    "SF_REQUESTS_IN_FLIGHT",
    "MIMALLOC_ARENA_EAGER_COMMIT",
    "MIMALLOC_PURGE_DELAY",
];

/// The Salesforce API version used when `SF_API_VERSION` is not set.
pub const DEFAULT_SF_API_VERSION: &str = "66.0";

/// The configuration of a binary, read from its environment.
#[derive(Debug, Clone, Default)]
pub struct Config {
    values: BTreeMap<&'static str, String>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Config {
        Config::from_vars(
            VARIABLES
                .iter()
                .filter_map(|name| Some((*name, std::env::var(name).ok()?))),
        )
    }

    /// A configuration from explicit values (tests); blank values count as unset.
    pub fn from_vars<V: Into<String>>(vars: impl IntoIterator<Item = (&'static str, V)>) -> Config {
        Config {
            values: vars
                .into_iter()
                .map(|(name, value)| (name, value.into()))
                .filter(|(_, value)| !value.trim().is_empty())
                .collect(),
        }
    }

    /// A variable's value, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn required(&self, name: &'static str) -> Result<&str, StartupError> {
        self.values
            .get(name)
            .map(String::as_str)
            .ok_or(StartupError::Missing(name))
    }

    /// `STATE_TABLE`: the DynamoDB table.
    pub fn state_table(&self) -> Result<&str, StartupError> {
        self.required("STATE_TABLE")
    }

    /// `EVENT_BUS`: the EventBridge bus.
    pub fn event_bus(&self) -> Result<&str, StartupError> {
        self.required("EVENT_BUS")
    }

    /// `CM_SECRET_ID`: the Campaign Monitor credentials' secret.
    pub fn cm_secret_id(&self) -> Result<&str, StartupError> {
        self.required("CM_SECRET_ID")
    }

    /// `SF_SECRET_ID`: the Salesforce credentials' secret.
    pub fn sf_secret_id(&self) -> Result<&str, StartupError> {
        self.required("SF_SECRET_ID")
    }

    /// `KEYS_SECRET_ID`: the deployment's keys (peppers of person keys, the shared tokens' key).
    pub fn keys_secret_id(&self) -> Result<&str, StartupError> {
        self.required("KEYS_SECRET_ID")
    }

    /// `WEBHOOK_SECRET_ID`: the webhook token's secret.
    pub fn webhook_secret_id(&self) -> Result<&str, StartupError> {
        self.required("WEBHOOK_SECRET_ID")
    }

    /// `FAILED_INVOCATIONS_QUEUE_URL` (the admin's `replay`): the functions' on-failure
    /// destination, the stack output `FailedInvocationsQueueUrl`.
    pub fn failed_invocations_queue_url(&self) -> Result<&str, StartupError> {
        self.required("FAILED_INVOCATIONS_QUEUE_URL")
    }

    /// `CONSOLE_SECRET_ID`: the admin console's own secret (its External Client App and cookie
    /// keys: `console::config::ConsoleSecret`).
    pub fn console_secret_id(&self) -> Result<&str, StartupError> {
        self.required("CONSOLE_SECRET_ID")
    }

    /// `CONSOLE_ORG_ID`: the only org whose users may sign in to the console.
    pub fn console_org_id(&self) -> Result<&str, StartupError> {
        self.required("CONSOLE_ORG_ID")
    }

    /// `CONSOLE_SF_LOGIN_URL`: where the console sends admins to sign in.
    pub fn console_sf_login_url(&self) -> Result<&str, StartupError> {
        self.required("CONSOLE_SF_LOGIN_URL")
    }

    /// `CONSOLE_PUBLIC_ORIGIN`, optional: the console's address when it is not its Function URL
    /// (a custom domain in front of it; the local stack's address).
    pub fn console_public_origin(&self) -> Option<&str> {
        self.get("CONSOLE_PUBLIC_ORIGIN")
    }

    /// `AWS_REGION`: set by Lambda in every function's environment.
    pub fn aws_region(&self) -> Result<&str, StartupError> {
        self.required("AWS_REGION")
    }

    /// `CM_BASE_URL`, default the production API root.
    pub fn cm_base_url(&self) -> &str {
        self.values
            .get("CM_BASE_URL")
            .map_or(campaign_monitor::DEFAULT_BASE_URL, String::as_str)
    }

    /// `CM_PAGES_IN_FLIGHT`, default [`engine::DEFAULT_CM_PAGES_IN_FLIGHT`]: requests a
    /// campaign's read has in flight to CM at most (one a stream, to 12).
    pub fn cm_pages_in_flight(&self) -> Result<usize, StartupError> {
        let streams = mapping::ActivityKind::COUNT;
        self.bounded("CM_PAGES_IN_FLIGHT", engine::DEFAULT_CM_PAGES_IN_FLIGHT, streams..=12)
    }

    /// `SF_REQUESTS_IN_FLIGHT`, default [`salesforce::DEFAULT_REQUESTS_IN_FLIGHT`]: requests
    /// one invocation has in flight to Salesforce at most (1 to 5; times the function's
    /// reserved concurrency, the share of the org's 25 concurrent long-running requests).
    pub fn sf_requests_in_flight(&self) -> Result<usize, StartupError> {
        self.bounded("SF_REQUESTS_IN_FLIGHT", salesforce::DEFAULT_REQUESTS_IN_FLIGHT, 1..=5)
    }

    fn bounded(
        &self,
        name: &'static str,
        default: usize,
        range: std::ops::RangeInclusive<usize>,
    ) -> Result<usize, StartupError> {
        let Some(text) = self.get(name) else {
            return Ok(default);
        };
        match text.trim().parse::<usize>() {
            Ok(value) if range.contains(&value) => Ok(value),
            _ => Err(StartupError::Invalid(format!(
                "{name} `{text}` is not a whole number from {} to {}",
                range.start(),
                range.end()
            ))),
        }
    }

    /// Whether `ALLOW_PLAIN_HTTP` is `1` or `true`: only the local stack sets it (its sandbox
    /// speaks plain HTTP); the template never does.
    pub fn plain_http_allowed(&self) -> bool {
        self.values
            .get("ALLOW_PLAIN_HTTP")
            .is_some_and(|v| matches!(v.trim(), "1" | "true"))
    }

    /// Refuses a plain-HTTP URL for `what` (credentials and people's data go over it) unless
    /// [`Config::plain_http_allowed`].
    pub fn require_https(&self, what: &str, url: &str) -> Result<(), StartupError> {
        if url.trim().to_ascii_lowercase().starts_with("https://") || self.plain_http_allowed() {
            return Ok(());
        }
        Err(StartupError::Insecure(format!(
            "{what} must be an https:// URL (plain HTTP only for the local sandbox, with ALLOW_PLAIN_HTTP=1)"
        )))
    }

    /// The admin console's settings, checked as the function checks them at start (and
    /// `cm-sf-admin doctor` before a deploy): an error names the variable.
    pub fn console_settings(&self) -> Result<ConsoleSettings, StartupError> {
        let org_id = self.console_org_id()?.trim().to_owned();
        if !mapping::settings::is_org_id(&org_id) {
            return Err(StartupError::Invalid(format!(
                "CONSOLE_ORG_ID `{org_id}` is not an 18-character Salesforce org id (00D…; Setup → Company Information): no one could sign in"
            )));
        }
        let sf_login_url = bare_origin("CONSOLE_SF_LOGIN_URL", self.console_sf_login_url()?)?;
        self.require_https("CONSOLE_SF_LOGIN_URL", &sf_login_url)?;
        let public_origin = match self.console_public_origin() {
            Some(fixed) => {
                let fixed = bare_origin("CONSOLE_PUBLIC_ORIGIN", fixed)?;
                self.require_https("CONSOLE_PUBLIC_ORIGIN", &fixed)?;
                Some(fixed)
            }
            None => None,
        };
        Ok(ConsoleSettings {
            org_id,
            sf_login_url,
            public_origin,
        })
    }

    /// `SF_API_VERSION`, default [`DEFAULT_SF_API_VERSION`].
    pub fn sf_api_version(&self) -> &str {
        self.values
            .get("SF_API_VERSION")
            .map_or(DEFAULT_SF_API_VERSION, String::as_str)
    }

    /// The log filter: `LOG_LEVEL`, else Lambda's `AWS_LAMBDA_LOG_LEVEL` (the function's
    /// application log level), else `RUST_LOG`, else `info`.
    /// Inside Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set) TRACE becomes DEBUG: at TRACE the
    /// runtime logs raw events, with the webhook token in the path and addresses in the body.
    pub fn log_filter(&self) -> String {
        let filter = ["LOG_LEVEL", "AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
            .iter()
            .find_map(|name| self.values.get(name))
            .map_or("info", String::as_str);
        if self.values.contains_key("AWS_LAMBDA_FUNCTION_NAME") {
            filter.to_ascii_lowercase().replace("trace", "debug")
        } else {
            filter.to_owned()
        }
    }
}

/// The admin console's settings from the environment ([`Config::console_settings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// `CONSOLE_ORG_ID`: the only org whose users may sign in.
    pub org_id: String,
    /// `CONSOLE_SF_LOGIN_URL`, scheme and host only.
    pub sf_login_url: String,
    /// `CONSOLE_PUBLIC_ORIGIN`, scheme and host only; `None`: the function's own URL.
    pub public_origin: Option<String>,
}

/// `scheme://host[:port]` with no path, query or trailing slash.
fn bare_origin(variable: &str, url: &str) -> Result<String, StartupError> {
    let url = url.trim().trim_end_matches('/');
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or_default();
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(StartupError::Invalid(format!(
            "{variable} must be scheme and host only, such as https://login.salesforce.com"
        )));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_blank_variable_is_named_and_optional_ones_have_defaults() {
        let config = Config::from_vars([("STATE_TABLE", "state"), ("EVENT_BUS", "  ")]);
        assert_eq!(config.state_table().unwrap(), "state");
        let error = config.event_bus().unwrap_err();
        assert_eq!(error.to_string(), "environment variable EVENT_BUS is required");
        assert_eq!(config.cm_base_url(), campaign_monitor::DEFAULT_BASE_URL);
        assert_eq!(config.sf_api_version(), DEFAULT_SF_API_VERSION);
    }

    #[test]
    fn requests_in_flight_default_to_a_safe_share_and_refuse_a_bad_value_by_name() {
        let unset = Config::from_vars([("STATE_TABLE", "state")]);
        assert_eq!(unset.cm_pages_in_flight().unwrap(), engine::DEFAULT_CM_PAGES_IN_FLIGHT);
        assert_eq!(
            unset.sf_requests_in_flight().unwrap(),
            salesforce::DEFAULT_REQUESTS_IN_FLIGHT
        );
        let set = Config::from_vars([("CM_PAGES_IN_FLIGHT", "8"), ("SF_REQUESTS_IN_FLIGHT", "6")]);
        assert_eq!(set.cm_pages_in_flight().unwrap(), 8);
        let error = set.sf_requests_in_flight().unwrap_err().to_string();
        assert!(
            error.contains("SF_REQUESTS_IN_FLIGHT `6`") && error.contains("1 to 5"),
            "{error}"
        );
        let fewer_than_streams = Config::from_vars([("CM_PAGES_IN_FLIGHT", "2")]);
        assert!(fewer_than_streams.cm_pages_in_flight().is_err());
    }

    #[test]
    fn plain_http_is_refused_unless_the_local_flag_allows_it() {
        let deployed = Config::from_vars([("CM_BASE_URL", "http://api.createsend.com")]);
        let error = deployed
            .require_https("CM_BASE_URL", deployed.cm_base_url())
            .unwrap_err();
        assert!(error.to_string().contains("must be an https:// URL"), "{error}");
        assert!(
            deployed
                .require_https("token_host", "https://login.salesforce.com")
                .is_ok()
        );
        let local = Config::from_vars([("CM_BASE_URL", "http://127.0.0.1:9000"), ("ALLOW_PLAIN_HTTP", "1")]);
        assert!(local.require_https("CM_BASE_URL", local.cm_base_url()).is_ok());
    }

    #[test]
    fn trace_logging_is_for_outside_lambda_only() {
        assert_eq!(Config::from_vars([("LOG_LEVEL", "TRACE")]).log_filter(), "TRACE");
        let in_lambda = Config::from_vars([("LOG_LEVEL", "TRACE"), ("AWS_LAMBDA_FUNCTION_NAME", "scheduled-sync")]);
        assert_eq!(in_lambda.log_filter(), "debug");
        let filter =
            Config::from_vars([("RUST_LOG", "engine=trace,info"), ("AWS_LAMBDA_FUNCTION_NAME", "f")]).log_filter();
        assert_eq!(filter, "engine=debug,info");
        assert_eq!(
            Config::from_vars([("AWS_LAMBDA_FUNCTION_NAME", "f")]).log_filter(),
            "info"
        );
    }
}
