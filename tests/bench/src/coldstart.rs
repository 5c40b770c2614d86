//! Cold start of each function: from spawning its release binary to its first request for an
//! event on a local Lambda runtime API, i.e. everything `main` does once per container
//! (configuration, its secrets from Secrets Manager on the emulator, clients) plus process
//! start. Each function gets the variables the template gives it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::sync::mpsc;

/// The functions, each with the variables it starts with beyond the table and bus (secret ids
/// are filled in with the bench's own secrets).
pub const FUNCTIONS: [&str; 5] = [
    "scheduled-sync",
    "webhook-consumer",
    "campaign-autocreate",
    "webhook-intake",
    "admin-console",
];

/// Cold start figures of one function, milliseconds.
pub struct ColdStart {
    pub function: &'static str,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
}

/// Every function's cold start.
pub async fn measure_all(runs: usize) -> Result<Vec<ColdStart>, String> {
    let mut all = Vec::new();
    for function in FUNCTIONS {
        all.push(measure(function, runs).await?);
    }
    Ok(all)
}

/// Starts `function` `runs` times (the first is a warm-up: page cache) and measures each.
pub async fn measure(function: &'static str, runs: usize) -> Result<ColdStart, String> {
    let binary = super::sibling(function)?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let suffix = format!("{}-{function}", std::process::id());
    let (cm_secret, sf_secret) = (format!("bench-cm-{suffix}"), format!("bench-sf-{suffix}"));
    let (hook_secret, console_secret) = (format!("bench-hook-{suffix}"), format!("bench-console-{suffix}"));
    let keys_secret = format!("bench-keys-{suffix}");
    let sf = serde_json::json!({
        "flow": "jwt_bearer", "token_host": "http://127.0.0.1:9", "client_id": "bench",
        "username": "bench@example.com", "private_key_pem": include_str!("../../sandbox/fixtures/jwt-test-key.pem"),
    });
    let console = serde_json::json!({
        "client_id": "bench", "client_secret": "bench",
        "cookie_keys": ["AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="],
    });
    for (name, value) in [
        (&cm_secret, serde_json::json!({"api_key": "bench"})),
        (&sf_secret, sf),
        (
            &hook_secret,
            serde_json::json!({"token": "bench-token-of-at-least-32-characters"}),
        ),
        (&console_secret, console),
        (
            &keys_secret,
            serde_json::json!({"key": "bench-key-of-at-least-32-characters-long"}),
        ),
    ] {
        secrets
            .create_secret()
            .name(name)
            .secret_string(value.to_string())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "create secret: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
    }

    let (sender, mut receiver) = mpsc::unbounded_channel::<Instant>();
    let app = Router::new().route(
        "/2018-06-01/runtime/invocation/next",
        get(move || {
            let sender = sender.clone();
            async move {
                let _ = sender.send(Instant::now());
                // Hold the long poll, as the runtime API does while there is no event.
                tokio::time::sleep(Duration::from_secs(60)).await;
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut samples = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(&binary)
            .envs(crate::allocator_env(function)?)
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("STATE_TABLE", "bench")
            .env("EVENT_BUS", "bench")
            // The sandbox speaks plain HTTP: the one flag that allows it (never set in Lambda).
            .env("ALLOW_PLAIN_HTTP", "1")
            .env("CM_SECRET_ID", &cm_secret)
            .env("SF_SECRET_ID", &sf_secret)
            .env("WEBHOOK_SECRET_ID", &hook_secret)
            .env("KEYS_SECRET_ID", &keys_secret)
            .env("CONSOLE_SECRET_ID", &console_secret)
            .env("CONSOLE_ORG_ID", "00DSB0000000001AAA")
            .env("CONSOLE_SF_LOGIN_URL", "https://login.salesforce.com")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let ready = tokio::time::timeout(Duration::from_secs(20), receiver.recv())
            .await
            .map_err(|_| format!("{function} did not ask for an event within 20 s"))?
            .ok_or("runtime API stopped")?;
        let _ = child.kill().await;
        if run > 0 {
            samples.push(ready.duration_since(started).as_secs_f64() * 1000.0);
        }
    }
    let min_ms = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max_ms = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let count = samples.len();
    Ok(ColdStart {
        function,
        median_ms: super::median(&mut samples),
        min_ms,
        max_ms,
        runs: count,
    })
}

/// The cold-start section of BENCHMARKS.md.
pub fn report(cold: &[ColdStart]) -> String {
    let mut text = String::from(
        "\n## Cold starts\n\nRelease builds; process start to the function's first request for an event from \
         the Lambda runtime API, with its configuration, its secrets (from the emulator) and its clients \
         built: what a new container adds before it serves its first event.\n\n\
         | function | median ms | range ms | starts |\n|---|---|---|---|\n",
    );
    for start in cold {
        text += &format!(
            "| {} | {:.1} | {:.1}–{:.1} | {} |\n",
            start.function, start.median_ms, start.min_ms, start.max_ms, start.runs
        );
    }
    text
}
