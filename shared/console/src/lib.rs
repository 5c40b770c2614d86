//! The admin console (PRODUCT.md §9): the pages a Salesforce admin uses day to day, signed in
//! with Salesforce. Server-rendered HTML that works without JavaScript; every change is a plain
//! form (POST → redirect → GET) that calls the same engine operation as its `cm-sf-admin`
//! command ([`ACTIONS`] keeps the map).
//!
//! Layers, each a module: [`config`] (what a deployment sets), [`pkce`] (RFC 7636 S256 and
//! random tokens), [`session`] (sealed cookies with absolute and idle expiry), [`salesforce`]
//! (the OAuth 2.0 web server flow, the identity URL, revocation, with the signed-in admin's own
//! token), [`guard`] (what every response and every change goes through: security headers,
//! loopback `Host`, session, CSRF token and `Origin`), and [`pages`] (one handler per page,
//! templates in `templates/`).
//!
//! Crates chosen, and why:
//! - `axum` (already the sandbox's server): routing and extractors; one router serves the
//!   local console and, behind a Lambda adapter, the deployed one.
//! - `askama`: templates compiled into the binary and type-checked, HTML-escaped by default, so
//!   a campaign named `<script>` is text.
//! - `aws-lc-rs` (already in the tree through `jsonwebtoken`): AES-256-GCM to seal the session
//!   cookie and a system random source for tokens; no second crypto stack (`cookie`'s private
//!   jar would bring `aes-gcm` and an older `rand`).
//! - `sha2`, `base64` (already in the workspace): the PKCE S256 challenge.
//! - `subtle`: constant-time comparison of CSRF tokens and OAuth `state`.

pub mod config;
pub mod guard;
pub mod pages;
pub mod pkce;
pub mod salesforce;
pub mod session;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use events::publisher::{EventSink, Publisher};
use state::{
    AuditStore, CatalogStore, LeaseStore, LinkStore, PreviewStore, RetryQueue, RunStore, SettingsStore, WatermarkStore,
    WebhookEventStore,
};

pub use config::ConsoleConfig;

/// Each console action and the `cm-sf-admin` command that does the same (one implementation,
/// two renderings): kept by a test against the CLI's own command list.
pub const ACTIONS: &[(&str, &str)] = &[
    ("view Campaign Settings", "settings show"),
    ("preview a settings change", "settings diff"),
    ("preview a settings change on recent campaigns", "sync"),
    ("save Campaign Settings", "settings apply"),
    ("edit the whole settings document (Advanced)", "settings apply"),
    ("list runs", "runs"),
    ("open a run and its failures", "run"),
    ("find a person's failures by address", "runs"),
    ("retry a run's failed people", "retry"),
    ("view the audit of changes", "audit"),
    ("list links", "links"),
    ("sync a linked campaign now", "sync"),
    ("unlink a campaign", "unlink"),
    ("link a CM campaign to an SF Campaign, picked by name", "link"),
    ("read the list of CM campaigns again", "campaigns"),
    ("dry run of a linked campaign", "sync"),
    ("backfill a range of dates (preview, then confirm)", "backfill"),
];

/// Every route: method, path, and whether it is served without a session (sign-in, the OAuth
/// callback, the stylesheet and icon, and the health check only). A test walks it.
pub const ROUTES: &[(&str, &str, bool)] = &[
    ("GET", "/health", true),
    ("GET", "/static/console.css", true),
    ("GET", "/static/favicon.svg", true),
    ("GET", "/signin", true),
    ("GET", "/auth/start", true),
    ("GET", "/auth/callback", true),
    ("GET", "/", false),
    ("GET", "/settings", false),
    ("POST", "/settings/preview", false),
    ("POST", "/settings/confirm", false),
    ("POST", "/settings/impact", false),
    ("GET", "/settings/impact/{preview_id}", false),
    ("GET", "/settings/advanced", false),
    ("POST", "/settings/advanced/preview", false),
    ("GET", "/runs", false),
    ("POST", "/runs/search", false),
    ("GET", "/runs/{run_id}", false),
    ("POST", "/runs/{run_id}/retry", false),
    ("GET", "/audit", false),
    ("GET", "/links", false),
    ("POST", "/links/{cm}/sync", false),
    ("GET", "/links/{cm}/unlink", false),
    ("POST", "/links/{cm}/unlink", false),
    ("POST", "/links/{cm}/dry-run", false),
    ("GET", "/links/dry-run/{preview_id}", false),
    ("GET", "/links/new", false),
    ("POST", "/links/new", false),
    ("POST", "/campaigns/refresh", false),
    ("GET", "/links/backfill", false),
    ("POST", "/links/backfill", false),
    ("POST", "/signout", false),
];

