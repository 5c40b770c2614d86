//! `doctor`: what the functions and the settings need, checked before the first sync; each
//! finding with its fix.

use std::path::Path;

use engine::doctor::{Finding, Severity};
use lambda_support::deployment;
use serde_json::json;

use crate::context::{Context, Failure, Report};

pub async fn run(
    context: &Context,
    url: Option<&str>,
    console_url: Option<&str>,
    template: &Path,
    stage: Option<&str>,
) -> Result<Report, Failure> {
    let mut findings = function_findings(template, stage);
    findings.extend(console_findings(context, console_url).await);
    let engine = context.engine().await?;
    let full_url = match url {
        Some(base) => Some(context.intake_url(base).await?),
        None => None,
    };
    findings.extend(engine.doctor(full_url.as_deref()).await);
    let problems = findings.iter().filter(|f| f.severity == Severity::Problem).count();
    let mut text = String::new();
    for finding in &findings {
        let mark = match finding.severity {
            Severity::Ok => "ok     ",
            Severity::Warning => "WARNING",
            Severity::Problem => "PROBLEM",
        };
        text += &format!("{mark}  {}: {}\n", finding.check, finding.detail);
        if let Some(fix) = &finding.fix {
            text += &format!("         fix: {fix}\n");
        }
    }
    text += &format!("{problems} problem(s)\n");
    Ok(Report {
        problem: problems > 0,
        ..Report::new(text, json!({"findings": findings, "problems": problems}))
    })
}

/// The admin console: its secret has what the function reads at start, and where admins go.
async fn console_findings(context: &Context, console_url: Option<&str>) -> Vec<Finding> {
    const CHECK: &str = "console secret";
    let mut findings = Vec::new();
    match context.config().console_secret_id() {
        Err(_) => findings.push(Finding::warning(
            CHECK,
            "not checked: CONSOLE_SECRET_ID is not set",
            "set CONSOLE_SECRET_ID to the stack's ConsoleSecretName (cm-sf-sync/console by default)",
        )),
        Ok(id) => {
            let secrets = aws_sdk_secretsmanager::Client::new(&lambda_support::aws().await);
            let read = lambda_support::secret(&secrets, id)
                .await
                .map_err(|e| e.to_string())
                .and_then(|text| console::config::ConsoleSecret::parse(&text).map_err(|e| e.to_string()));
            findings.push(match read {
                Ok(secret) => Finding::ok(
                    CHECK,
                    format!(
                        "{id} has the External Client App's consumer key{} and {} cookie key(s)",
                        if secret.client_secret.is_some() { " and secret" } else { "" },
                        secret.cookie_keys.len()
                    ),
                ),
                Err(error) => Finding::problem(
                    CHECK,
                    format!("{id}: {error}; the console stops at start"),
                    r#"put {"client_id": "<consumer key>", "client_secret": "<consumer secret>", "cookie_keys": ["<openssl rand -base64 32>"]} in the secret (infra/README.md, "The admin console")"#,
                ),
            });
        }
    }
    findings.push(match console_url {
        Some(url) if url.starts_with("https://") || context.config().plain_http_allowed() => {
            let base = url.trim_end_matches('/');
            Finding::ok(
                "console URL",
                format!(
                    "{base}/ (the custom label CM_Console_URL; the External Client App's callback URL is {base}/auth/callback)"
                ),
            )
        }
        Some(url) => Finding::problem(
            "console URL",
            format!("`{url}` is not an https:// URL"),
            "pass the stack output ConsoleUrl",
        ),
        None => Finding::warning(
            "console URL",
            "not given",
            "pass --console-url (or CONSOLE_URL) with the stack output ConsoleUrl to see the console's and its callback's URLs",
        ),
    });
    findings
}

/// Each function's configuration as the template (and the stage's overrides) deploy it.
fn function_findings(template: &Path, stage: Option<&str>) -> Vec<Finding> {
    const FIX: &str = "fix the function's `Environment` (or the parameter) in the template, or the stage's `parameter_overrides` in samconfig.toml, and deploy again";
    let check = "functions' configuration";
    let Ok(text) = std::fs::read_to_string(template) else {
        return vec![Finding::warning(
            check,
            format!("not checked: no template at {}", template.display()),
            "run from the repository root, or pass --template infra/template.yaml",
        )];
    };
    let overrides = match stage {
        None => Default::default(),
        Some(stage) => {
            let samconfig = template.with_file_name("samconfig.toml");
            let read = std::fs::read_to_string(&samconfig)
                .map_err(|e| format!("{}: {e}", samconfig.display()))
                .and_then(|text| deployment::stage_overrides(&text, stage).map_err(|e| e.to_string()));
            match read {
                Ok(overrides) => overrides,
                Err(error) => return vec![Finding::problem(check, error, "pass a stage samconfig.toml names")],
            }
        }
    };
    let functions = match deployment::functions_in(&text, &overrides) {
        Ok(functions) => functions,
        Err(error) => return vec![Finding::problem(check, error.to_string(), FIX)],
    };
    functions
        .iter()
        .map(|function| {
            let name = format!("function {} ({})", function.crate_name, function.logical_id);
            let problems = deployment::check(function);
            if problems.is_empty() {
                Finding::ok(name, "its environment is complete and well-formed")
            } else if problems.iter().all(|p| p.ends_with(deployment::NOT_GIVEN)) {
                // A parameter without a default: `sam deploy` asks for it, nothing deploys without it.
                Finding::warning(
                    name,
                    problems.join("; "),
                    "give the parameter in the stage's `parameter_overrides` in samconfig.toml (or pass --stage)",
                )
            } else {
                Finding::problem(name, problems.join("; "), FIX)
            }
        })
        .collect()
}
