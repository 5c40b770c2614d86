//! Stage `plan`: for one part of the activity, what Salesforce holds for the people concerned
//! (and CM's other lists, for `all_lists`), and the plan `mapping` makes of it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use events::publisher::EventSink;
use mapping::matching::PersonCandidate;
use mapping::people::PersonEmailState;
use mapping::plan::{CampaignPlan, CampaignSyncInput, StatisticsInput, plan_campaign};
use mapping::probe::{WrittenStatistics, statistics_unchanged};
use mapping::{Activity, ActivityKind, Settings};

use super::{CampaignRun, CampaignStore, CampaignSync};
use crate::core::EngineError;
use crate::lists::Lists;
use crate::salesforce_io::reads::{
    Members, read_campaign_stats, read_members, read_people, read_person_states, read_statuses,
};

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

impl<S: CampaignStore, P: EventSink> CampaignSync<'_, S, P> {
    /// Plans one part: statuses before the first part that has activity, statistics with the
    /// first part, then the members and people of this part.
    pub(super) async fn plan_part(
        &self,
        run: &mut CampaignRun<'_>,
        activities: &[Activity],
    ) -> Result<CampaignPlan, EngineError> {
        let campaign_id = run.link.sf_campaign_id.clone();
        if run.statuses.is_none() && !activities.is_empty() {
            run.statuses = Some(read_statuses(&self.engine.sf, &campaign_id).await?);
        }
        // Statistics go with the first part (planned before any part is written).
        let first_planned = run.first_part && !run.planned_any;
        run.planned_any = true;
        let statistics = match (&run.summary, first_planned) {
            (Some(summary), true) if run.settings.update_campaign_statistics => {
                let summary = summary.to_stats();
                let target = mapping::statistics::statistics_target(&summary, run.settings);
                if statistics_unchanged(run.progress.statistics.as_ref(), &campaign_id, &target) {
                    None // written by an earlier sync: no Salesforce call
                } else {
                    let (current, org_fields) =
                        read_campaign_stats(&self.engine.sf, run.settings, &campaign_id).await?;
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
        let other_lists = Lists::new(self.engine)
            .other_lists(run.settings, activities, &can_opt_out)
            .await?;
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
            read_members(&self.engine.sf, settings, campaign_id, &emails).await?
        };
        let member_emails: BTreeSet<&String> = members.person.values().map(|p| &p.email).collect();
        let unknown: Vec<String> = emails.iter().filter(|e| !member_emails.contains(e)).cloned().collect();
        let (mut people, mut person_states) = read_people(&self.engine.sf, &unknown).await?;
        for (person, member) in &members.person {
            people.entry(member.email.clone()).or_default().push(PersonCandidate {
                id: person.clone(),
                kind: member.kind,
                last_modified: DateTime::<Utc>::MIN_UTC,
                is_member: true,
            });
        }
        let leaving: BTreeSet<&str> = activities
            .iter()
            .filter(|a| is_leaving(a.kind))
            .map(|a| a.email.as_str())
            .collect();
        let member_people: Vec<(String, _)> = members
            .person
            .iter()
            .filter(|(_, member)| leaving.contains(member.email.as_str()))
            .map(|(id, member)| (id.clone(), member.kind))
            .collect();
        person_states.extend(read_person_states(&self.engine.sf, &member_people).await?);
        Ok(PartState {
            members,
            people,
            person_states,
        })
    }
}
