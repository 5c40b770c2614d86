//! Validation (PRODUCT.md §2–§3.4): one function per section of the document, every problem
//! reported at once with the field it concerns.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

pub(super) fn check_status_label(label: &str) -> Result<(), String> {
    let chars = label.chars().count();
    if label.trim().is_empty() {
        Err("a status label must not be empty".to_owned())
    } else if chars > MAX_STATUS_LABEL_CHARS {
        Err(format!(
            "\"{}…\" is {chars} characters; Salesforce allows at most {MAX_STATUS_LABEL_CHARS} in a member Status",
            label.chars().take(20).collect::<String>()
        ))
    } else if label.trim() != label {
        Err(format!(
            "\"{label}\" has leading or trailing spaces; labels are matched exactly"
        ))
    } else if label.chars().any(char::is_control) {
        Err("a status label must not contain control characters".to_owned())
    } else {
        Ok(())
    }
}

/// Salesforce API names: a letter, then letters, digits and single underscores; custom ones end
/// in `__c`.
pub(super) fn check_api_name(name: &str) -> Result<(), String> {
    let body = name.strip_suffix("__c").unwrap_or(name);
    let valid = !body.is_empty()
        && body.len() <= 40
        && body.starts_with(|c: char| c.is_ascii_alphabetic())
        && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !body.ends_with('_')
        && !body.contains("__");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a Salesforce field API name (e.g. NumberSent or Email_Opens__c)"
        ))
    }
}

pub(super) fn check_custom_field(name: &str) -> Result<(), String> {
    check_api_name(name)?;
    if name.ends_with("__c") {
        Ok(())
    } else {
        Err(format!("`{name}` must be a custom field (API name ending in __c)"))
    }
}

/// Standard Campaign fields Salesforce computes itself; writing them fails.
pub(super) fn read_only_campaign_field(name: &str) -> Option<&'static str> {
    const COMPUTED: [&str; 12] = [
        "NumberOfLeads",
        "NumberOfConvertedLeads",
        "NumberOfContacts",
        "NumberOfResponses",
        "NumberOfOpportunities",
        "NumberOfWonOpportunities",
        "AmountAllOpportunities",
        "AmountWonOpportunities",
        "HierarchyNumberSent",
        "HierarchyNumberOfResponses",
        "HierarchyNumberOfLeads",
        "HierarchyNumberOfContacts",
    ];
    if COMPUTED.iter().any(|computed| computed.eq_ignore_ascii_case(name)) || name.starts_with("Hierarchy") {
        Some("is computed by Salesforce and cannot be written; map the stat to a custom field")
    } else if matches!(
        name,
        "Id" | "Name" | "CreatedDate" | "LastModifiedDate" | "SystemModstamp" | "OwnerId"
    ) {
        Some("is not a statistics field")
    } else {
        None
    }
}

pub(super) fn check_name_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("must not be empty; \"{name}\" uses the CM campaign name".to_owned());
    }
    let mut rest = pattern;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("has a `}` without a matching `{`".to_owned());
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("has a `{` without a matching `}`")?;
        let placeholder = &after[..close];
        if !TEMPLATE_PLACEHOLDERS.contains(&placeholder) {
            return Err(format!(
                "unknown placeholder {{{placeholder}}}; use {}",
                TEMPLATE_PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// A 32-character hexadecimal CM id.
pub fn is_cm_id(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())
}

/// A 15- or 18-character Salesforce Id with the given key prefix (`701` for Campaign).
pub fn is_salesforce_id(id: &str, prefix: &str) -> bool {
    (id.len() == 15 || id.len() == 18) && id.starts_with(prefix) && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// An org id as Salesforce's identity answer gives it: 18 characters, key prefix `00D`.
pub fn is_org_id(id: &str) -> bool {
    id.len() == 18 && is_salesforce_id(id, "00D")
}

/// The problems found so far, each with its field.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            problem: problem.into(),
        });
    }
}

