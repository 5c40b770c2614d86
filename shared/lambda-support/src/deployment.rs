//! The functions' configuration as a deployment gives it to them: each function's `Environment`
//! in `infra/template.yaml`, parameters at a stage's overrides (`infra/samconfig.toml`) or their
//! defaults, checked by the same [`Config`] the functions start with. `cm-sf-admin doctor` runs
//! it, so a value that would stop a function (or make every call of it fail) is found before a
//! deploy, not in the logs after one.

use std::collections::BTreeMap;

use serde_norway::Value as Yaml;

use crate::config::{Config, VARIABLES};

/// What a template or a samconfig could not be read for.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// Not YAML or TOML, or not of the expected shape.
    #[error("{file}: {reason}")]
    Unreadable {
        /// Which file.
        file: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The samconfig has no such stage.
    #[error("samconfig: no stage `{0}` (its `[<stage>.deploy.parameters]` section)")]
    NoStage(String),
}

/// One function of the template, with the configuration it would start with.
#[derive(Debug, Clone)]
pub struct FunctionEnvironment {
    /// The template's logical id (`ScheduledSyncFunction`).
    pub logical_id: String,
    /// The crate it deploys (`scheduled-sync`), from its `CodeUri`.
    pub crate_name: String,
    /// Its environment, read as the function reads its own.
    pub config: Config,
    /// Problems found while reading the template for it (unknown variables, unresolved
    /// references).
    pub problems: Vec<String>,
}

/// How a problem ends when a parameter has no default and the stage gives none (a deploy asks
/// for it; nothing runs without it).
pub const NOT_GIVEN: &str = "has no default and no override";

/// The variables each function needs at start (what its `main` asks [`Config`] for).
pub fn required_by(crate_name: &str) -> &'static [&'static str] {
    match crate_name {
        "webhook-intake" => &["STATE_TABLE", "EVENT_BUS", "KEYS_SECRET_ID", "WEBHOOK_SECRET_ID"],
        "admin-console" => &[
            "STATE_TABLE",
            "EVENT_BUS",
            "KEYS_SECRET_ID",
            "CONSOLE_SECRET_ID",
            "CONSOLE_ORG_ID",
            "CONSOLE_SF_LOGIN_URL",
        ],
        _ => &[
            "STATE_TABLE",
            "EVENT_BUS",
            "KEYS_SECRET_ID",
            "CM_SECRET_ID",
            "SF_SECRET_ID",
        ],
    }
}

/// The parameter overrides a stage deploys with: `parameter_overrides` of
/// `[<stage>.deploy.parameters]` in `samconfig.toml` (`Name=value` pairs, shell-quoted).
pub fn stage_overrides(samconfig: &str, stage: &str) -> Result<BTreeMap<String, String>, DeploymentError> {
    let unreadable = |reason: String| DeploymentError::Unreadable {
        file: "samconfig.toml",
        reason,
    };
    let document: toml::Table = samconfig.parse().map_err(|e| unreadable(format!("{e}")))?;
    let parameters = document
        .get(stage)
        .and_then(|s| s.get("deploy"))
        .and_then(|d| d.get("parameters"))
        .ok_or_else(|| DeploymentError::NoStage(stage.to_owned()))?;
    let Some(overrides) = parameters.get("parameter_overrides") else {
        return Ok(BTreeMap::new());
    };
    let words: Vec<String> = match overrides {
        toml::Value::String(text) => {
            shlex::split(text).ok_or_else(|| unreadable("parameter_overrides: unbalanced quotes".into()))?
        }
        toml::Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => return Err(unreadable("parameter_overrides is neither a string nor a list".into())),
    };
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((name, value)) => Ok((name.to_owned(), value.to_owned())),
            None => Err(unreadable(format!("parameter override `{word}` is not Name=value"))),
        })
        .collect()
}

