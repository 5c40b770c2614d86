//! The sync (PRODUCT.md §3–§5). Each flow is a type of its own whose methods are its stages,
//! borrowing the [`Engine`] (the clients, the store, the publisher and the options, built once
//! per Lambda container):
//!
//! | flow | type | stages |
//! |---|---|---|
//! | one linked campaign's sync | [`campaign::CampaignSync`] | start → read → retried → split → (plan → apply)* → commit |
//! | the scheduled run | [`tick::Tick`] | discover → reconcile → due → fan out → housekeeping; the hot run |
//! | the webhook consumer | [`webhook::WebhookConsumer`] | sort → confirm → apply → save |
//! | the webhook intake | [`webhook::IntakeEngine`] | token → delivery → record → hand on |
//! | auto-creation | [`autocreate::AutoCreate`] | eligibility → upsert → statuses → link |
//! | CM's lists | [`lists::Lists`] | the backstop; confirmation, other lists and the writer of a list's changes |
//! | admin operations | [`admin`] | links, backfill, retry, webhooks, doctor |
//!
//! Modules only import downwards, in this order (a module uses those below it, never one
//! above):
//!
//! ```text
//! lib (the Engine's entry points)
//!  ├── admin ─────────────┐            (links, backfill, retry, webhooks, doctor)
//!  ├── tick ──────────────┤            (discover, reconcile, due, housekeeping)
//!  │     ├── campaign     │  autocreate   webhook (intake, consumer, health)
//!  │     │     └──────────┴──── lists ─────┘
//!  │     └── discovery
//!  └── core, report, salesforce_io (reads, writes), spool
//! ```
//!
//! `core` holds the [`Engine`], its errors, options and deadline; `report` keeps findings as
//! run records; `salesforce_io` reads what a plan needs and writes a plan; `spool` keeps a
//! large campaign's activity on disk. The rules themselves live in `mapping`, the state's key
//! spaces in `state`.
//!
//! Every step is idempotent: a run cut off anywhere resumes from the last committed watermark,
//! and anything it already applied is recognised by the Activity Date guard and the member
//! uniqueness rule, so nothing is lost or applied twice.

pub mod admin;
pub mod autocreate;
pub mod campaign;
mod core;
pub mod discovery;
pub mod lists;
mod report;
mod salesforce_io;
mod spool;
pub mod tick;
pub mod webhook;

use events::Event;
use events::LinkOrigin;
use events::publisher::EventSink;
use mapping::Settings;
use mapping::autocreate::DiscoveredCampaign;
use state::{LinkOutcome, LinkRecord, Store};

pub use crate::admin::doctor;
pub use crate::core::{
    DEFAULT_CM_PAGES_IN_FLIGHT, Deadline, Engine, EngineError, EngineOptions, redacted, work_margin,
};
pub use crate::report::new_run_id;
pub use crate::salesforce_io::STATUS_MISSING;

use crate::admin::{
    Backfill, BackfillResult, Doctor, Finding, LinkAdmin, Retry, RetryQueued, WebhookAdmin, WebhookChange, WebhookView,
};
use crate::autocreate::{AutoCreate, AutoCreateOutcome};
use crate::campaign::{CampaignOutcome, CampaignSync, Mode};
use crate::tick::{DiscoveryOutcome, HotRunOutcome, Tick};
use crate::webhook::{BatchOutcome, WebhookConsumer};

/// The engine's entry points: each hands the call to its flow, which does the work.
impl<S: Store, P: EventSink> Engine<S, P> {
    /// Loads and returns the settings, or [`EngineError::NoSettings`].
    pub async fn settings(&self) -> Result<Settings, EngineError> {
        core::load_settings(self.store.as_ref()).await
    }

    /// Every stored link: CM campaign id → SF Campaign id.
    pub async fn link_map(&self) -> Result<std::collections::BTreeMap<String, String>, EngineError> {
        core::link_map(self.store.as_ref()).await
    }

    /// Publishes events (FailedEntryCount handled by the publisher).
    pub async fn publish(&self, events: &[Event]) -> Result<(), EngineError> {
        core::publish(&self.publisher, events).await
    }

    /// [`CampaignSync::sync`]: one linked campaign, under its lease.
    pub async fn sync_campaign(
        &self,
        settings: &Settings,
        cm_campaign_id: &str,
        run_id: &str,
        mode: Mode,
        deadline: Deadline,
    ) -> Result<CampaignOutcome, EngineError> {
        CampaignSync::new(self)
            .sync(settings, cm_campaign_id, run_id, mode, deadline)
            .await
    }

    /// [`Tick::run`]: the scheduled run.
    pub async fn run_scheduled(&self, settings: &Settings, run_id: &str) -> Result<DiscoveryOutcome, EngineError> {
        Tick::new(self).run(settings, run_id).await
    }

