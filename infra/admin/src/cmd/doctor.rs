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
    template: &Path,
    stage: Option<&str>,
) -> Result<Report, Failure> {
    let mut findings = function_findings(template, stage);
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
            } else {
                Finding::problem(name, problems.join("; "), FIX)
            }
        })
        .collect()
}
