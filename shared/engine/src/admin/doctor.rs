//! `cm-sf-admin doctor`: before the first sync, check that the Salesforce user can reach every
//! object and field the settings name, with the right types and access, that the CM
//! credentials, clients and lists work, and that the webhooks are registered. Each finding
//! says how to fix it.

use std::collections::{BTreeMap, BTreeSet};

use mapping::Settings;
use mapping::people::PERSON_FIELDS_WRITTEN;
use mapping::settings::{FieldKind, OptOutPolicy};
use salesforce::Describe;
use serde::Serialize;
use state::{RetryQueue, Scope, SettingsStore};

use crate::core::{Engine, EngineError, load_settings};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Fine.
    Ok,
    /// Works, but worth a look.
    Warning,
    /// The sync will fail or skip work until this is fixed.
    Problem,
}

/// One check and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked.
    pub check: String,
    /// The result.
    pub severity: Severity,
    /// What was found.
    pub detail: String,
    /// How to fix it, for warnings and problems.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    /// A check that passed.
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            severity: Severity::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A check that failed: the sync fails or skips work until it is fixed.
    pub fn problem(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            severity: Severity::Problem,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// Works, but worth a look.
    pub fn warning(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            ..Finding::problem(check, detail, fix)
        }
    }
}

/// The objects whose describe the checks need.
pub const OBJECTS: [&str; 5] = ["Campaign", "CampaignMember", "CampaignMemberStatus", "Lead", "Contact"];

const DEPLOY_FIX: &str =
    "deploy the product's fields: `cd infra/salesforce && sf project deploy start --target-org <org>`";
const PERMISSION_FIX: &str = "assign the permission set: `sf org assign permset --name CM_SF_Sync_Integration --on-behalf-of <integration user>`";

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Number => "Number",
        FieldKind::Text => "Text",
        FieldKind::DateTime => "Date/Time",
    }
}

/// Checks the org's describes against what the settings need. Pure: `describes` holds the
/// describe of each object in [`OBJECTS`] that could be read (a missing one was reported when
/// it failed).
pub fn check_salesforce(settings: &Settings, describes: &BTreeMap<String, Describe>) -> Vec<Finding> {
    let mut findings = required_field_findings(settings, describes);
    findings.extend(person_field_findings(settings, describes));
    findings.extend(create_findings(settings, describes));
    findings
}

/// Every field the settings name: present, of the right type, writable.
fn required_field_findings(settings: &Settings, describes: &BTreeMap<String, Describe>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for required in settings.required_fields() {
        let name = format!("{}.{}", required.object, required.field);
        let Some(describe) = describes.get(required.object) else {
            continue;
        };
        let check = format!("field {name}");
        let Some(field) = describe.field(&required.field) else {
            findings.push(Finding::problem(
                check,
                format!(
                    "missing, or not visible to the integration user (the sync needs a {} field)",
                    kind_name(required.kind)
                ),
                format!("{DEPLOY_FIX}; or, if it exists, {PERMISSION_FIX}; or name another field in the settings"),
            ));
            continue;
        };
        if !required.kind.accepts_describe_type(&field.field_type) {
            findings.push(Finding::problem(
                check,
                format!(
                    "is of type `{}`; the sync needs {}",
                    field.field_type,
                    kind_name(required.kind)
                ),
                format!(
                    "use a {} field: {DEPLOY_FIX}, or change the settings",
                    kind_name(required.kind)
                ),
            ));
        } else if !field.updateable {
            findings.push(Finding::problem(
                check,
                "is read-only for the integration user",
                PERMISSION_FIX.to_owned(),
            ));
        } else if required.unique_external_id && !(field.external_id && field.unique) {
            findings.push(Finding::problem(
                check,
                "is not a unique External ID: two SF Campaigns could claim one CM campaign, and auto-creation cannot upsert on it",
                "tick `External ID` and `Unique` on the field (the shipped CM_Campaign_ID__c has both)",
            ));
        } else {
            findings.push(Finding::ok(
                check,
                format!("{} field, writable", kind_name(required.kind)),
            ));
        }
    }
    findings
}

