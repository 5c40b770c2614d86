//! One linked campaign's sync: read what changed, plan, apply, commit.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, DurationRound, Utc};
use events::Event;
use events::publisher::EventSink;
use mapping::people::SubscriberState;
use mapping::plan::{CampaignLink, CampaignPlan, CampaignSyncInput, StatisticsInput, plan_campaign};
use mapping::settings::OptOutPolicy;
use mapping::{Activity, ActivityKind, CmTimestamp};
use serde::Serialize;
use state::{RunFailure, RunRecord, RunStatus, Store};

use crate::salesforce_io::{read_campaign_stats, read_members, read_people, read_person_states, read_statuses};
use crate::{Deadline, Engine, EngineError};

/// The activity streams of a campaign, in the order they are read.
const STREAMS: [ActivityKind; 6] = [
    ActivityKind::Sent,
    ActivityKind::Opened,
    ActivityKind::Clicked,
    ActivityKind::Bounced,
    ActivityKind::Unsubscribed,
    ActivityKind::MarkedAsSpam,
];

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
        let cm_now = self.cm.system_date().await?;
        let settled = (cm_now.to_utc(zone) - self.options.settle_lag)
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(cm_now.to_utc(zone));
        let watermarks = self.store.watermarks(cm_id).await?;
        let mut activities: Vec<Activity> = Vec::new();
        let mut next_watermarks: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for kind in STREAMS {
            let stored = watermarks.get(kind.as_str()).copied();
            if kind == ActivityKind::Sent {
                if stored.is_some() {
                    continue; // recipients are read once
                }
                let Some(sent_at) = self.sent_at(settings, cm_id).await? else {
                    continue;
                };
                let mut stream = self.cm.recipients(cm_id, sent_at);
                while let Some(page) = stream.next_page().await? {
                    activities.extend(page.iter().map(|r| r.to_activity()));
                }
                next_watermarks.insert(kind.as_str().to_owned(), sent_at);
                continue;
            }
            let mut stream = self.cm.activity(cm_id, kind, stored.map(|w| local_of(w, zone)));
            while let Some(page) = stream.next_page().await? {
                activities.extend(page.iter().map(|r| r.to_activity()));
            }
            // Everything dated up to the settled moment has been read (CM shows records within
            // the settle lag); later records are read again next time, and re-applying them
            // changes nothing.
            let next = stored.map_or(settled, |stored| stored.max(settled));
            next_watermarks.insert(kind.as_str().to_owned(), next);
        }
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
                    let Some(sent_at) = self.sent_at(settings, cm_id).await? else {
                        continue;
                    };
                    self.cm.recipients(cm_id, sent_at)
                } else {
                    self.cm.activity(cm_id, kind, None)
                };
                while let Some(page) = stream.next_page().await? {
                    activities.extend(
                        page.iter()
                            .map(|r| r.to_activity())
                            .filter(|a| wanted.contains(a.email.as_str())),
                    );
                }
            }
        }
        let summary = if settings.update_campaign_statistics {
            Some(self.cm.summary(cm_id).await?)
        } else {
            None
        };

        if deadline.passed() {
            return self
                .continue_later(run_id, cm_id, sequence, dry_run, &campaign_run)
                .await;
        }

        // 2. What Salesforce holds for the people concerned.
        let mut emails: Vec<String> = activities
            .iter()
            .map(|a| a.email.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        emails.sort();
        let campaign_id = link.sf_campaign_id.as_str();
        let members = if emails.is_empty() {
            crate::salesforce_io::Members {
                by_person: BTreeMap::new(),
                email_of_person: BTreeMap::new(),
            }
        } else if emails.len() > self.options.read_all_members_above {
            read_members(&self.sf, settings, campaign_id, None).await?
        } else {
            read_members(&self.sf, settings, campaign_id, Some(&emails)).await?
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
        let statuses = if activities.is_empty() {
            Vec::new()
        } else {
            read_statuses(&self.sf, campaign_id).await?
        };
        let statistics = match &summary {
            Some(summary) => {
                let (current, org_fields) = read_campaign_stats(&self.sf, settings, campaign_id).await?;
                Some(StatisticsInput {
                    summary: summary.to_stats(),
                    last_written: current,
                    org_fields,
                })
            }
            None => None,
        };
        let other_lists = self.other_lists(settings, &activities).await?;

        // 3. The plan.
        let campaign_link = CampaignLink {
            cm_campaign_id: cm_id.to_owned(),
            sf_campaign_id: campaign_id.to_owned(),
            name: summary.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
        };
        let plan = plan_campaign(
            &CampaignSyncInput {
                link: &campaign_link,
                activities: &activities,
                people: &people,
                members: &members.by_person,
                statuses: &statuses,
                statistics: statistics.as_ref(),
                person_states: &person_states,
                other_lists: &other_lists,
            },
            settings,
        );
        let mut counts = BTreeMap::from([
            ("activities".to_owned(), activities.len() as u64),
            ("members_to_add".to_owned(), plan.members_to_add.len() as u64),
            ("member_updates".to_owned(), plan.member_updates.len() as u64),
            ("skipped".to_owned(), plan.skips.len() as u64),
        ]);
        if dry_run {
            return Ok(CampaignOutcome::Done {
                run_id: campaign_run,
                counts,
                plan: Box::new(plan),
                dry_run: true,
            });
        }
        if deadline.passed() {
            return self
                .continue_later(run_id, cm_id, sequence, dry_run, &campaign_run)
                .await;
        }

        // 4. Apply, record, commit.
        let applied = crate::salesforce_io::apply(&self.sf, settings, &plan).await?;
        counts.extend([
            ("statuses_created".to_owned(), applied.statuses_created),
            ("statuses_corrected".to_owned(), applied.statuses_corrected),
            ("members_added".to_owned(), applied.members_added),
            ("members_updated".to_owned(), applied.members_updated),
            ("people_updated".to_owned(), applied.people_updated),
            ("stats_written".to_owned(), applied.stats_written),
            ("failed".to_owned(), applied.failures.len() as u64),
        ]);
        let mut failures = applied.failures.clone();
        failures.extend(plan.skips.iter().map(|skip| RunFailure {
            record: skip.subject.clone(),
            reason: skip.reason.label().to_owned(),
            code: None,
        }));
        self.store.add_run_failures(&campaign_run, &failures).await?;
        // One more attempt is what a retry asks for: whoever failed again is in this run's
        // failures, to be retried again by hand if the cause is fixed.
        if !retried.is_empty() {
            self.store.remove_failed(cm_id, &retried).await?;
        }
        if !applied.transient_failures {
            for (stream, at) in &next_watermarks {
                self.store.advance_watermark(cm_id, stream, *at).await?;
            }
        }
        let status = if applied.failures.is_empty() {
            RunStatus::Succeeded
        } else {
            RunStatus::CompletedWithFailures
        };
        self.store
            .finish_run(&campaign_run, Utc::now(), status, &counts)
            .await?;
        // `failed` is a number of its own: the template's metric filter counts runs with failures.
        tracing::info!(
            campaign = cm_id,
            failed = applied.failures.len(),
            ?counts,
            "campaign synced"
        );
        Ok(CampaignOutcome::Done {
            run_id: campaign_run,
            counts,
            plan: Box::new(plan),
            dry_run: false,
        })
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

    /// For `all_lists`: each leaving address's state on the other configured lists.
    async fn other_lists(
        &self,
        settings: &mapping::Settings,
        activities: &[Activity],
    ) -> Result<BTreeMap<String, Vec<(String, SubscriberState)>>, EngineError> {
        let mut out = BTreeMap::new();
        if settings.opt_out_policy != OptOutPolicy::AllLists {
            return Ok(out);
        }
        let leaving: BTreeMap<&str, &str> = activities
            .iter()
            .filter(|a| matches!(a.kind, ActivityKind::Unsubscribed | ActivityKind::MarkedAsSpam))
            .map(|a| (a.email.as_str(), a.list_id.as_str()))
            .collect();
        for (email, list) in leaving {
            let mut states = Vec::new();
            for client in &settings.cm_clients {
                for membership in self.cm.lists_for_email(client, email).await? {
                    let configured = settings.cm_lists.is_empty()
                        || settings
                            .cm_lists
                            .iter()
                            .any(|l| l.eq_ignore_ascii_case(&membership.list_id));
                    if membership.list_id == list || !configured {
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
            out.insert(email.to_owned(), states);
        }
        Ok(out)
    }
}
