//! Stage 2: for one part of the activity, what Salesforce holds for the people concerned (and
//! CM's other lists, for `all_lists`), and the plan `mapping` makes of it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use events::publisher::EventSink;
use futures::{StreamExt, TryStreamExt};
use mapping::matching::{PersonCandidate, PersonKind};
use mapping::people::{PersonEmailState, SubscriberState};
use mapping::plan::{CampaignPlan, CampaignSyncInput, StatisticsInput, plan_campaign};
use mapping::probe::{WrittenStatistics, statistics_unchanged};
use mapping::settings::OptOutPolicy;
use mapping::{Activity, ActivityKind, Settings};
use state::Store;

use super::CampaignRun;
use crate::salesforce_io::{
    Members, read_campaign_stats, read_members, read_people, read_person_states, read_statuses,
};
use crate::{Engine, EngineError};

/// CM look-ups (`listsforemail`) in flight at once.
const CM_LOOKUP_CONCURRENCY: usize = 8;

/// What Salesforce holds for the people of one part.
struct PartState {
    members: Members,
    people: BTreeMap<String, Vec<PersonCandidate>>,
    person_states: BTreeMap<String, PersonEmailState>,
}

fn is_leaving(kind: ActivityKind) -> bool {
    matches!(
        kind,
        ActivityKind::Unsubscribed | ActivityKind::MarkedAsSpam | ActivityKind::Bounced
    )
}

impl<S: Store, P: EventSink> Engine<S, P> {
    /// Plans one part: statuses before the first part that has activity, statistics with the
    /// first part, then the members and people of this part.
    pub(super) async fn plan_part(
        &self,
        run: &mut CampaignRun<'_>,
        activities: &[Activity],
    ) -> Result<CampaignPlan, EngineError> {
        let campaign_id = run.link.sf_campaign_id.clone();
        if run.statuses.is_none() && !activities.is_empty() {
            run.statuses = Some(read_statuses(&self.sf, &campaign_id).await?);
        }
        let statistics = match (&run.summary, run.first_part) {
            (Some(summary), true) if run.settings.update_campaign_statistics => {
                let summary = summary.to_stats();
                let target = mapping::statistics::statistics_target(&summary, run.settings);
                if statistics_unchanged(run.progress.statistics.as_ref(), &campaign_id, &target) {
                    None // written by an earlier sync: no Salesforce call
                } else {
                    let (current, org_fields) = read_campaign_stats(&self.sf, run.settings, &campaign_id).await?;
                    run.statistics_target = Some(WrittenStatistics {
                        sf_campaign_id: campaign_id.clone(),
                        values: target,
                    });
                    Some(StatisticsInput {
                        summary,
                        last_written: current,
                        org_fields,
                    })
                }
            }
            _ => None,
        };
        let part = self.read_part_state(run.settings, &campaign_id, activities).await?;
        let can_opt_out: BTreeSet<&str> = part
            .people
            .iter()
            .filter(|(_, candidates)| {
                candidates
                    .iter()
                    .any(|c| !part.person_states.get(&c.id).is_some_and(|s| s.has_opted_out))
            })
            .map(|(email, _)| email.as_str())
            .collect();
        let other_lists = self.other_lists(run.settings, activities, &can_opt_out).await?;
        let plan = plan_campaign(
            &CampaignSyncInput {
                link: &run.link,
                activities,
                people: &part.people,
                members: &part.members.by_person,
                statuses: run.statuses.as_deref().unwrap_or_default(),
                statistics: statistics.as_ref(),
                person_states: &part.person_states,
                other_lists: &other_lists,
            },
            run.settings,
        );
        run.count_planned(&plan);
        Ok(plan)
    }