/// The Lead and Contact fields the opt-out and bounce rules write.
fn person_field_findings(settings: &Settings, describes: &BTreeMap<String, Describe>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let person_fields: Vec<&str> = PERSON_FIELDS_WRITTEN
        .into_iter()
        .filter(|field| match *field {
            "HasOptedOutOfEmail" => settings.opt_out_policy != OptOutPolicy::Never,
            _ => settings.record_bounces,
        })
        .collect();
    for object in ["Lead", "Contact"] {
        let Some(describe) = describes.get(object) else {
            continue;
        };
        let mut missing: Vec<&str> = Vec::new();
        if describe.field("Email").is_none() {
            missing.push("Email (read)");
        }
        missing.extend(
            person_fields
                .iter()
                .filter(|f| !describe.field(f).is_some_and(|info| info.updateable)),
        );
        findings.push(if missing.is_empty() {
            Finding::ok(format!("object {object}"), "email, opt-out and bounce fields reachable")
        } else {
            Finding::problem(
                format!("object {object}"),
                format!("the integration user cannot write {}", missing.join(", ")),
                PERMISSION_FIX.to_owned(),
            )
        });
    }
    findings
}

/// The objects the settings have the sync create.
fn create_findings(settings: &Settings, describes: &BTreeMap<String, Describe>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut creatable = BTreeSet::new();
    if settings.auto_create_campaigns {
        creatable.insert("Campaign");
    }
    if settings.auto_create_missing_statuses {
        creatable.insert("CampaignMemberStatus");
    }
    if settings.add_missing_members != mapping::settings::AddMissingMembers::Never {
        creatable.insert("CampaignMember");
    }
    for object in creatable {
        let Some(describe) = describes.get(object) else {
            continue;
        };
        findings.push(if describe.createable {
            Finding::ok(format!("create {object}"), "allowed")
        } else {
            let fix = if object == "Campaign" {
                format!("tick `Marketing User` on the integration user, and {PERMISSION_FIX}")
            } else {
                format!("{PERMISSION_FIX} (and tick `Marketing User` on the user)")
            };
            Finding::problem(
                format!("create {object}"),
                "the integration user cannot create them",
                fix,
            )
        });
    }
    findings
}

/// `cm-sf-admin doctor`: every check of a deployment's configuration.
#[derive(Debug)]
pub struct Doctor<'e, S, P> {
    engine: &'e Engine<S, P>,
}

