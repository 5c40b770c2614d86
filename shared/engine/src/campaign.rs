//! One linked campaign's sync: read what changed, plan, apply, commit.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, DurationRound, Utc};
use events::Event;
use events::publisher::EventSink;
use futures::{StreamExt, TryStreamExt};
use mapping::people::SubscriberState;
use mapping::plan::{CampaignLink, CampaignPlan, CampaignSyncInput, StatisticsInput, plan_campaign};
use mapping::settings::OptOutPolicy;
use mapping::{Activity, ActivityKind, CmTimestamp};
use serde::Serialize;
use state::{RunFailure, RunRecord, RunStatus, Store};

use crate::salesforce_io::{read_campaign_stats, read_members, read_people, read_person_states, read_statuses};
use crate::spool::Spool;
use crate::{Deadline, Engine, EngineError};
use mapping::statuses::ExistingStatus;

/// The activity streams of a campaign, in the order they are read.
const STREAMS: [ActivityKind; 6] = [
    ActivityKind::Sent,
    ActivityKind::Opened,
    ActivityKind::Clicked,
    ActivityKind::Bounced,
    ActivityKind::Unsubscribed,
    ActivityKind::MarkedAsSpam,
];

/// CM look-ups (`listsforemail`) in flight at once.
const CM_LOOKUP_CONCURRENCY: usize = 8;

/// At most this many queued people are retried per sync; the rest wait for the next one.
const RETRY_BATCH: usize = 5_000;

/// How a campaign sync ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CampaignOutcome {
    /// Applied (or planned, for a dry run).
    Done {
        /// The run record id.
        run_id: String,
        /// Counters.
        counts: BTreeMap<String, u64>,
        /// The plan (always returned; a dry run writes nothing else).
        plan: Box<CampaignPlan>,
        /// Dry run.
        dry_run: bool,
    },
    /// Another run holds the campaign's lease; this one did nothing.
    Busy,
    /// The campaign is not linked.
    NotLinked,
    /// The deadline came first; a continuation event was published.
    Continued {
        /// The run.
        run_id: String,
    },
}

fn local_of(at: DateTime<Utc>, zone: mapping::Tz) -> CmTimestamp {
    CmTimestamp::from_utc(at, zone)
}

impl<S: Store, P: EventSink> Engine<S, P> {
    /// Syncs one linked campaign. `dry_run` computes and returns the plan and writes nothing
    /// anywhere (no lease, no watermark, no run record, no SF write).
    pub async fn sync_campaign(
        &self,
        cm_campaign_id: &str,
        run_id: &str,
        dry_run: bool,
        sequence: u32,
        deadline: Deadline,
    ) -> Result<CampaignOutcome, EngineError> {
        let settings = self.settings().await?;
        let Some(link) = self.store.link(cm_campaign_id).await? else {
            return Ok(CampaignOutcome::NotLinked);
        };
        let scope = format!("campaign:{cm_campaign_id}");
        let owner = run_id.to_owned();
        if !dry_run {
            let now = Utc::now();
            let until = now + chrono::Duration::from_std(self.options.lease).unwrap_or_default();
            if self.store.acquire_lease(&scope, &owner, now, until).await?.is_none() {
                tracing::info!(campaign = cm_campaign_id, "another run holds this campaign; skipping");
                return Ok(CampaignOutcome::Busy);
            }
        }
        let result = self
            .sync_locked(&settings, &link, run_id, dry_run, sequence, deadline)
            .await;
        if !dry_run {
            self.store.release_lease(&scope, &owner).await?;
        }
        result
    }

    /// A dry run of a campaign that may be linked only on the SF side so far.
    pub async fn plan_campaign_dry(
        &self,
        cm_campaign_id: &str,
        sf_campaign_id: &str,
        run_id: &str,
    ) -> Result<CampaignOutcome, EngineError> {
        let settings = self.settings().await?;
        let link = state::LinkRecord {
            cm_campaign_id: cm_campaign_id.to_owned(),
            sf_campaign_id: sf_campaign_id.to_owned(),
            origin: events::LinkOrigin::FoundInSalesforce,
            linked_at: Utc::now(),
        };
        self.sync_locked(&settings, &link, run_id, true, 0, Deadline::none())
            .await
    }

