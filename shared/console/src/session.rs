//! Sessions in sealed cookies: the content is encrypted and authenticated (AES-256-GCM with the
//! deployment's key), so a browser can neither read the Salesforce token in it nor change who
//! it says is signed in. A session lasts at most [`MAX_AGE`] and ends after [`IDLE`] unused.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::config::ConsoleConfig;
pub use state::sealed::{SealError, Sealer, random_key};

/// The longest a session lasts, however active.
pub const MAX_AGE: Duration = Duration::hours(8);
/// A session unused this long is over.
pub const IDLE: Duration = Duration::minutes(30);
/// How long a sign-in may take between leaving for Salesforce and coming back.
pub const SIGN_IN_WITHIN: Duration = Duration::minutes(10);

/// A signed-in admin.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// Salesforce user id.
    pub user_id: String,
    /// Their org.
    pub org_id: String,
    /// Their name, shown in the header.
    pub name: String,
    /// Their access token (Salesforce work the console does runs as them).
    pub access_token: String,
    /// Their identity URL (checked again before every change).
    pub identity_url: String,
    /// Their org's instance URL, where the console reads Salesforce as them.
    pub instance_url: String,
    /// The session's CSRF token, in every form.
    pub csrf: String,
    /// Sign-in time.
    pub issued_at: DateTime<Utc>,
    /// Last request.
    pub seen_at: DateTime<Utc>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user_id", &self.user_id)
            .field("org_id", &self.org_id)
            .field("issued_at", &self.issued_at)
            .field("seen_at", &self.seen_at)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Whether the session still counts at `now`.
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        now < self.issued_at + MAX_AGE && now < self.seen_at + IDLE && self.seen_at <= now + Duration::minutes(1)
    }
}

/// A sign-in on its way through Salesforce: what the callback must find again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignIn {
    /// The OAuth `state` sent.
    pub state: String,
    /// The PKCE code verifier whose challenge was sent.
    pub verifier: String,
    /// When it left.
    pub started_at: DateTime<Utc>,
}

/// The cookie names: `__Host-` where cookies are `Secure` (the browser then binds them to this
/// host and path `/`); plain names on a loopback address served over HTTP.
pub fn cookie_name(config: &ConsoleConfig, base: &str) -> String {
    if config.loopback {
        format!("cmsf-{base}")
    } else {
        format!("__Host-cmsf-{base}")
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, `Secure` unless on loopback.
pub fn set_cookie(config: &ConsoleConfig, base: &str, value: &str, max_age: Duration) -> String {
    let secure = if config.loopback { "" } else { "; Secure" };
    format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        cookie_name(config, base),
        max_age.num_seconds().max(0)
    )
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(config: &ConsoleConfig, base: &str) -> String {
    set_cookie(config, base, "", Duration::zero())
}

/// A cookie's value from a `Cookie` header.
pub fn cookie_value<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header
        .split(';')
        .map(str::trim)
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn session(now: DateTime<Utc>) -> Session {
        Session {
            user_id: "005A".into(),
            org_id: "00DA".into(),
            name: "Ada".into(),
            access_token: "00D!secret".into(),
            identity_url: "https://login/id/00DA/005A".into(),
            instance_url: "https://acme.my.salesforce.com".into(),
            csrf: "c".into(),
            issued_at: now,
            seen_at: now,
        }
    }

    #[test]
    fn a_sealed_session_opens_only_unchanged_with_its_key_and_purpose() {
        let sealer = Sealer::new(&[[7; 32]]).unwrap();
        let now = Utc::now();
        let sealed = sealer.seal("session", &session(now)).unwrap();
        assert!(!sealed.contains("secret"), "the token is not readable in the cookie");
        assert_eq!(sealer.open::<Session>("session", &sealed), Some(session(now)));
        assert_eq!(sealer.open::<Session>("sign-in", &sealed), None);
        assert_eq!(
            Sealer::new(&[[8; 32]]).unwrap().open::<Session>("session", &sealed),
            None
        );
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            sealer.open::<Session>("session", &String::from_utf8(tampered).unwrap()),
            None
        );
    }

    #[test]
    fn during_a_key_rotation_the_previous_key_still_opens_and_the_current_one_seals() {
        let now = Utc::now();
        let before = Sealer::new(&[[1; 32]]).unwrap().seal("session", &session(now)).unwrap();
        let rotating = Sealer::new(&[[2; 32], [1; 32]]).unwrap();
        assert_eq!(rotating.open::<Session>("session", &before), Some(session(now)));
        let after = rotating.seal("session", &session(now)).unwrap();
        assert_eq!(
            Sealer::new(&[[2; 32]]).unwrap().open::<Session>("session", &after),
            Some(session(now))
        );
        assert_eq!(
            Sealer::new(&[[2; 32]]).unwrap().open::<Session>("session", &before),
            None,
            "rotation done"
        );
        assert!(Sealer::new(&[]).is_err());
    }

    #[test]
    fn a_session_ends_after_8_hours_or_30_idle_minutes() {
        let start = Utc::now();
        let mut s = session(start);
        assert!(s.live_at(start + Duration::minutes(29)));
        assert!(!s.live_at(start + Duration::minutes(31)), "idle");
        s.seen_at = start + Duration::hours(7) + Duration::minutes(50);
        assert!(s.live_at(start + Duration::hours(7) + Duration::minutes(55)));
        assert!(!s.live_at(start + Duration::hours(8)), "however active");
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_with_the_host_prefix_off_loopback() {
        let mut config = crate::pages::tests_support::config();
        config.loopback = false;
        let cookie = set_cookie(&config, "session", "v", Duration::hours(8));
        assert!(cookie.starts_with("__Host-cmsf-session=v; Path=/; HttpOnly; SameSite=Lax"));
        assert!(cookie.ends_with("; Secure"));
        assert_eq!(
            cookie_value("a=1; __Host-cmsf-session=v; b=2", "__Host-cmsf-session"),
            Some("v")
        );
    }
}