/// What the console's store must do: settings, runs, links and their schedule, the retry
/// queue, the audit, previews and the catalog of CM campaigns.
pub trait ConsoleStore:
    SettingsStore
    + RunStore
    + LinkStore
    + WatermarkStore
    + WebhookEventStore
    + RetryQueue
    + AuditStore
    + PreviewStore
    + CatalogStore
    + LeaseStore
    + 'static
{
}

impl<T> ConsoleStore for T where
    T: SettingsStore
        + RunStore
        + LinkStore
        + WatermarkStore
        + WebhookEventStore
        + RetryQueue
        + AuditStore
        + PreviewStore
        + CatalogStore
        + LeaseStore
        + 'static
{
}

/// Where the console's requests for work go: the deployment's bus (a retry's sync, a preview).
pub trait ConsoleSink: EventSink + 'static {}

impl<T: EventSink + 'static> ConsoleSink for T {}

/// What every handler shares, built once. The console holds no CM or SF credentials of the
/// integration: it reads and writes the state table, asks the functions for work through the
/// bus, and calls Salesforce with the signed-in admin's own token.
#[derive(Debug)]
pub struct Console<S, P> {
    /// The deployment's console settings.
    pub config: ConsoleConfig,
    /// The state table.
    pub store: Arc<S>,
    /// The deployment's event bus.
    pub publisher: Arc<Publisher<P>>,
    /// Salesforce, with the signed-in admin's token.
    pub salesforce: salesforce::SalesforceAuth,
}

/// The shared state handed to handlers.
pub type App<S, P> = Arc<Console<S, P>>;

/// The console's routes. Every route but sign-in, the OAuth callback, the stylesheet and the
/// health check needs a session; every response carries the security headers.
pub fn router<S: ConsoleStore, P: ConsoleSink>(console: Console<S, P>) -> Router {
    let app: App<S, P> = Arc::new(console);
    let signed_in = Router::new()
        .route("/", get(pages::overview::show::<S, P>))
        .route("/settings", get(pages::settings::show::<S, P>))
        .route("/settings/preview", post(pages::settings::preview::<S, P>))
        .route("/settings/confirm", post(pages::settings::confirm::<S, P>))
        .route("/settings/impact", post(pages::impact::request::<S, P>))
        .route("/settings/impact/{preview_id}", get(pages::impact::show::<S, P>))
        .route("/settings/advanced", get(pages::advanced::show::<S, P>))
        .route("/settings/advanced/preview", post(pages::advanced::preview::<S, P>))
        .route("/runs", get(pages::runs::list::<S, P>))
        .route("/runs/search", post(pages::runs::search::<S, P>))
        .route("/runs/{run_id}", get(pages::runs::show::<S, P>))
        .route("/runs/{run_id}/retry", post(pages::runs::retry::<S, P>))
        .route("/audit", get(pages::audit::list::<S, P>))
        .route("/links", get(pages::links::list::<S, P>))
        .route("/links/{cm}/sync", post(pages::links::sync_now::<S, P>))
        .route("/links/{cm}/unlink", get(pages::links::confirm_unlink::<S, P>))
        .route("/links/{cm}/unlink", post(pages::links::unlink::<S, P>))
        .route("/links/{cm}/dry-run", post(pages::dry_run::request::<S, P>))
        .route("/links/dry-run/{preview_id}", get(pages::dry_run::show::<S, P>))
        .route("/links/new", get(pages::link_new::show::<S, P>))
        .route("/links/new", post(pages::link_new::link::<S, P>))
        .route("/campaigns/refresh", post(pages::catalog::refresh::<S, P>))
        .route("/links/backfill", get(pages::backfill::show::<S, P>))
        .route("/links/backfill", post(pages::backfill::confirm::<S, P>))
        .route("/signout", post(pages::signin::sign_out::<S, P>))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::require_session::<S, P>,
        ));
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/static/console.css", get(pages::stylesheet))
        .route("/static/favicon.svg", get(pages::icon))
        .route("/signin", get(pages::signin::page::<S, P>))
        .route("/auth/start", get(pages::signin::start::<S, P>))
        .route("/auth/callback", get(pages::signin::callback::<S, P>))
        .merge(signed_in)
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::host_and_headers::<S, P>,
        ))
        .with_state(app)
}
