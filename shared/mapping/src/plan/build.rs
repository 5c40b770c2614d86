//! Building the plans: which CM campaigns to create, and for one campaign, every member,
//! person, status and statistics change with its reason (PRODUCT.md §3, §5).

use crate::settings::AddMissingMembers;
use std::collections::BTreeMap;

use super::*;

/// Plans discovery: which discovered campaigns get an SF Campaign (§3.2).
/// `links` maps CM campaign id → SF Campaign id for the campaigns already linked.
pub fn plan_discovery(
    discovered: &[DiscoveredCampaign],
    links: &BTreeMap<String, String>,
    settings: &Settings,
) -> (Vec<CampaignToCreate>, Vec<CampaignNotCreated>) {
    let mut create = Vec::new();
    let mut not_created = Vec::new();
    for campaign in discovered {
        match auto_create_eligibility(
            campaign,
            settings,
            links.get(&campaign.cm_campaign_id).map(String::as_str),
        ) {
            Eligibility::Eligible => create.push(CampaignToCreate {
                campaign: campaign.clone(),
                sf_campaign: render_campaign(campaign, &settings.campaign_template, &settings.campaign_link_field),
            }),
            Eligibility::Ineligible {
                why: Ineligible::AlreadyLinked { .. },
            } => {}
            Eligibility::Ineligible { why } => not_created.push(CampaignNotCreated {
                cm_campaign_id: campaign.cm_campaign_id.clone(),
                name: campaign.name.clone(),
                why,
            }),
        }
    }
    (create, not_created)
}

/// Plans one linked campaign: statuses (§3.5), statistics (§3.1), members (§3.6) with their
/// decisions (§3.3), and Lead/Contact opt-outs and bounces (§3.7).
pub fn plan_campaign(input: &CampaignSyncInput<'_>, settings: &Settings) -> CampaignPlan {
    // Statuses matter only for member writes: with no new activity there is nothing to prepare.
    let statuses = if input.activities.is_empty() {
        StatusPlan::default()
    } else {
        plan_statuses(input.statuses, settings)
    };
    let mut plan = CampaignPlan {
        link: input.link.clone(),
        statuses,
        members_to_add: Vec::new(),
        member_updates: Vec::new(),
        person_updates: Vec::new(),
        statistics: StatisticsPlan::default(),
        skips: Vec::new(),
        choices: Vec::new(),
        hand_set_statuses_kept: 0,
        recipients_not_added: 0,
    };

    if let Some(stats) = input.statistics {
        plan.statistics = plan_statistics(&stats.summary, &stats.last_written, settings, stats.org_fields.as_ref());
        for field in &plan.statistics.missing_fields {
            plan.skips.push(Skip {
                subject: field.clone(),
                reason: SkipReason::FieldMissing { field: field.clone() },
            });
        }
    }

    let mut by_email: BTreeMap<&str, Vec<&Activity>> = BTreeMap::new();
    for activity in input.activities {
        by_email.entry(activity.email.as_str()).or_default().push(activity);
    }

    // The status new members start in: the mapped "Sent" label, else the campaign's default
    // (found by `IsDefault`: its label is in the org's language).
    let default_label = input.statuses.iter().find(|s| s.is_default).map(|s| s.label.clone());
    let start_label = settings
        .label_for(ActivityKind::Sent)
        .filter(|label| plan.statuses.is_usable(label))
        .map(str::to_owned)
        .or_else(|| default_label.clone());

    for (email, activities) in by_email {
        let candidates = input.people.get(email).map(Vec::as_slice).unwrap_or_default();
        let (person_id, person_kind) = match match_person(candidates, settings.match_preference) {
            MatchOutcome::Matched { id, kind, passed_over } => {
                if !passed_over.is_empty() {
                    plan.choices.push(MatchChoice {
                        email: email.to_owned(),
                        chosen: id.clone(),
                        passed_over,
                    });
                }
                (id, kind)
            }
            MatchOutcome::Unmatched => {
                plan.skips.push(Skip {
                    subject: email.to_owned(),
                    reason: SkipReason::UnmatchedEmail,
                });
                continue;
            }
            MatchOutcome::Ambiguous { candidates } => {
                plan.skips.push(Skip {
                    subject: email.to_owned(),
                    reason: SkipReason::AmbiguousMatch { candidates },
                });
                continue;
            }
        };
        plan_member(
            &mut plan,
            input,
            settings,
            email,
            &person_id,
            person_kind,
            &activities,
            start_label.as_deref(),
            default_label.as_deref(),
        );
        let target = PersonTarget {
            email,
            person_id: &person_id,
            person_kind,
        };
        let (update, skips) = plan_person(settings, &target, input.person_states, input.other_lists, &activities);
        plan.person_updates.extend(update);
        plan.skips.extend(skips);
    }
    plan
}