/// Every function of the template with the environment it would get.
pub fn functions_in(
    template: &str,
    overrides: &BTreeMap<String, String>,
) -> Result<Vec<FunctionEnvironment>, DeploymentError> {
    let unreadable = |reason: String| DeploymentError::Unreadable {
        file: "template.yaml",
        reason,
    };
    let template: Yaml = serde_norway::from_str(template).map_err(|e| unreadable(e.to_string()))?;
    let parameters = template.get("Parameters").and_then(Yaml::as_mapping);
    let resources = template
        .get("Resources")
        .and_then(Yaml::as_mapping)
        .ok_or_else(|| unreadable("no Resources".into()))?;
    let mut functions = Vec::new();
    for (id, resource) in resources {
        if resource.get("Type").and_then(Yaml::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let logical_id = id.as_str().unwrap_or_default().to_owned();
        let properties = resource.get("Properties");
        let crate_name = properties
            .and_then(|p| p.get("CodeUri"))
            .and_then(Yaml::as_str)
            .map(|uri| uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri).to_owned())
            .unwrap_or_default();
        let variables = properties
            .and_then(|p| p.get("Environment"))
            .and_then(|e| e.get("Variables"))
            .and_then(Yaml::as_mapping);
        let mut problems = Vec::new();
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for (name, value) in variables.into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            let Some(known) = VARIABLES.iter().find(|v| **v == name) else {
                problems.push(format!("sets {name}, which no function reads (a typo?)"));
                continue;
            };
            match resolve(value, parameters, overrides, resources) {
                Ok(resolved) => values.push((known, resolved)),
                Err(why) => problems.push(format!("{name}: {why}")),
            }
        }
        functions.push(FunctionEnvironment {
            logical_id,
            crate_name,
            config: Config::from_vars(values),
            problems,
        });
    }
    Ok(functions)
}

/// A variable's value as CloudFormation would give it: a literal, a parameter (its override or
/// default), or a resource of the stack (a name the stack makes: present, whatever it is).
fn resolve(
    value: &Yaml,
    parameters: Option<&serde_norway::Mapping>,
    overrides: &BTreeMap<String, String>,
    resources: &serde_norway::Mapping,
) -> Result<String, String> {
    let reference = match value {
        Yaml::String(text) => return Ok(text.clone()),
        Yaml::Number(number) => return Ok(number.to_string()),
        Yaml::Bool(flag) => return Ok(flag.to_string()),
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str().unwrap_or_default().to_owned(),
        Yaml::Mapping(map) if map.contains_key("Ref") => {
            map.get("Ref").and_then(Yaml::as_str).unwrap_or_default().to_owned()
        }
        // `!Sub`, `!GetAtt` and the like: made by the stack.
        Yaml::Tagged(tagged) => return Ok(format!("<{} from the stack>", tagged.tag)),
        other => return Err(format!("unexpected value {other:?}")),
    };
    if let Some(value) = overrides.get(&reference) {
        return Ok(value.clone());
    }
    if let Some(parameter) = parameters.and_then(|p| p.get(reference.as_str())) {
        return match parameter.get("Default") {
            Some(Yaml::String(text)) => Ok(text.clone()),
            Some(Yaml::Number(number)) => Ok(number.to_string()),
            Some(Yaml::Bool(flag)) => Ok(flag.to_string()),
            _ => Err(format!("parameter {reference} {NOT_GIVEN}")),
        };
    }
    if resources.contains_key(reference.as_str()) || reference.starts_with("AWS::") {
        return Ok(format!("<{reference} of the stack>"));
    }
    Err(format!("refers to {reference}, which the template does not define"))
}

