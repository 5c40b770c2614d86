//! Campaign Monitor's lists as the source of truth for opt-outs and bounces (PRODUCT.md §3.7):
//! the list backstop, which reads each configured list's unsubscribed and bounced subscribers
//! since a watermark (so opt-outs reach Salesforce even if CM stops posting webhooks), and the
//! list state a webhook's unsubscribe or bounce must be confirmed by (so a forged post changes
//! nothing). Both read a list by state, a page of 1,000 a call, never one call per person, and
//! apply through the same rules and writer as everything else.

use std::collections::{BTreeMap, BTreeSet};

use campaign_monitor::types::{ListState, ListSubscriber};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use mapping::activity::{Activity, ActivityDetail, ActivityKind};
use mapping::people::{LIST_BOUNCE_TYPE, SubscriberState};
use mapping::plan::{ListChangesInput, ListChangesPlan, plan_list_changes};
use mapping::settings::OptOutPolicy;
use mapping::{CmTimestamp, Settings};
use salesforce::RecordOutcome;
use serde::Serialize;
use state::{RunStore, Scope, WatermarkStore};

use crate::core::{Engine, EngineError};
use crate::report::record_report;
use crate::salesforce_io::{reads, writes};

/// CM look-ups (`listsforemail`) in flight at once.
const CM_LOOKUP_CONCURRENCY: usize = 8;

/// An address's state on each other configured list it is on.
pub type OtherLists = BTreeMap<String, Vec<(String, SubscriberState)>>;

/// The `alarm` a list backstop failure is logged with (a metric filter and alarm in the
/// template count it).
pub const ALARM_BACKSTOP_FAILED: &str = "ListBackstopFailed";

/// The reason a bounce seen on a list is recorded with.
pub const LIST_BOUNCE_REASON: &str = "Bounced (Campaign Monitor list)";

/// The list states whose subscribers reach Salesforce (a deleted subscriber was removed by an
/// admin of the list, which says nothing about their email preference).
const STATES: [(ListState, ActivityKind); 2] = [
    (ListState::Unsubscribed, ActivityKind::Unsubscribed),
    (ListState::Bounced, ActivityKind::Bounced),
];

/// What the backstop did for one list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ListBackstop {
    /// The list.
    pub list_id: String,
    /// Unsubscribed and bounced subscribers read.
    pub read: usize,
    /// Leads and Contacts written.
    pub people_updated: usize,
    /// Writes Salesforce refused (kept in the list's run record; a transient one holds the
    /// watermark so it is read again).
    pub failed: usize,
    /// Why the list could not be read or applied at this run (it is read again at the next;
    /// the other lists are not held back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A list subscriber as an activity for the rules.
fn activity_of(subscriber: &ListSubscriber, list_id: &str, kind: ActivityKind, zone: mapping::Tz) -> Option<Activity> {
    let at = CmTimestamp::parse(&subscriber.date).ok()?.to_utc(zone);
    Some(Activity {
        kind,
        email: subscriber.email.clone(),
        at,
        list_id: list_id.to_owned(),
        detail: if kind == ActivityKind::Bounced {
            ActivityDetail::Bounce {
                bounce_type: LIST_BOUNCE_TYPE.into(),
                reason: LIST_BOUNCE_REASON.into(),
            }
        } else {
            ActivityDetail::None
        },
    })
}

/// CM's lists, for everything that reads or writes by list: the backstop, a webhook's
/// confirmation, the other lists an address is on, and the writer of a list's own changes.
#[derive(Debug)]
pub struct Lists<'e, S, P> {
    engine: &'e Engine<S, P>,
}

impl<'e, S, P> Lists<'e, S, P> {
    /// The lists of `engine`'s deployment.
    pub fn new(engine: &'e Engine<S, P>) -> Self {
        Lists { engine }
    }
}