impl<'e, S: SettingsStore + RetryQueue + state::WebhookEventStore, P> Doctor<'e, S, P> {
    /// The doctor of `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        Doctor { engine }
    }

    /// Runs every check; never stops at the first problem.
    pub async fn check(&self, intake_url: Option<&str>) -> Vec<Finding> {
        let mut findings = Vec::new();
        let Some(settings) = self.settings_finding(&mut findings).await else {
            return findings;
        };
        self.check_org(&settings, &mut findings).await;
        self.check_refused_creations(&mut findings).await;
        self.check_parked_webhook_batches(&mut findings).await;
        let Some(lists) = self.check_cm_clients(&settings, &mut findings).await else {
            return findings;
        };
        self.check_lists(&settings, &lists, intake_url, &mut findings).await;
        findings
    }

    /// Campaigns Salesforce refused to create: the schedule no longer asks; an admin must.
    async fn check_refused_creations(&self, findings: &mut Vec<Finding>) {
        let Ok(refused) = self
            .engine
            .store
            .failed_records(&Scope::AutocreateRefused.key(), 1_000)
            .await
        else {
            return;
        };
        for record in refused {
            findings.push(Finding::warning(
                format!("auto-creation of CM campaign {}", record.key),
                format!("Salesforce refused it ({} time(s)): {}", record.attempts, record.reason),
                "fix the cause in Salesforce (a validation rule, a required field, a permission), then `cm-sf-admin backfill --from <its date> --to <its date>`",
            ));
        }
    }

    /// Webhook deliveries whose events were tried `MAX_WEBHOOK_ATTEMPTS` times: no longer
    /// retried by the schedule; an admin fixes the cause and replays them.
    async fn check_parked_webhook_batches(&self, findings: &mut Vec<Finding>) {
        let parked = match self.engine.store.parked_webhook_batches(1_000).await {
            Ok(parked) => parked,
            Err(error) => {
                findings.push(Finding::warning(
                    "webhook events waiting for an admin",
                    format!("cannot be read: {error}"),
                    "check STATE_TABLE and the AWS credentials",
                ));
                return;
            }
        };
        let waiting: Vec<&state::WebhookEventRecord> = parked
            .iter()
            .flat_map(|batch| &batch.events)
            .filter(|e| !matches!(e.state, state::EventState::Applied { .. }))
            .collect();
        if waiting.is_empty() {
            findings.push(Finding::ok("webhook events waiting for an admin", "none"));
            return;
        }
        let reason = waiting
            .iter()
            .find_map(|e| match &e.state {
                state::EventState::Failed { reason } => Some(reason.as_str()),
                _ => None,
            })
            .unwrap_or("a transient refusal that outlasted every retry (a limit or an outage)");
        findings.push(Finding::problem(
            "webhook events waiting for an admin",
            format!(
                "{} opt-out(s) or bounce(s) in {} delivery(ies) not applied after {} attempts each, no longer retried; first reason: {reason}",
                waiting.len(),
                parked.len(),
                state::MAX_WEBHOOK_ATTEMPTS
            ),
            "fix the cause in Salesforce (`cm-sf-admin webhooks events --failed` lists them), then `cm-sf-admin replay`",
        ));
    }

    /// The stored settings, or a finding saying why there are none.
    async fn settings_finding(&self, findings: &mut Vec<Finding>) -> Option<Settings> {
        match load_settings(self.engine.store.as_ref()).await {
            Ok(settings) => {
                findings.push(Finding::ok("settings", "stored and valid"));
                Some(settings)
            }
            Err(EngineError::NoSettings) => {
                findings.push(Finding::problem(
                    "settings",
                    "none stored",
                    "`cm-sf-admin settings apply settings.json`",
                ));
                None
            }
            Err(error) => {
                findings.push(Finding::problem(
                    "settings",
                    format!("cannot be read: {error}"),
                    "check STATE_TABLE and the AWS credentials",
                ));
                None
            }
        }
    }

    /// Salesforce: the login, every object and field, the API allocation.
    async fn check_org(&self, settings: &Settings, findings: &mut Vec<Finding>) {
        let mut describes = BTreeMap::new();
        for object in OBJECTS {
            match self.engine.sf.describe(object).await {
                Ok(describe) => {
                    describes.insert(object.to_owned(), (*describe).clone());
                }
                Err(error) => findings.push(Finding::problem(
                    format!("object {object}"),
                    format!("cannot be described: {error}"),
                    format!("check the Salesforce secret (SF_SECRET_ID) and the connected app; {PERMISSION_FIX}"),
                )),
            }
        }
        if !describes.is_empty() {
            findings.push(Finding::ok("Salesforce login", "the integration user is signed in"));
        }
        findings.extend(check_salesforce(settings, &describes));
        if let Ok(usage) = self.engine.sf.limits().await {
            let share = usage.used as f64 / usage.max.max(1) as f64;
            let detail = format!("{} of {} daily API requests used", usage.used, usage.max);
            findings.push(if share >= 0.8 {
                Finding::warning(
                    "Salesforce API allocation",
                    detail,
                    "the sync stops at 80% to leave room for other integrations; wait for the 24-hour window or raise the allocation",
                )
            } else {
                Finding::ok("Salesforce API allocation", detail)
            });
        }
    }

    /// Campaign Monitor: the login and each configured client; the lists found, unless the
    /// login failed.
    async fn check_cm_clients(&self, settings: &Settings, findings: &mut Vec<Finding>) -> Option<BTreeSet<String>> {
        let clients = match self.engine.cm.clients().await {
            Ok(clients) => {
                findings.push(Finding::ok("Campaign Monitor login", "the API key works"));
                clients
            }
            Err(error) => {
                findings.push(Finding::problem(
                    "Campaign Monitor login",
                    error.to_string(),
                    "check the Campaign Monitor secret (CM_SECRET_ID): an account-level API key",
                ));
                return None;
            }
        };
        let known: BTreeSet<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
        let mut lists = BTreeSet::new();
        for client in &settings.cm_clients {
            if !known.contains(client.as_str()) {
                findings.push(Finding::problem(
                    format!("CM client {client}"),
                    "not found with this API key",
                    "fix `cm_clients` in the settings (Account settings → API keys shows the client ids)",
                ));
                continue;
            }
            findings.push(Finding::ok(format!("CM client {client}"), "found"));
            match self.engine.cm.client_details(client).await {
                Ok(details) => {
                    let zone = settings.zone();
                    match mapping::zones::client_zone_mismatch(&details.basic_details.time_zone, zone, chrono::Utc::now()) {
                        None => findings.push(Finding::ok(
                            format!("CM client {client} time zone"),
                            format!("{} agrees with cm_timezone", details.basic_details.time_zone),
                        )),
                        Some(mismatch) => findings.push(Finding::warning(
                            format!("CM client {client} time zone"),
                            mismatch,
                            "set cm_timezone to the zone CM shows this client's dates in (Campaign Monitor: Client settings → Time zone), or give every configured client the account's zone",
                        )),
                    }
                }
                Err(error) => findings.push(Finding::warning(
                    format!("CM client {client} time zone"),
                    format!("the client's details cannot be read: {error}"),
                    "check the API key's access to this client",
                )),
            }
            match self.engine.cm.lists(client).await {
                Ok(found) => lists.extend(found.into_iter().map(|l| l.list_id)),
                Err(error) => findings.push(Finding::problem(
                    format!("CM client {client}"),
                    format!("lists cannot be read: {error}"),
                    "check the API key's access to this client",
                )),
            }
        }
        Some(lists)
    }

    /// Each configured list exists and posts Deactivate events to this deployment's intake.
    async fn check_lists(
        &self,
        settings: &Settings,
        lists: &BTreeSet<String>,
        intake_url: Option<&str>,
        findings: &mut Vec<Finding>,
    ) {
        for list in &settings.cm_lists {
            if !lists.contains(list) {
                findings.push(Finding::problem(
                    format!("CM list {list}"),
                    "not found in the configured clients",
                    "fix `cm_lists` in the settings",
                ));
                continue;
            }
            let hooks = match self.engine.cm.webhooks(list).await {
                Ok(hooks) => hooks,
                Err(error) => {
                    findings.push(Finding::problem(
                        format!("webhooks of list {list}"),
                        format!("cannot be read: {error}"),
                        "check the API key",
                    ));
                    continue;
                }
            };
            let ours: Vec<_> = hooks
                .iter()
                .filter(|h| {
                    h.events.iter().any(|e| e == "Deactivate")
                        && intake_url.is_none_or(|url| h.url.trim_end_matches('/') == url.trim_end_matches('/'))
                })
                .collect();
            let inactive = ours.iter().find(|h| !h.status.eq_ignore_ascii_case("Active"));
            findings.push(if let Some(hook) = inactive {
                Finding::problem(
                    format!("webhooks of list {list}"),
                    format!("webhook {} was deactivated by Campaign Monitor (status `{}`): CM stopped posting to it, so unsubscribes and bounces wait for the list backstop of the next scheduled run", hook.webhook_id, hook.status),
                    "check that the intake answers (`cm-sf-admin webhooks list`, the function's logs), then `cm-sf-admin webhooks register --url <WebhookUrl stack output>` reactivates it",
                )
            } else if !ours.is_empty() {
                Finding::ok(format!("webhooks of list {list}"), "registered for Deactivate")
            } else {
                Finding::problem(
                    format!("webhooks of list {list}"),
                    "no webhook posts Deactivate events to the intake: unsubscribes and bounces wait for the next scheduled sync",
                    "`cm-sf-admin webhooks register --url <WebhookUrl stack output>`",
                )
            });
        }
        if settings.cm_lists.is_empty() {
            findings.push(Finding::warning(
                "CM lists",
                "`cm_lists` is empty: webhooks are refused, opt-outs arrive only with the scheduled sync",
                "add the ids of the lists you send to in `cm_lists`, then `cm-sf-admin webhooks register`",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use salesforce::FieldInfo;

    fn field(name: &str, field_type: &str) -> FieldInfo {
        FieldInfo {
            name: name.into(),
            field_type: field_type.into(),
            createable: true,
            updateable: true,
            external_id: false,
            unique: false,
        }
    }

    fn org(settings: &Settings) -> BTreeMap<String, Describe> {
        let mut objects: BTreeMap<String, Vec<FieldInfo>> = BTreeMap::new();
        for required in settings.required_fields() {
            let describe_type = match required.kind {
                FieldKind::Number => "double",
                FieldKind::Text => "string",
                FieldKind::DateTime => "datetime",
            };
            let mut info = field(&required.field, describe_type);
            info.external_id = required.unique_external_id;
            info.unique = required.unique_external_id;
            objects.entry(required.object.to_owned()).or_default().push(info);
        }
        for object in ["Lead", "Contact"] {
            let fields = objects.entry(object.to_owned()).or_default();
            fields.push(field("Email", "email"));
            fields.extend(PERSON_FIELDS_WRITTEN.map(|f| field(f, "string")));
        }
        objects.entry("CampaignMemberStatus".to_owned()).or_default();
        objects
            .into_iter()
            .map(|(name, fields)| {
                (
                    name.clone(),
                    Describe {
                        name,
                        createable: true,
                        fields,
                    },
                )
            })
            .collect()
    }

    fn settings() -> Settings {
        let mut settings = Settings::new(vec!["a".repeat(32)], chrono_tz::UTC);
        settings.auto_create_campaigns = true;
        settings
    }

    fn problems(findings: &[Finding]) -> Vec<&Finding> {
        findings.iter().filter(|f| f.severity == Severity::Problem).collect()
    }

    #[test]
    fn a_complete_org_has_no_problems() {
        let findings = check_salesforce(&settings(), &org(&settings()));
        assert!(problems(&findings).is_empty(), "{findings:#?}");
        assert!(findings.len() >= 12);
    }

    #[test]
    fn a_missing_field_is_reported_with_the_deploy_fix() {
        let mut describes = org(&settings());
        describes
            .get_mut("CampaignMember")
            .unwrap()
            .fields
            .retain(|f| f.name != "CM_Activity_Date__c");
        let findings = check_salesforce(&settings(), &describes);
        let problems = problems(&findings);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].check, "field CampaignMember.CM_Activity_Date__c");
        assert!(problems[0].fix.as_deref().unwrap().contains("sf project deploy start"));
    }

    #[test]
    fn an_engagement_detail_field_that_is_on_is_checked_like_the_others() {
        let mut with_detail = settings();
        with_detail.member_detail_fields = mapping::settings::MemberDetailFields::every_shipped();
        let mut describes = org(&with_detail);
        assert!(problems(&check_salesforce(&with_detail, &describes)).is_empty());
        let member = describes.get_mut("CampaignMember").unwrap();
        member.fields.retain(|f| f.name != "CM_Last_Clicked_URL__c");
        for f in &mut member.fields {
            if f.name == "CM_First_Opened__c" {
                f.field_type = "string".into();
            }
        }
        let checks: Vec<String> = problems(&check_salesforce(&with_detail, &describes))
            .iter()
            .map(|f| f.check.clone())
            .collect();
        assert_eq!(
            checks,
            [
                "field CampaignMember.CM_First_Opened__c",
                "field CampaignMember.CM_Last_Clicked_URL__c"
            ],
        );
        // Off (the default): not needed, not checked.
        assert!(problems(&check_salesforce(&settings(), &describes)).is_empty());
    }

    #[test]
    fn wrong_types_read_only_fields_and_a_non_unique_link_are_problems() {
        let mut describes = org(&settings());
        let campaign = describes.get_mut("Campaign").unwrap();
        for f in &mut campaign.fields {
            match f.name.as_str() {
                "CM_Clicks__c" => f.field_type = "string".into(),
                "CM_Bounces__c" => f.updateable = false,
                "CM_Campaign_ID__c" => f.unique = false,
                _ => {}
            }
        }
        describes
            .get_mut("Lead")
            .unwrap()
            .fields
            .retain(|f| f.name != "HasOptedOutOfEmail");
        describes.get_mut("Campaign").unwrap().createable = false;
        let findings = check_salesforce(&settings(), &describes);
        let checks: Vec<&str> = problems(&findings).iter().map(|f| f.check.as_str()).collect();
        assert_eq!(
            checks,
            [
                "field Campaign.CM_Bounces__c",
                "field Campaign.CM_Campaign_ID__c",
                "field Campaign.CM_Clicks__c",
                "object Lead",
                "create Campaign"
            ]
        );
    }

    #[test]
    fn fields_the_settings_do_not_use_are_not_required() {
        let mut settings = settings();
        settings.opt_out_policy = OptOutPolicy::Never;
        settings.record_bounces = false;
        let mut describes = org(&settings);
        describes
            .get_mut("Contact")
            .unwrap()
            .fields
            .retain(|f| !PERSON_FIELDS_WRITTEN.contains(&f.name.as_str()));
        assert!(problems(&check_salesforce(&settings, &describes)).is_empty());
    }
}
