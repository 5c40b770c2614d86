//! `doctor`: what the settings need, checked before the first sync; each finding with its fix.

use engine::doctor::Severity;
use serde_json::json;

use crate::context::{Context, Failure, Report};

pub async fn run(context: &Context, url: Option<&str>) -> Result<Report, Failure> {
    let engine = context.engine().await?;
    let full_url = match url {
        Some(base) => Some(context.intake_url(base).await?),
        None => None,
    };
    let findings = engine.doctor(full_url.as_deref()).await;
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