impl Settings {
    /// Checks every rule of PRODUCT.md §2–§3.4; returns all problems at once.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let mut problems = Problems::default();
        let targets = self.check_statistics_fields(&mut problems);
        self.check_campaign_template(&mut problems);
        self.check_status_mapping(&mut problems);
        self.check_status_rank(&mut problems);
        self.check_cm_ids(&mut problems);
        self.check_custom_fields(&targets, &mut problems);
        if let Some(problem) = self.sync_cadence.problem() {
            problems.add("sync_cadence".to_owned(), problem);
        }
        if !(1..=super::MAX_RUN_RETENTION_DAYS).contains(&self.run_retention_days) {
            problems.add(
                "run_retention_days".to_owned(),
                format!(
                    "between 1 and {} days (got {})",
                    super::MAX_RUN_RETENTION_DAYS,
                    self.run_retention_days
                ),
            );
        }
        if self.activity_overlap_minutes > super::MAX_ACTIVITY_OVERLAP_MINUTES {
            problems.add(
                "activity_overlap_minutes".to_owned(),
                format!(
                    "at most {} minutes (two days; got {})",
                    super::MAX_ACTIVITY_OVERLAP_MINUTES,
                    self.activity_overlap_minutes
                ),
            );
        }
        if problems.0.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Invalid(problems.0))
        }
    }

    /// statistics_fields: valid, writable, distinct Campaign fields. Returns the fields used.
    fn check_statistics_fields(&self, problems: &mut Problems) -> BTreeMap<&str, CampaignStat> {
        let mut targets: BTreeMap<&str, CampaignStat> = BTreeMap::new();
        for (stat, field) in &self.statistics_fields {
            let Some(field) = field else { continue };
            let path = format!("statistics_fields.{}", stat.as_str());
            if let Err(problem) = check_api_name(field) {
                problems.add(path, problem);
            } else if let Some(reason) = read_only_campaign_field(field) {
                problems.add(path, format!("`{field}` {reason}"));
            } else if let Some(other) = targets.insert(field.as_str(), *stat) {
                problems.add(
                    path,
                    format!(
                        "`{field}` is already the target of {}; each field takes one stat",
                        other.as_str()
                    ),
                );
            }
        }
        targets
    }

    /// campaign_template: a name pattern with known placeholders, picklist values, a parent Id.
    fn check_campaign_template(&self, problems: &mut Problems) {
        let template = &self.campaign_template;
        if let Err(problem) = check_name_pattern(&template.name_pattern) {
            problems.add("campaign_template.name_pattern", problem);
        }
        for (name, value) in [("type", &template.campaign_type), ("status", &template.status)] {
            if let Some(value) = value
                && (value.trim().is_empty() || value.chars().count() > 255)
            {
                problems.add(
                    format!("campaign_template.{name}"),
                    "must be a non-empty picklist value (or null for the org default)",
                );
            }
        }
        if let Some(parent) = &template.parent_id
            && !is_salesforce_id(parent, "701")
        {
            problems.add(
                "campaign_template.parent_id",
                format!("`{parent}` is not a Salesforce Campaign Id (15 or 18 characters starting 701)"),
            );
        }
    }

    /// status_mapping: labels, one row per activity, one responded flag per label.
    fn check_status_mapping(&self, problems: &mut Problems) {
        let mut seen_activities: BTreeMap<ActivityKind, usize> = BTreeMap::new();
        let mut label_flags: BTreeMap<&str, (bool, usize)> = BTreeMap::new();
        for (index, entry) in self.status_mapping.iter().enumerate() {
            if let Some(first) = seen_activities.insert(entry.activity, index) {
                problems.add(
                    format!("status_mapping[{index}].activity"),
                    format!("{} is already mapped by status_mapping[{first}]", entry.activity),
                );
            }
            if let Err(problem) = check_status_label(&entry.status) {
                problems.add(format!("status_mapping[{index}].status"), problem);
            }
            match label_flags.get(entry.status.as_str()) {
                Some(&(responded, first)) if responded != entry.responded => problems.add(
                    format!("status_mapping[{index}].responded"),
                    format!(
                        "label \"{}\" is responded={} in status_mapping[{first}]; a label has one responded flag",
                        entry.status, responded
                    ),
                ),
                Some(_) => {}
                None => {
                    label_flags.insert(entry.status.as_str(), (entry.responded, index));
                }
            }
        }
    }

    /// status_rank: a permutation of the six activities.
    fn check_status_rank(&self, problems: &mut Problems) {
        let ranked: BTreeSet<ActivityKind> = self.status_rank.iter().copied().collect();
        if ranked.len() == self.status_rank.len() && ranked.len() == ActivityKind::ALL.len() {
            return;
        }
        let missing: Vec<&str> = ActivityKind::ALL
            .into_iter()
            .filter(|kind| !ranked.contains(kind))
            .map(ActivityKind::as_str)
            .collect();
        problems.add(
            "status_rank",
            format!(
                "must list each of the six activities exactly once{}",
                if missing.is_empty() {
                    " (one is repeated)".to_owned()
                } else {
                    format!(" (missing: {})", missing.join(", "))
                }
            ),
        );
    }

    /// cm_clients and cm_lists: CM ids, each once; at least one client.
    fn check_cm_ids(&self, problems: &mut Problems) {
        if self.cm_clients.is_empty() {
            problems.add("cm_clients", "name at least one CM client id to sync");
        }
        for (name, ids) in [("cm_clients", &self.cm_clients), ("cm_lists", &self.cm_lists)] {
            let mut distinct = BTreeSet::new();
            for (index, id) in ids.iter().enumerate() {
                if !is_cm_id(id) {
                    problems.add(
                        format!("{name}[{index}]"),
                        format!("`{id}` is not a CM id (32 hexadecimal characters)"),
                    );
                } else if !distinct.insert(id.to_ascii_lowercase()) {
                    problems.add(format!("{name}[{index}]"), format!("`{id}` is listed twice"));
                }
            }
        }
    }

    /// The custom fields the rules need: distinct member fields, a link field that is not also
    /// a statistics field.
    fn check_custom_fields(&self, statistics: &BTreeMap<&str, CampaignStat>, problems: &mut Problems) {
        let member = &self.member_fields;
        let mut member_names = BTreeSet::new();
        let detail = &self.member_detail_fields;
        let detail_paths: Vec<(String, &str)> = detail
            .fields()
            .map(|(field, name)| (format!("member_detail_fields.{}", field.key()), name))
            .collect();
        for (path, value) in [
            ("member_fields.activity_date".to_owned(), member.activity_date.as_str()),
            ("member_fields.activity_kind".to_owned(), member.activity_kind.as_str()),
            (
                "member_fields.once_only_marker".to_owned(),
                member.once_only_marker.as_str(),
            ),
        ]
        .into_iter()
        .chain(detail_paths)
        {
            if let Err(problem) = check_custom_field(value) {
                problems.add(path, problem);
            } else if !member_names.insert(value.to_ascii_lowercase()) {
                problems.add(path, format!("`{value}` is used for two member fields"));
            }
        }
        if detail.last_clicked_url.is_some() && detail.last_clicked.is_none() {
            problems.add(
                "member_detail_fields.last_clicked_url",
                "needs `last_clicked` too: the URL kept is the latest click's, and its date is what makes it the latest",
            );
        }
        if let Err(problem) = check_custom_field(&self.campaign_link_field) {
            problems.add("campaign_link_field", problem);
        } else if statistics.contains_key(self.campaign_link_field.as_str()) {
            problems.add(
                "campaign_link_field",
                format!("`{}` is also a statistics field", self.campaign_link_field),
            );
        }
    }
}