    /// [`Tick::plan`]: a dry run of the scheduled run.
    pub async fn plan_scheduled(&self, settings: &Settings, run_id: &str) -> Result<DiscoveryOutcome, EngineError> {
        Tick::new(self).plan(settings, run_id).await
    }

    /// [`Tick::run_hot`]: the hot schedule's run.
    pub async fn run_hot(&self, settings: &Settings, run_id: &str) -> Result<HotRunOutcome, EngineError> {
        Tick::new(self).run_hot(settings, run_id).await
    }

    /// [`discovery::discover`]: every campaign of the configured clients.
    pub async fn discover(&self, settings: &Settings) -> Result<Vec<DiscoveredCampaign>, EngineError> {
        discovery::discover(&self.cm, settings).await
    }

    /// [`WebhookConsumer::apply`], failing retryable when events are left to retry.
    pub async fn apply_webhook_batch(&self, settings: &Settings, batch: &str) -> Result<BatchOutcome, EngineError> {
        WebhookConsumer::new(self).apply(settings, batch).await?.into_result()
    }

    /// [`AutoCreate::create`]: the SF Campaign of a discovered CM campaign, linked.
    pub async fn auto_create(
        &self,
        settings: &Settings,
        campaign: &DiscoveredCampaign,
        origin: LinkOrigin,
    ) -> Result<AutoCreateOutcome, EngineError> {
        AutoCreate::new(self).create(settings, campaign, origin).await
    }

    /// [`LinkAdmin::link`]: a link made by hand.
    pub async fn link_manually(
        &self,
        cm_campaign_id: &str,
        sf_campaign_id: &str,
        actor: &str,
    ) -> Result<LinkOutcome, EngineError> {
        LinkAdmin::new(&*self.store, &self.sf, &self.publisher)
            .link(cm_campaign_id, sf_campaign_id, actor)
            .await
    }

    /// [`LinkAdmin::unlink`]: a link removed.
    pub async fn unlink(&self, cm_campaign_id: &str, actor: &str) -> Result<Option<LinkRecord>, EngineError> {
        LinkAdmin::new(&*self.store, &self.sf, &self.publisher)
            .unlink(cm_campaign_id, actor)
            .await
    }

    /// [`Backfill::run`]: a backfill of whole days, `progress` told of each campaign.
    pub async fn backfill(
        &self,
        settings: &Settings,
        request: admin::backfill::BackfillRequest,
        actor: &str,
        progress: impl FnMut(usize, usize, &BackfillResult),
    ) -> Result<Vec<BackfillResult>, EngineError> {
        Backfill::new(self).run(settings, request, actor, progress).await
    }

    /// [`discovery::CatalogRefresh::refresh`]: the catalog of CM campaigns read again and kept.
    pub async fn refresh_catalog(&self, settings: &Settings) -> Result<state::CatalogRecord, EngineError> {
        discovery::CatalogRefresh::new(self).refresh(settings).await
    }

    /// [`Backfill::create_one`]: one backfill candidate created and linked.
    pub async fn backfill_one(
        &self,
        settings: &Settings,
        campaign: &DiscoveredCampaign,
    ) -> Result<AutoCreateOutcome, EngineError> {
        Backfill::new(self).create_one(settings, campaign).await
    }

    /// [`Retry::queue`]: a run's failed people queued for another attempt.
    pub async fn retry_run(&self, run_id: &str, actor: &str) -> Result<RetryQueued, EngineError> {
        Retry::new(&*self.store, &self.publisher).queue(run_id, actor).await
    }

    /// [`WebhookAdmin::list`]: the webhooks of the configured lists.
    pub async fn webhooks(&self, intake_url: Option<&str>) -> Result<Vec<WebhookView>, EngineError> {
        WebhookAdmin::new(self).list(intake_url).await
    }

    /// [`WebhookAdmin::register`]: the intake registered on every configured list.
    pub async fn register_webhooks(&self, intake_url: &str) -> Result<Vec<WebhookChange>, EngineError> {
        WebhookAdmin::new(self).register(intake_url).await
    }

    /// [`WebhookAdmin::remove`]: this deployment's webhooks removed.
    pub async fn remove_webhooks(&self, intake_url: &str) -> Result<Vec<WebhookChange>, EngineError> {
        WebhookAdmin::new(self).remove(intake_url).await
    }

    /// [`Doctor::check`]: every check of the deployment's configuration.
    pub async fn doctor(&self, intake_url: Option<&str>) -> Vec<Finding> {
        Doctor::new(self).check(intake_url).await
    }
}

/// Kept for callers of the earlier layout: a backfilled campaign's result.
pub type BackfillOutcome = BackfillResult;
