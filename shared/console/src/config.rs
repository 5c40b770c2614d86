//! What a deployment sets for its console.

/// The custom permission the console requires by default, shipped in `infra/salesforce`
/// (`customPermissions/CM_Sync_Console`).
pub const DEFAULT_PERMISSION: &str = "CM_Sync_Console";

/// The label of the permission set in `infra/salesforce` that grants it
/// (`permissionsets/CM_Sync_Console_Admin`): what the 403 page tells a user to ask for.
pub const DEFAULT_PERMISSION_SET: &str = "CM Sync Console Admin";

/// The console's settings.
#[derive(Clone)]
pub struct ConsoleConfig {
    /// Where browsers reach the console (`http://127.0.0.1:8080`, `https://console.example.com`):
    /// the only `Origin` a change is accepted from, and the base of the OAuth callback.
    pub public_origin: String,
    /// Salesforce's login host (`https://login.salesforce.com`, a My Domain, or the sandbox).
    pub sf_login_url: String,
    /// The connected app's consumer key.
    pub client_id: String,
    /// Its secret, when the connected app requires one for the web server flow.
    pub client_secret: Option<String>,
    /// The only org whose users may sign in (18-character id).
    pub org_id: String,
    /// The custom permission a user must hold (its API name).
    pub permission: String,
    /// The permission set that grants it (named on the 403 page).
    pub permission_set: String,
    /// The key sealing session cookies (32 bytes, from the deployment's secret).
    pub session_key: [u8; 32],
    /// Served on a loopback address: only a loopback `Host` is answered (no DNS rebinding) and
    /// cookies go without `Secure` (plain HTTP).
    pub loopback: bool,
}

impl ConsoleConfig {
    /// The OAuth callback URL, as registered on the connected app.
    pub fn callback_url(&self) -> String {
        format!("{}/auth/callback", self.public_origin.trim_end_matches('/'))
    }
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("public_origin", &self.public_origin)
            .field("sf_login_url", &self.sf_login_url)
            .field("org_id", &self.org_id)
            .field("permission", &self.permission)
            .field("loopback", &self.loopback)
            .finish_non_exhaustive()
    }
}
