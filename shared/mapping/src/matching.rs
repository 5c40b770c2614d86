//! Matching recipients to Salesforce people (PRODUCT.md §3.6): by email, case-insensitive, per
//! `match_preference`. An email that matches nobody is reported, never guessed; one that matches
//! several people the preference cannot separate is reported as ambiguous.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::settings::MatchPreference;

/// Lead or Contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PersonKind {
    /// A Lead.
    Lead,
    /// A Contact.
    Contact,
}

/// A Lead or Contact that has the recipient's email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonCandidate {
    /// Record Id.
    pub id: String,
    /// Lead or Contact.
    pub kind: PersonKind,
    /// `LastModifiedDate`.
    pub last_modified: DateTime<Utc>,
    /// Already a member of the campaign being synced.
    pub is_member: bool,
}

/// The outcome of matching one email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "match", rename_all = "snake_case")]
pub enum MatchOutcome {
    /// This person.
    Matched {
        /// Record Id.
        id: String,
        /// Lead or Contact.
        kind: PersonKind,
        /// The other people with the same email, passed over (sorted): duplicates an admin may
        /// want to merge.
        passed_over: Vec<String>,
    },
    /// Nobody in SF has the email.
    Unmatched,
    /// Several people, and the preference cannot choose.
    Ambiguous {
        /// Their Ids.
        candidates: Vec<String>,
    },
}

/// Picks the person an email means.
///
/// People already in the campaign come first: if exactly one candidate is a member, that member
/// is the one the email means (updating an existing member beats adding a second person). Among
/// the remaining candidates the preference decides:
/// - `most_recently_modified`: the single latest `LastModifiedDate`; a tie is ambiguous;
/// - `contact_first` / `lead_first`: the preferred kind if any, else the other; two of the chosen
///   kind are ambiguous.
pub fn match_person(candidates: &[PersonCandidate], preference: MatchPreference) -> MatchOutcome {
    let members: Vec<&PersonCandidate> = candidates.iter().filter(|c| c.is_member).collect();
    let pool: Vec<&PersonCandidate> = if members.is_empty() {
        candidates.iter().collect()
    } else {
        members
    };

    let chosen: Vec<&PersonCandidate> = match preference {
        MatchPreference::MostRecentlyModified => {
            let latest = pool.iter().map(|c| c.last_modified).max();
            pool.into_iter().filter(|c| Some(c.last_modified) == latest).collect()
        }
        MatchPreference::ContactFirst | MatchPreference::LeadFirst => {
            let preferred = if preference == MatchPreference::ContactFirst {
                PersonKind::Contact
            } else {
                PersonKind::Lead
            };
            let (first, others): (Vec<_>, Vec<_>) = pool.into_iter().partition(|c| c.kind == preferred);
            if first.is_empty() { others } else { first }
        }
    };
    match chosen.as_slice() {
        [] => MatchOutcome::Unmatched,
        [one] => {
            let mut passed_over: Vec<String> = candidates
                .iter()
                .filter(|c| c.id != one.id)
                .map(|c| c.id.clone())
                .collect();
            passed_over.sort();
            MatchOutcome::Matched {
                id: one.id.clone(),
                kind: one.kind,
                passed_over,
            }
        }
        several => {
            let mut candidates: Vec<String> = several.iter().map(|c| c.id.clone()).collect();
            candidates.sort();
            MatchOutcome::Ambiguous { candidates }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn person(id: &str, kind: PersonKind, day: u32, is_member: bool) -> PersonCandidate {
        PersonCandidate {
            id: id.into(),
            kind,
            last_modified: Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).single().unwrap_or_default(),
            is_member,
        }
    }

    /// The chosen person, whoever was passed over.
    fn chosen(outcome: MatchOutcome) -> Option<(String, PersonKind)> {
        match outcome {
            MatchOutcome::Matched { id, kind, .. } => Some((id, kind)),
            _ => None,
        }
    }

    fn matched(id: &str, kind: PersonKind) -> Option<(String, PersonKind)> {
        Some((id.into(), kind))
    }

    #[test]
    fn nobody_is_reported_not_guessed() {
        assert_eq!(
            match_person(&[], MatchPreference::MostRecentlyModified),
            MatchOutcome::Unmatched
        );
    }

    #[test]
    fn each_preference_picks_its_person() {
        let people = [
            person("00Q1", PersonKind::Lead, 5, false),
            person("0031", PersonKind::Contact, 3, false),
        ];
        assert_eq!(
            chosen(match_person(&people, MatchPreference::MostRecentlyModified)),
            matched("00Q1", PersonKind::Lead)
        );
        assert_eq!(
            chosen(match_person(&people, MatchPreference::ContactFirst)),
            matched("0031", PersonKind::Contact)
        );
        assert_eq!(
            chosen(match_person(&people, MatchPreference::LeadFirst)),
            matched("00Q1", PersonKind::Lead)
        );
        // Only the other kind exists: it is taken.
        assert_eq!(
            chosen(match_person(&people[..1], MatchPreference::ContactFirst)),
            matched("00Q1", PersonKind::Lead)
        );
    }

    #[test]
    fn a_choice_names_the_people_passed_over() {
        let people = [
            person("0032", PersonKind::Contact, 2, false),
            person("0031", PersonKind::Contact, 7, false),
            person("00Q1", PersonKind::Lead, 1, false),
        ];
        assert_eq!(
            match_person(&people, MatchPreference::MostRecentlyModified),
            MatchOutcome::Matched {
                id: "0031".into(),
                kind: PersonKind::Contact,
                passed_over: vec!["0032".into(), "00Q1".into()],
            }
        );
        assert_eq!(
            match_person(&people[1..2], MatchPreference::MostRecentlyModified),
            MatchOutcome::Matched {
                id: "0031".into(),
                kind: PersonKind::Contact,
                passed_over: Vec::new(),
            },
            "one person: no choice"
        );
    }

    #[test]
    fn ties_the_preference_cannot_break_are_ambiguous() {
        let people = [
            person("0032", PersonKind::Contact, 3, false),
            person("0031", PersonKind::Contact, 3, false),
        ];
        assert_eq!(
            match_person(&people, MatchPreference::MostRecentlyModified),
            MatchOutcome::Ambiguous {
                candidates: vec!["0031".into(), "0032".into()]
            }
        );
        assert!(matches!(
            match_person(&people, MatchPreference::ContactFirst),
            MatchOutcome::Ambiguous { .. }
        ));
    }

    #[test]
    fn an_existing_member_is_preferred() {
        let people = [
            person("00Q1", PersonKind::Lead, 9, false),
            person("0031", PersonKind::Contact, 1, true),
        ];
        assert_eq!(
            chosen(match_person(&people, MatchPreference::LeadFirst)),
            matched("0031", PersonKind::Contact)
        );
    }
}