#[allow(clippy::too_many_arguments)]
pub(super) fn plan_member(
    plan: &mut CampaignPlan,
    input: &CampaignSyncInput<'_>,
    settings: &Settings,
    email: &str,
    person_id: &str,
    person_kind: PersonKind,
    activities: &[&Activity],
    start_label: Option<&str>,
    default_label: Option<&str>,
) {
    let occurrences: Vec<Occurrence> = activities.iter().map(|a| a.occurrence()).collect();
    let occurrences = occurrences.as_slice();
    let existing = input.members.get(person_id);
    let start = match (existing, start_label) {
        // The rules compare the mapping's spelling; the campaign may spell a label otherwise.
        (Some(member), _) => MemberState {
            status: plan.statuses.spelling.to_mapped(&member.state.status),
            ..member.state.clone()
        },
        (None, _) if settings.add_missing_members == AddMissingMembers::Never => {
            plan.skips.push(Skip {
                subject: email.to_owned(),
                reason: SkipReason::NotAMember,
            });
            return;
        }
        // Counted, not reported one by one: most of a large send never engages.
        (None, _)
            if settings.add_missing_members == AddMissingMembers::Engaged
                && occurrences.iter().all(|o| o.kind == ActivityKind::Sent) =>
        {
            plan.recipients_not_added += 1;
            return;
        }
        (None, Some(label)) => MemberState::new_member(label),
        (None, None) => {
            let label = settings.label_for(ActivityKind::Sent).unwrap_or("Sent").to_owned();
            plan.skips.push(Skip {
                subject: email.to_owned(),
                reason: SkipReason::StatusMissing { label },
            });
            return;
        }
    };
    let mut decision = decide_member_in(&start, occurrences, settings, default_label);
    // The detail is a min or max over all the member's activity, whatever the Status rules
    // decided (the Activity Date guard is about the Status, not about when someone opened).
    decision.after.detail = start
        .detail
        .merged(activities.iter().copied(), &settings.member_detail_fields);
    if decision.after.status == start.status
        && settings.rank_of_label(&start.status).is_none()
        && !is_starting_status(&start.status, default_label, settings)
    {
        plan.hand_set_statuses_kept += 1;
    }
    if !plan.statuses.is_usable(&decision.after.status) {
        let label = decision.after.status.clone();
        plan.skips.push(Skip {
            subject: email.to_owned(),
            reason: SkipReason::StatusMissing { label },
        });
        return;
    }
    match decision.reason {
        DecisionReason::StatusKept {
            why: StatusKept::GuardRefused { activity_date },
        } => {
            plan.skips.push(Skip {
                subject: email.to_owned(),
                reason: SkipReason::GuardRefused { activity_date },
            });
        }
        DecisionReason::StatusKept {
            why: StatusKept::OnceOnlyUsed,
        } if !decision.needs_write() => {
            plan.skips.push(Skip {
                subject: email.to_owned(),
                reason: SkipReason::OnceOnlyUsed,
            });
        }
        _ => {}
    }
    let needs_write = decision.needs_write();
    // Written as the campaign spells the label.
    decision.after.status = plan.statuses.spelling.to_org(&decision.after.status);
    match existing {
        Some(member) if needs_write => plan.member_updates.push(MemberUpdate {
            member_id: member.member_id.clone(),
            email: email.to_owned(),
            before: decision.before,
            after: decision.after,
            reason: decision.reason,
        }),
        Some(_) => {}
        None => plan.members_to_add.push(MemberToAdd {
            person_id: person_id.to_owned(),
            person_kind,
            email: email.to_owned(),
            state: decision.after,
            reason: decision.reason,
        }),
    }
}

/// One Lead or Contact, by its email.
pub(super) struct PersonTarget<'a> {
    email: &'a str,
    person_id: &'a str,
    person_kind: PersonKind,
}

