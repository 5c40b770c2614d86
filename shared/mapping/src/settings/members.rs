//! The CampaignMember fields the settings name: the per-member state the rules keep
//! (PRODUCT.md §3.3) and the opt-in engagement detail.

use serde::{Deserialize, Serialize};

/// The custom CampaignMember fields that hold per-member state (PRODUCT.md §3.3, §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemberFields {
    /// Date-time of the latest activity applied to the member (the seed's Activity Date).
    pub activity_date: String,
    /// The kind of that activity, for the equal-timestamp tie-break.
    pub activity_kind: String,
    /// Date/Time: when the interaction that used the single `once_only` update happened (empty
    /// while unused); kept so a same-moment, higher-ranked interaction can refine it later.
    pub once_only_marker: String,
}

impl Default for MemberFields {
    fn default() -> Self {
        MemberFields {
            activity_date: "CM_Activity_Date__c".to_owned(),
            activity_kind: "CM_Activity_Kind__c".to_owned(),
            once_only_marker: "CM_Status_Locked_At__c".to_owned(),
        }
    }
}

/// Engagement detail on the member, opt-in field by field: detail → SF CampaignMember field
/// (`None`: not kept); see [`crate::engagement`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemberDetailFields {
    /// Date/Time: the earliest open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_opened: Option<String>,
    /// Date/Time: the latest open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_opened: Option<String>,
    /// Date/Time: the earliest click.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_clicked: Option<String>,
    /// Date/Time: the latest click.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_clicked: Option<String>,
    /// Text: the URL of the latest click (needs `last_clicked`, which dates it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_clicked_url: Option<String>,
    /// Text: the most severe bounce type (`Hard`, else `Soft`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounce_type: Option<String>,
}

impl MemberDetailFields {
    /// Every detail field on, under the names `infra/salesforce` ships.
    pub fn every_shipped() -> Self {
        let mut fields = MemberDetailFields::default();
        for field in crate::engagement::DetailField::ALL {
            *fields.field_mut(field) = Some(field.shipped_field().to_owned());
        }
        fields
    }

    /// No detail field is on.
    pub fn is_empty(&self) -> bool {
        self.fields().next().is_none()
    }

    /// The SF field a detail field is kept in, if it is on.
    pub fn field(&self, field: crate::engagement::DetailField) -> Option<&str> {
        use crate::engagement::DetailField::*;
        match field {
            FirstOpened => self.first_opened.as_deref(),
            LastOpened => self.last_opened.as_deref(),
            FirstClicked => self.first_clicked.as_deref(),
            LastClicked => self.last_clicked.as_deref(),
            LastClickedUrl => self.last_clicked_url.as_deref(),
            BounceType => self.bounce_type.as_deref(),
        }
    }

    fn field_mut(&mut self, field: crate::engagement::DetailField) -> &mut Option<String> {
        use crate::engagement::DetailField::*;
        match field {
            FirstOpened => &mut self.first_opened,
            LastOpened => &mut self.last_opened,
            FirstClicked => &mut self.first_clicked,
            LastClicked => &mut self.last_clicked,
            LastClickedUrl => &mut self.last_clicked_url,
            BounceType => &mut self.bounce_type,
        }
    }

    /// The detail fields that are on, with their SF field names.
    pub fn fields(&self) -> impl Iterator<Item = (crate::engagement::DetailField, &str)> {
        crate::engagement::DetailField::ALL
            .into_iter()
            .filter_map(|field| self.field(field).map(|name| (field, name)))
    }
}