    async fn sync_locked(
        &self,
        settings: &mapping::Settings,
        link: &state::LinkRecord,
        run_id: &str,
        dry_run: bool,
        sequence: u32,
        deadline: Deadline,
    ) -> Result<CampaignOutcome, EngineError> {
        let zone = settings.zone();
        let cm_id = link.cm_campaign_id.as_str();
        let campaign_run = format!("{run_id}:{cm_id}");
        let started = Utc::now();
        if !dry_run {
            self.store
                .start_run(&RunRecord {
                    run_id: campaign_run.clone(),
                    scope: cm_id.to_owned(),
                    started_at: started,
                    ended_at: None,
                    status: RunStatus::Running,
                    counts: BTreeMap::new(),
                    failure_count: 0,
                })
                .await
                .or_else(|e| {
                    if matches!(e, state::StoreError::Corrupt { .. }) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
        }

        // 1. What changed in CM since the watermarks, up to CM's clock less the settle lag.
        //    Held in memory up to one part; a larger campaign spills to temporary files.
        let cm_now = self.cm.system_date().await?;
        let settled = (cm_now.to_utc(zone) - self.options.settle_lag)
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(cm_now.to_utc(zone));
        let watermarks = self.store.watermarks(cm_id).await?;
        let mut spool = Spool::new(self.options.part_size);
        let mut next_watermarks: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        // The campaign's sent date, once looked up (it takes a paged listing of sent campaigns).
        let mut sent_at: Option<Option<DateTime<Utc>>> = None;
        // The streams are read side by side (one request in flight each), their pages taken as
        // they come: the sync waits for the longest stream, not for the sum of them.
        let mut streams = Vec::new();
        for kind in STREAMS {
            let stored = watermarks.get(kind.as_str()).copied();
            if kind == ActivityKind::Sent {
                if stored.is_some() {
                    continue; // recipients are read once
                }
                sent_at = Some(self.sent_at(settings, cm_id).await?);
                let Some(Some(at)) = sent_at else {
                    continue;
                };
                streams.push(self.cm.recipients(cm_id, at));
                next_watermarks.insert(kind.as_str().to_owned(), at);
                continue;
            }
            streams.push(self.cm.activity(cm_id, kind, stored.map(|w| local_of(w, zone))));
            // Everything dated up to the settled moment has been read (CM shows records within
            // the settle lag); later records are read again next time, and re-applying them
            // changes nothing.
            let next = stored.map_or(settled, |stored| stored.max(settled));
            next_watermarks.insert(kind.as_str().to_owned(), next);
        }
        let mut pages = futures::stream::select_all(streams.into_iter().map(|stream| {
            Box::pin(futures::stream::unfold(Some(stream), |state| async move {
                let mut stream = state?;
                match stream.next_page().await {
                    Ok(Some(page)) => Some((Ok(page), Some(stream))),
                    Ok(None) => None,
                    Err(error) => Some((Err(error), None)),
                }
            }))
        }));
        while let Some(page) = pages.next().await {
            for record in &page? {
                spool.push(record.to_activity())?;
            }
        }
        drop(pages);
        // People an admin queued for another attempt (`cm-sf-admin retry`): their whole
        // activity is read again, whatever the watermarks say (CM cannot filter a campaign's
        // activity by subscriber, so the streams are read from the start and filtered).
        let retried: Vec<String> = if dry_run {
            Vec::new()
        } else {
            self.store
                .failed_records(cm_id, RETRY_BATCH)
                .await?
                .into_iter()
                .map(|r| r.key)
                .collect()
        };
        if !retried.is_empty() {
            let wanted: BTreeSet<&str> = retried.iter().map(String::as_str).collect();
            for kind in STREAMS {
                let mut stream = if kind == ActivityKind::Sent {
                    // Looked up above, unless the recipients were read in an earlier sync.
                    let at = match sent_at {
                        Some(known) => known,
                        None => self.sent_at(settings, cm_id).await?,
                    };
                    let Some(at) = at else {
                        continue;
                    };
                    self.cm.recipients(cm_id, at)
                } else {
                    self.cm.activity(cm_id, kind, None)
                };
                while let Some(page) = stream.next_page().await? {
                    for record in page.iter().filter(|r| wanted.contains(r.email.as_str())) {
                        spool.push(record.to_activity())?;
                    }
                }
            }
        }
        let summary = if settings.update_campaign_statistics {
            Some(self.cm.summary(cm_id).await?)
        } else {
            None
        };
        let activity_count = spool.len() as u64;
        let mut parts = spool.into_parts()?;
        let part_count = parts.count();

        if deadline.passed() {
            return self
                .continue_later(run_id, cm_id, sequence, dry_run, &campaign_run)
                .await;
        }

        // 2.–4. Part by part: what Salesforce holds for the people concerned, the plan, and
        // (unless a dry run) applying it. Statuses and statistics belong to the first part.
        let campaign_id = link.sf_campaign_id.as_str();
        let campaign_link = CampaignLink {
            cm_campaign_id: cm_id.to_owned(),
            sf_campaign_id: campaign_id.to_owned(),
            name: summary.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
        };
        let mut statuses: Option<Vec<ExistingStatus>> = None;
        let mut total = CampaignPlan {
            link: campaign_link.clone(),
            ..CampaignPlan::default()
        };
        let mut counts: BTreeMap<String, u64> = BTreeMap::from([("activities".to_owned(), activity_count)]);
        if part_count > 1 {
            counts.insert("parts".to_owned(), part_count as u64);
        }
        let mut failed = 0usize;
        let mut transient_failures = false;
        let mut first = true;
        while let Some(activities) = parts.next_part()? {
            if statuses.is_none() && !activities.is_empty() {
                statuses = Some(read_statuses(&self.sf, campaign_id).await?);
            }
            let statistics = match (&summary, first) {
                (Some(summary), true) => {
                    let (current, org_fields) = read_campaign_stats(&self.sf, settings, campaign_id).await?;
                    Some(StatisticsInput {
                        summary: summary.to_stats(),
                        last_written: current,
                        org_fields,
                    })
                }
                _ => None,
            };
            let plan = self
                .plan_part(
                    settings,
                    &campaign_link,
                    &activities,
                    statuses.as_deref().unwrap_or_default(),
                    statistics.as_ref(),
                )
                .await?;
            drop(activities);
            for (key, n) in [
                ("members_to_add", plan.members_to_add.len()),
                ("member_updates", plan.member_updates.len()),
                ("skipped", plan.skips.len()),
            ] {
                *counts.entry(key.to_owned()).or_default() += n as u64;
            }
            if dry_run {
                // Nothing is applied, so every part plans the same statuses: keep the first.
                total.absorb(plan, first);
                first = false;
                continue;
            }
            if deadline.passed() {
                // Parts already applied are re-applied by the continuation, changing nothing.
                return self
                    .continue_later(run_id, cm_id, sequence, dry_run, &campaign_run)
                    .await;
            }
            let applied = crate::salesforce_io::apply(&self.sf, settings, &plan).await?;
            for (key, n) in [
                ("statuses_created", applied.statuses_created),
                ("statuses_corrected", applied.statuses_corrected),
                ("members_added", applied.members_added),
                ("members_updated", applied.members_updated),
                ("people_updated", applied.people_updated),
                ("stats_written", applied.stats_written),
            ] {
                *counts.entry(key.to_owned()).or_default() += n;
            }
            failed += applied.failures.len();
            transient_failures |= applied.transient_failures;
            let mut failures = applied.failures;
            failures.extend(plan.skips.iter().map(|skip| RunFailure {
                record: skip.subject.clone(),
                reason: skip.reason.label().to_owned(),
                code: None,
            }));
            self.store.add_run_failures(&campaign_run, &failures).await?;
            if !plan.statuses.create.is_empty() || !plan.statuses.correct.is_empty() {
                statuses = None; // read again: the next part must see what this one created
            }
            // A campaign in one part returns its whole plan; a larger one keeps what an admin
            // reads (statuses, statistics, skips), not a million member rows.
            total.absorb(plan, first);
            if part_count > 1 {
                total.members_to_add.clear();
                total.member_updates.clear();
                total.person_updates.clear();
            }
            first = false;
        }
        if dry_run {
            return Ok(CampaignOutcome::Done {
                run_id: campaign_run,
                counts,
                plan: Box::new(total),
                dry_run: true,
            });
        }

        // 5. Record and commit.
        counts.insert("failed".to_owned(), failed as u64);
        // One more attempt is what a retry asks for: whoever failed again is in this run's
        // failures, to be retried again by hand if the cause is fixed.
        if !retried.is_empty() {
            self.store.remove_failed(cm_id, &retried).await?;
        }
        if !transient_failures {
            for (stream, at) in &next_watermarks {
                self.store.advance_watermark(cm_id, stream, *at).await?;
            }
        }
        let status = if failed == 0 {
            RunStatus::Succeeded
        } else {
            RunStatus::CompletedWithFailures
        };
        self.store
            .finish_run(&campaign_run, Utc::now(), status, &counts)
            .await?;
        // `failed` is a number of its own: the template's metric filter counts runs with failures.
        tracing::info!(campaign = cm_id, failed, parts = part_count, ?counts, "campaign synced");
        Ok(CampaignOutcome::Done {
            run_id: campaign_run,
            counts,
            plan: Box::new(total),
            dry_run: false,
        })
    }

    /// Reads what Salesforce holds for the people of one part and plans it.
    async fn plan_part(
        &self,
        settings: &mapping::Settings,
        campaign_link: &CampaignLink,
        activities: &[Activity],
        statuses: &[ExistingStatus],
        statistics: Option<&StatisticsInput>,
    ) -> Result<CampaignPlan, EngineError> {
        let campaign_id = campaign_link.sf_campaign_id.as_str();
        let emails: Vec<String> = activities
            .iter()
            .map(|a| a.email.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Only the members with new activity are read: reads grow with what changed, about
        // 9,500 addresses per Composite call, never with the size of the campaign.
        let members = if emails.is_empty() {
            crate::salesforce_io::Members {
                by_person: BTreeMap::new(),
                email_of_person: BTreeMap::new(),
            }
        } else {
            read_members(&self.sf, settings, campaign_id, &emails).await?
        };
        let member_emails: BTreeSet<&String> = members.email_of_person.values().collect();
        let unknown: Vec<String> = emails.iter().filter(|e| !member_emails.contains(e)).cloned().collect();
        let (mut people, mut person_states) = read_people(&self.sf, &unknown).await?;
        for (person, email) in &members.email_of_person {
            people
                .entry(email.clone())
                .or_default()
                .push(mapping::matching::PersonCandidate {
                    id: person.clone(),
                    kind: if person.starts_with("00Q") {
                        mapping::matching::PersonKind::Lead
                    } else {
                        mapping::matching::PersonKind::Contact
                    },
                    last_modified: DateTime::<Utc>::MIN_UTC,
                    is_member: true,
                });
        }
        let leaving: BTreeSet<&str> = activities
            .iter()
            .filter(|a| {
                matches!(
                    a.kind,
                    ActivityKind::Unsubscribed | ActivityKind::MarkedAsSpam | ActivityKind::Bounced
                )
            })
            .map(|a| a.email.as_str())
            .collect();
        let member_people: Vec<String> = members
            .email_of_person
            .iter()
            .filter(|(_, e)| leaving.contains(e.as_str()))
            .map(|(p, _)| p.clone())
            .collect();
        person_states.extend(read_person_states(&self.sf, &member_people).await?);
        // Only people who are in Salesforce and not opted out yet can be opted out.
        let can_opt_out: BTreeSet<&str> = people
            .iter()
            .filter(|(_, candidates)| {
                candidates
                    .iter()
                    .any(|c| !person_states.get(&c.id).is_some_and(|s| s.has_opted_out))
            })
            .map(|(email, _)| email.as_str())
            .collect();
        let other_lists = self.other_lists(settings, activities, &can_opt_out).await?;
        Ok(plan_campaign(
            &CampaignSyncInput {
                link: campaign_link,
                activities,
                people: &people,
                members: &members.by_person,
                statuses,
                statistics,
                person_states: &person_states,
                other_lists: &other_lists,
            },
            settings,
        ))
    }

    async fn continue_later(
        &self,
        run_id: &str,
        cm_id: &str,
        sequence: u32,
        dry_run: bool,
        campaign_run: &str,
    ) -> Result<CampaignOutcome, EngineError> {
        if !dry_run {
            self.publish(&[Event::sync_continuation(run_id, cm_id, sequence + 1)])
                .await?;
            self.store
                .finish_run(campaign_run, Utc::now(), RunStatus::Continued, &BTreeMap::new())
                .await?;
        }
        tracing::info!(campaign = cm_id, "deadline near: continuing in a new invocation");
        Ok(CampaignOutcome::Continued {
            run_id: run_id.to_owned(),
        })
    }

    /// The campaign's sent date, from the sent-campaign lists of the configured clients.
    async fn sent_at(&self, settings: &mapping::Settings, cm_id: &str) -> Result<Option<DateTime<Utc>>, EngineError> {
        for client in &settings.cm_clients {
            let sent = self.cm.sent_campaigns(client, &Default::default()).await?;
            if let Some(campaign) = sent.iter().find(|c| c.campaign_id == cm_id) {
                return Ok(Some(self.cm.to_utc(&campaign.sent_date)?));
            }
        }
        Ok(None)
    }

    /// For `all_lists`: each leaving address's state on the other configured lists. Only
    /// addresses in `can_opt_out` are looked up, and none when the configured clients have no
    /// list besides the one left (then there is nothing else to be subscribed to).
    async fn other_lists(
        &self,
        settings: &mapping::Settings,
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
        let configured =
            |list: &str| settings.cm_lists.is_empty() || settings.cm_lists.iter().any(|l| l.eq_ignore_ascii_case(list));
        let mut lists = BTreeSet::new();
        for client in &settings.cm_clients {
            lists.extend(
                self.cm
                    .lists(client)
                    .await?
                    .into_iter()
                    .map(|l| l.list_id)
                    .filter(|l| configured(l)),
            );
        }
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
                if membership.list_id == list || !configured(&membership.list_id) {
                    continue;
                }
                let state = match membership.subscriber_state.as_str() {
                    "Active" => SubscriberState::Active,
                    "Unconfirmed" => SubscriberState::Unconfirmed,
                    "Bounced" => SubscriberState::Bounced,
                    "Deleted" => SubscriberState::Deleted,
                    _ => SubscriberState::Unsubscribed,
                };
                states.push((membership.list_id, state));
            }
        }
        Ok(out)
    }
}