    /// Only the members with new activity are read: reads grow with what changed, about 9,500
    /// addresses per Composite call, never with the size of the campaign. People who are not
    /// members yet are looked up by email; members who leave have their email fields read.
    async fn read_part_state(
        &self,
        settings: &Settings,
        campaign_id: &str,
        activities: &[Activity],
    ) -> Result<PartState, EngineError> {
        let emails = mapping::activity::unique_emails(activities);
        let members = if emails.is_empty() {
            Members::default()
        } else {
            read_members(&self.sf, settings, campaign_id, &emails).await?
        };
        let member_emails: BTreeSet<&String> = members.email_of_person.values().collect();
        let unknown: Vec<String> = emails.iter().filter(|e| !member_emails.contains(e)).cloned().collect();
        let (mut people, mut person_states) = read_people(&self.sf, &unknown).await?;
        for (person, email) in &members.email_of_person {
            people.entry(email.clone()).or_default().push(PersonCandidate {
                id: person.clone(),
                kind: if person.starts_with("00Q") {
                    PersonKind::Lead
                } else {
                    PersonKind::Contact
                },
                last_modified: DateTime::<Utc>::MIN_UTC,
                is_member: true,
            });
        }
        let leaving: BTreeSet<&str> = activities
            .iter()
            .filter(|a| is_leaving(a.kind))
            .map(|a| a.email.as_str())
            .collect();
        let member_people: Vec<String> = members
            .email_of_person
            .iter()
            .filter(|(_, e)| leaving.contains(e.as_str()))
            .map(|(p, _)| p.clone())
            .collect();
        person_states.extend(read_person_states(&self.sf, &member_people).await?);
        Ok(PartState {
            members,
            people,
            person_states,
        })
    }

    /// For `all_lists`: each leaving address's state on the other configured lists. Only
    /// addresses in `can_opt_out` are looked up, and none when the configured clients have no
    /// list besides the one left (then there is nothing else to be subscribed to).
    pub(crate) async fn other_lists(
        &self,
        settings: &Settings,
        activities: &[Activity],
        can_opt_out: &BTreeSet<&str>,
    ) -> Result<BTreeMap<String, Vec<(String, SubscriberState)>>, EngineError> {
        let mut out = BTreeMap::new();
        if settings.opt_out_policy != OptOutPolicy::AllLists {
            return Ok(out);
        }
        let leaving: BTreeMap<&str, &str> = activities
            .iter()
            .filter(|a| matches!(a.kind, ActivityKind::Unsubscribed | ActivityKind::MarkedAsSpam))
            .filter(|a| can_opt_out.contains(a.email.as_str()))
            .map(|a| (a.email.as_str(), a.list_id.as_str()))
            .collect();
        if leaving.is_empty() {
            return Ok(out);
        }
        let lists = self.configured_lists(settings).await?;
        let (alone, leaving): (BTreeMap<&str, &str>, BTreeMap<&str, &str>) = leaving
            .into_iter()
            .partition(|(_, list)| lists.iter().all(|l| l.eq_ignore_ascii_case(list)));
        for email in alone.keys() {
            out.insert((*email).to_owned(), Vec::new());
        }
        // One `listsforemail` call per leaving address and client: a few at a time, so a
        // campaign with many unsubscribes does not wait for them one by one.
        let lookups = leaving.into_iter().flat_map(|(email, list)| {
            settings.cm_clients.iter().map(move |client| async move {
                let memberships = self.cm.lists_for_email(client, email).await?;
                Ok::<_, EngineError>((email, list, memberships))
            })
        });
        let answers: Vec<_> = futures::stream::iter(lookups)
            .buffer_unordered(CM_LOOKUP_CONCURRENCY)
            .try_collect()
            .await?;
        for (email, list, memberships) in answers {
            let states: &mut Vec<(String, SubscriberState)> = out.entry(email.to_owned()).or_default();
            for membership in memberships {
                if membership.list_id == list || !is_configured(settings, &membership.list_id) {
                    continue;
                }
                states.push((membership.list_id, subscriber_state(&membership.subscriber_state)));
            }
        }
        Ok(out)
    }

    /// The configured lists of the configured clients.
    async fn configured_lists(&self, settings: &Settings) -> Result<BTreeSet<String>, EngineError> {
        let mut lists = BTreeSet::new();
        for client in &settings.cm_clients {
            lists.extend(
                self.cm
                    .lists(client)
                    .await?
                    .into_iter()
                    .map(|l| l.list_id)
                    .filter(|l| is_configured(settings, l)),
            );
        }
        Ok(lists)
    }
}

fn is_configured(settings: &Settings, list: &str) -> bool {
    settings.cm_lists.is_empty() || settings.cm_lists.iter().any(|l| l.eq_ignore_ascii_case(list))
}

fn subscriber_state(state: &str) -> SubscriberState {
    match state {
        "Active" => SubscriberState::Active,
        "Unconfirmed" => SubscriberState::Unconfirmed,
        "Bounced" => SubscriberState::Bounced,
        "Deleted" => SubscriberState::Deleted,
        _ => SubscriberState::Unsubscribed,
    }
}
