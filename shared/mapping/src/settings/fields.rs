//! The Salesforce fields a settings document names, with the kind each must be (what the
//! shipped metadata and `doctor` check against).

use serde::Serialize;

use super::*;

/// A Salesforce field the settings name, with what the sync needs of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RequiredField {
    /// `Campaign` or `CampaignMember`.
    pub object: &'static str,
    /// Field API name.
    pub field: String,
    /// The type the sync reads and writes.
    pub kind: FieldKind,
    /// The field must be a unique external id (the Campaign link field).
    pub unique_external_id: bool,
}

/// The Salesforce field types the sync uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum FieldKind {
    /// Number (a statistic).
    Number,
    /// Text.
    Text,
    /// Date/Time.
    DateTime,
}

impl FieldKind {
    /// The metadata `<type>` of a custom field of this kind.
    pub fn metadata_type(self) -> &'static str {
        match self {
            FieldKind::Number => "Number",
            FieldKind::Text => "Text",
            FieldKind::DateTime => "DateTime",
        }
    }

    /// Whether a describe `type` is acceptable for this kind.
    pub fn accepts_describe_type(self, describe_type: &str) -> bool {
        match self {
            FieldKind::Number => matches!(describe_type, "double" | "int" | "long" | "currency" | "percent"),
            FieldKind::Text => matches!(describe_type, "string" | "textarea" | "picklist"),
            FieldKind::DateTime => describe_type == "datetime",
        }
    }
}

impl Settings {
    /// Every Salesforce field on Campaign and CampaignMember these settings name (statistics
    /// fields in use, the link field, the member fields), sorted. Standard Lead/Contact fields
    /// are not settings and are not listed.
    pub fn required_fields(&self) -> Vec<RequiredField> {
        let mut fields: Vec<RequiredField> = self
            .statistics_fields
            .values()
            .flatten()
            .filter(|_| self.update_campaign_statistics)
            .map(|field| RequiredField {
                object: "Campaign",
                field: field.clone(),
                kind: FieldKind::Number,
                unique_external_id: false,
            })
            .collect();
        fields.push(RequiredField {
            object: "Campaign",
            field: self.campaign_link_field.clone(),
            kind: FieldKind::Text,
            unique_external_id: true,
        });
        let member = |field: &str, kind| RequiredField {
            object: "CampaignMember",
            field: field.to_owned(),
            kind,
            unique_external_id: false,
        };
        fields.push(member(&self.member_fields.activity_date, FieldKind::DateTime));
        fields.push(member(&self.member_fields.activity_kind, FieldKind::Text));
        fields.push(member(&self.member_fields.once_only_marker, FieldKind::DateTime));
        for (detail, name) in self.member_detail_fields.fields() {
            let kind = if detail.is_date() {
                FieldKind::DateTime
            } else {
                FieldKind::Text
            };
            fields.push(member(name, kind));
        }
        fields.sort();
        fields
    }
}