/// A person's opt-out and bounce from their unsubscribes, spam complaints and bounces: one
/// place for a campaign's activity and a list's own events alike (PRODUCT.md §3.7).
pub(super) fn plan_person(
    settings: &Settings,
    target: &PersonTarget<'_>,
    person_states: &BTreeMap<String, PersonEmailState>,
    other_lists: &BTreeMap<String, Vec<(String, SubscriberState)>>,
    activities: &[&Activity],
) -> (Option<PersonUpdate>, Vec<Skip>) {
    let (email, person_id, person_kind) = (target.email, target.person_id, target.person_kind);
    let mut skips = Vec::new();
    let current = person_states.get(person_id).cloned().unwrap_or_default();
    let mut update = PersonUpdate {
        person_id: person_id.to_owned(),
        person_kind,
        email: email.to_owned(),
        opt_out: false,
        bounce: None,
    };
    // A spam complaint is the strongest unsubscribe; CM deactivates the subscriber for both.
    if activities
        .iter()
        .any(|a| matches!(a.kind, ActivityKind::Unsubscribed | ActivityKind::MarkedAsSpam))
    {
        let other_lists = match settings.opt_out_policy {
            OptOutPolicy::AllLists => other_lists.get(email).map(Vec::as_slice).unwrap_or_default(),
            _ => &[],
        };
        match decide_opt_out(settings.opt_out_policy, &current, other_lists) {
            OptOutDecision::OptOut => update.opt_out = true,
            OptOutDecision::Keep {
                why: OptOutKept::AlreadyOptedOut,
            } => {}
            OptOutDecision::Keep { why } => {
                skips.push(Skip {
                    subject: email.to_owned(),
                    reason: SkipReason::OptOutKept { why },
                });
            }
        }
    }
    // The latest hard bounce counts.
    let latest_bounce = activities
        .iter()
        .filter(|a| a.kind == ActivityKind::Bounced)
        .max_by_key(|a| (severity(a) == BounceSeverity::Hard, a.at));
    if let Some(bounce) = latest_bounce {
        let reason = match &bounce.detail {
            ActivityDetail::Bounce { reason, .. } => reason.as_str(),
            _ => "",
        };
        match decide_bounce(settings.record_bounces, severity(bounce), &current, bounce.at, reason) {
            BounceDecision::Record { at, reason } => update.bounce = Some((at, reason)),
            BounceDecision::Keep {
                why: BounceKept::AlreadyRecorded,
            } => {}
            BounceDecision::Keep { why } => {
                skips.push(Skip {
                    subject: email.to_owned(),
                    reason: SkipReason::BounceKept { why },
                });
            }
        }
    }
    let update = (update.opt_out || update.bounce.is_some()).then_some(update);
    (update, skips)
}

/// Plans a list's own opt-outs and bounces (webhook deliveries, the list backstop) with the same
/// rules as a campaign's: every Lead and Contact with the address is an owner of it, so each
/// gets the decision; an address nobody has is reported.
pub fn plan_list_changes(input: &ListChangesInput<'_>, settings: &Settings) -> ListChangesPlan {
    let mut plan = ListChangesPlan::default();
    let mut by_email: BTreeMap<&str, Vec<&Activity>> = BTreeMap::new();
    for activity in input.activities {
        by_email.entry(activity.email.as_str()).or_default().push(activity);
    }
    for (email, activities) in by_email {
        let people = input.people.get(email).map(Vec::as_slice).unwrap_or_default();
        if people.is_empty() {
            plan.skips.push(Skip {
                subject: email.to_owned(),
                reason: SkipReason::UnmatchedEmail,
            });
            continue;
        }
        for person in people {
            let target = PersonTarget {
                email,
                person_id: &person.id,
                person_kind: person.kind,
            };
            let (update, skips) = plan_person(settings, &target, input.person_states, input.other_lists, &activities);
            plan.person_updates.extend(update);
            plan.skips.extend(skips);
        }
    }
    plan
}

pub(super) fn severity(activity: &Activity) -> BounceSeverity {
    match &activity.detail {
        ActivityDetail::Bounce { bounce_type, .. } if bounce_type.eq_ignore_ascii_case("soft") => BounceSeverity::Soft,
        _ => BounceSeverity::Hard,
    }
}
