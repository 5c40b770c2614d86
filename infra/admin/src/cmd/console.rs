//! `console`: the admin console served on a loopback address against this deployment.

use std::net::SocketAddr;
use std::sync::Arc;

use console::salesforce::SalesforceAuth;
use console::{Console, ConsoleConfig};
use serde_json::json;

use crate::context::{Context, Failure, Report};

fn required(name: &str) -> Result<String, Failure> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Failure(format!("{name} is not set (see `cm-sf-admin console --help`)")))
}

fn optional(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The console's configuration from the environment, for `listen`.
fn config(listen: SocketAddr) -> Result<ConsoleConfig, Failure> {
    if !listen.ip().is_loopback() {
        return Err(Failure(format!(
            "{listen} is not a loopback address: the local console serves only 127.0.0.1 or ::1 (the deployed console has its own URL)"
        )));
    }
    // A key of this process: sessions end when the console stops.
    let session_key = console::session::random_key().map_err(|e| Failure(e.to_string()))?;
    Ok(ConsoleConfig {
        public_origin: format!("http://{listen}"),
        sf_login_url: optional("CONSOLE_SF_LOGIN_URL", "https://login.salesforce.com"),
        client_id: required("CONSOLE_CLIENT_ID")?,
        client_secret: std::env::var("CONSOLE_CLIENT_SECRET").ok().filter(|s| !s.is_empty()),
        org_id: required("CONSOLE_ORG_ID")?,
        permission: optional("CONSOLE_PERMISSION", console::config::DEFAULT_PERMISSION),
        permission_set: optional("CONSOLE_PERMISSION_SET", console::config::DEFAULT_PERMISSION_SET),
        session_keys: vec![session_key],
        loopback: true,
    })
}

pub async fn run(context: &Context, listen: SocketAddr) -> Result<Report, Failure> {
    let config = config(listen)?;
    let store = Arc::new(context.store().await?);
    let publisher = Arc::new(context.publisher().await?);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let origin = config.public_origin.clone();
    eprintln!("console: {origin} (sign in with Salesforce; Ctrl-C stops it)");
    let app = console::router(Console {
        config,
        store,
        publisher,
        salesforce: SalesforceAuth::new()?,
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(Report::new("console stopped", json!({"stopped": origin})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_console_refuses_any_address_but_loopback() {
        for address in ["0.0.0.0:8080", "192.0.2.10:8080", "[::]:8080"] {
            let refused = config(address.parse().unwrap_or_else(|_| panic!("{address}")));
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|Failure(m)| m.contains("not a loopback address")),
                "{address}: {:?}",
                refused.err()
            );
        }
    }
}