/// The backstop: it keeps watermarks and reports refused writes.
impl<S: WatermarkStore + RunStore, P> Lists<'_, S, P> {
    /// The list backstop of the scheduled run: every configured list's unsubscribes and bounces
    /// since its watermarks (less the activity overlap: CM may show a list change late),
    /// applied. A list whose writes failed transiently keeps its watermark; a list that fails
    /// is reported (and alarmed) on its own, and the others are still applied.
    pub async fn backstop(&self, settings: &Settings) -> Result<Vec<ListBackstop>, EngineError> {
        let mut done = Vec::new();
        if settings.cm_lists.is_empty() {
            return Ok(done);
        }
        let cm_now = self.engine.cm.system_date().await?;
        let settled = mapping::overlap::settled(cm_now.to_utc(settings.zone()), self.engine.options.settle_lag);
        for list_id in &settings.cm_lists {
            done.push(match self.backstop_list(settings, list_id, settled).await {
                Ok(list) => list,
                Err(error) => {
                    tracing::error!(alarm = ALARM_BACKSTOP_FAILED, list = %list_id, error = %crate::core::redacted(&error), retryable = error.is_retryable(), "list backstop failed for this list; read again next run");
                    ListBackstop {
                        list_id: list_id.clone(),
                        error: Some(error.to_string()),
                        ..ListBackstop::default()
                    }
                }
            });
        }
        Ok(done)
    }

    async fn backstop_list(
        &self,
        settings: &Settings,
        list_id: &str,
        settled: DateTime<Utc>,
    ) -> Result<ListBackstop, EngineError> {
        let scope = Scope::List(list_id).key();
        let watermarks = self.engine.store.watermarks(&scope).await?;
        let mut activities = Vec::new();
        for (state, kind) in STATES {
            let since = watermarks.get(state.resource()).map(|w| {
                CmTimestamp::since(
                    mapping::overlap::read_since(*w, settings.activity_overlap()),
                    settings.zone(),
                )
            });
            let subscribers = self.engine.cm.list_subscribers(list_id, state, since).await?;
            activities.extend(
                subscribers
                    .iter()
                    .filter_map(|s| activity_of(s, list_id, kind, settings.zone())),
            );
        }
        let mut outcome = ListBackstop {
            list_id: list_id.to_owned(),
            read: activities.len(),
            ..ListBackstop::default()
        };
        let (plan, outcomes) = self.apply_list_changes(settings, &activities).await?;
        let mut transient = false;
        let mut failures = Vec::new();
        for (update, result) in plan.person_updates.iter().zip(&outcomes) {
            match result {
                RecordOutcome::Failed(error) => {
                    transient |= salesforce::is_transient_code(&error.code);
                    failures.push(state::RunFailure::new(&update.email, &error.message, Some(&error.code)));
                }
                _ => outcome.people_updated += 1,
            }
        }
        outcome.failed = failures.len();
        if !failures.is_empty() {
            self.record_list_failures(settings, Scope::List(list_id), &outcome, &failures)
                .await?;
        }
        if !transient {
            for (state, _) in STATES {
                self.engine
                    .store
                    .advance_watermark(&scope, state.resource(), settled)
                    .await?;
            }
        }
        if outcome.read > 0 {
            tracing::info!(
                list = list_id,
                read = outcome.read,
                people = outcome.people_updated,
                failed = outcome.failed,
                "list backstop applied"
            );
        }
        Ok(outcome)
    }

    /// A list's refused writes, kept as a run of that list (`cm-sf-admin runs` lists it).
    async fn record_list_failures(
        &self,
        settings: &Settings,
        scope: Scope<'_>,
        outcome: &ListBackstop,
        failures: &[state::RunFailure],
    ) -> Result<(), EngineError> {
        let counts = BTreeMap::from([
            ("read".to_owned(), outcome.read as u64),
            ("people_updated".to_owned(), outcome.people_updated as u64),
            ("failed".to_owned(), outcome.failed as u64),
        ]);
        Ok(record_report(self.engine.store.as_ref(), settings, scope, counts, failures).await?)
    }
}

/// What the campaign sync and the webhook consumer use: no state of their own.
impl<S, P> Lists<'_, S, P> {
    /// A list's own unsubscribes and bounces (the backstop's, a webhook batch's): one look-up of
    /// the people, the rules, one write per 200 changes. The plan and one outcome per update.
    pub async fn apply_list_changes(
        &self,
        settings: &Settings,
        activities: &[Activity],
    ) -> Result<(ListChangesPlan, Vec<RecordOutcome>), EngineError> {
        if activities.is_empty() {
            return Ok((ListChangesPlan::default(), Vec::new()));
        }
        let emails = mapping::activity::unique_emails(activities);
        let (people, person_states) = reads::read_people(&self.engine.sf, &emails).await?;
        // Only addresses someone could still be opted out for are looked up on other lists.
        let can_opt_out: BTreeSet<&str> = people
            .iter()
            .filter(|(_, candidates)| {
                candidates
                    .iter()
                    .any(|p| !person_states.get(&p.id).is_some_and(|s| s.has_opted_out))
            })
            .map(|(email, _)| email.as_str())
            .collect();
        let other_lists = self.other_lists(settings, activities, &can_opt_out).await?;
        let plan = plan_list_changes(
            &ListChangesInput {
                activities,
                people: &people,
                person_states: &person_states,
                other_lists: &other_lists,
            },
            settings,
        );
        let outcomes = writes::write_people(&self.engine.sf, &plan.person_updates).await?;
        Ok((plan, outcomes))
    }

    /// The addresses CM's list shows in each state since `since` (CM local): what a webhook's
    /// unsubscribes and bounces must be confirmed by. One paged read per state.
    pub async fn list_states_since(
        &self,
        list_id: &str,
        since: CmTimestamp,
    ) -> Result<BTreeMap<ActivityKind, BTreeSet<String>>, EngineError> {
        let mut states = BTreeMap::new();
        for (state, kind) in STATES {
            let subscribers = self.engine.cm.list_subscribers(list_id, state, Some(since)).await?;
            states.insert(kind, subscribers.into_iter().map(|s| s.email).collect());
        }
        Ok(states)
    }

    /// For `all_lists`: each leaving address's state on the other configured lists. Only
    /// addresses in `can_opt_out` are looked up, and none when the configured clients have no
    /// list besides the one left (then there is nothing else to be subscribed to).
    pub async fn other_lists(
        &self,
        settings: &Settings,
        activities: &[Activity],
        can_opt_out: &BTreeSet<&str>,
    ) -> Result<OtherLists, EngineError> {
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
                let memberships = self.engine.cm.lists_for_email(client, email).await?;
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
                let state = membership.state();
                states.push((membership.list_id, state));
            }
        }
        Ok(out)
    }

    /// The configured lists of the configured clients.
    async fn configured_lists(&self, settings: &Settings) -> Result<BTreeSet<String>, EngineError> {
        let mut lists = BTreeSet::new();
        for client in &settings.cm_clients {
            lists.extend(
                self.engine
                    .cm
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