/// What would stop this function, or make it fail on every call, with this configuration.
pub fn check(function: &FunctionEnvironment) -> Vec<String> {
    let mut problems = function.problems.clone();
    let config = &function.config;
    for name in required_by(&function.crate_name) {
        // Unless reading the template already said why it is missing.
        if config.get(name).is_none() && !problems.iter().any(|p| p.starts_with(&format!("{name}:"))) {
            problems.push(format!("{name} is not set; the function stops at start"));
        }
    }
    if required_by(&function.crate_name).contains(&"CM_SECRET_ID")
        && let Err(error) =
            campaign_monitor::CmClient::builder(campaign_monitor::Credentials::ApiKey(String::new()), mapping::Tz::UTC)
                .base_url(config.cm_base_url())
                .build()
    {
        problems.push(format!("CM_BASE_URL: {error}"));
    } else if required_by(&function.crate_name).contains(&"CM_SECRET_ID")
        && let Err(error) = config.require_https("CM_BASE_URL", config.cm_base_url())
    {
        problems.push(format!("CM_BASE_URL: {error}"));
    }
    // The console's own check at start, once what it needs is set (a missing one is named above).
    if function.crate_name == "admin-console"
        && required_by(&function.crate_name)
            .iter()
            .all(|name| config.get(name).is_some())
        && let Err(error) = config.console_settings()
    {
        problems.push(error.to_string());
    }
    let version = config.sf_api_version();
    let well_formed = version
        .split_once('.')
        .is_some_and(|(major, minor)| major.len() >= 2 && major.chars().all(|c| c.is_ascii_digit()) && minor == "0");
    if !well_formed {
        problems.push(format!(
            "SF_API_VERSION `{version}` is not a Salesforce API version such as 66.0"
        ));
    }
    if tracing_subscriber::EnvFilter::try_new(config.log_filter()).is_err() {
        problems.push(format!("LOG_LEVEL `{}` is not a log level", config.log_filter()));
    }
    problems
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TEMPLATE: &str = include_str!("../../../infra/template.yaml");
    const SAMCONFIG: &str = include_str!("../../../infra/samconfig.toml");

    #[test]
    fn the_shipped_template_gives_every_function_a_configuration_it_starts_with() {
        for stage in ["prod", "staging"] {
            let overrides = stage_overrides(SAMCONFIG, stage).unwrap();
            let functions = functions_in(TEMPLATE, &overrides).unwrap();
            let crates: Vec<&str> = functions.iter().map(|f| f.crate_name.as_str()).collect();
            for expected in [
                "scheduled-sync",
                "campaign-autocreate",
                "webhook-intake",
                "webhook-consumer",
                "admin-console",
            ] {
                assert!(crates.contains(&expected), "{crates:?}");
            }
            for function in &functions {
                let problems = check(function);
                if function.crate_name == "admin-console" {
                    // The org allowed to sign in is each deployer's own: no default to trust.
                    assert_eq!(
                        problems,
                        vec!["CONSOLE_ORG_ID: parameter ConsoleOrgId has no default and no override".to_owned()],
                        "{stage}"
                    );
                    let console_with = |org: &str| {
                        let mut given = overrides.clone();
                        given.insert("ConsoleOrgId".into(), org.into());
                        let console = functions_in(TEMPLATE, &given)
                            .unwrap()
                            .into_iter()
                            .find(|f| f.crate_name == "admin-console")
                            .unwrap();
                        check(&console)
                    };
                    assert_eq!(console_with("00DSB0000000001AAA"), Vec::<String>::new(), "{stage}");
                    assert!(
                        console_with("00D123")[0].starts_with("CONSOLE_ORG_ID `00D123`"),
                        "{stage}"
                    );
                    continue;
                }
                assert_eq!(problems, Vec::<String>::new(), "{stage}: {}", function.logical_id);
            }
        }
    }

    #[test]
    fn a_base_url_with_the_api_path_or_a_missing_variable_is_named() {
        let broken = TEMPLATE.replace(
            "Default: https://api.createsend.com\n",
            "Default: https://api.createsend.com/api/v3.3\n",
        );
        assert_ne!(
            broken, TEMPLATE,
            "the template's CmBaseUrl default moved; update this test"
        );
        let functions = functions_in(&broken, &BTreeMap::new()).unwrap();
        let sync = functions.iter().find(|f| f.crate_name == "scheduled-sync").unwrap();
        let problems = check(sync);
        assert!(problems.iter().any(|p| p.starts_with("CM_BASE_URL")), "{problems:?}");

        let overrides = BTreeMap::from([("SfApiVersion".to_owned(), "v66".to_owned())]);
        let functions = functions_in(
            &TEMPLATE.replace("STATE_TABLE: !Ref StateTable", "STATE_TABEL: !Ref StateTable"),
            &overrides,
        )
        .unwrap();
        let problems = check(functions.iter().find(|f| f.crate_name == "webhook-intake").unwrap());
        assert!(problems.iter().any(|p| p.contains("STATE_TABEL")), "{problems:?}");
        assert!(
            problems.iter().any(|p| p.starts_with("STATE_TABLE is not set")),
            "{problems:?}"
        );
        let problems = check(functions.iter().find(|f| f.crate_name == "scheduled-sync").unwrap());
        assert!(problems.iter().any(|p| p.starts_with("SF_API_VERSION")), "{problems:?}");
    }

    #[test]
    fn stage_overrides_read_shell_quoted_pairs() {
        let overrides = stage_overrides(SAMCONFIG, "staging").unwrap();
        assert_eq!(overrides["ScheduleExpression"], "rate(30 minutes)");
        assert!(matches!(
            stage_overrides(SAMCONFIG, "nope"),
            Err(DeploymentError::NoStage(_))
        ));
    }
}
