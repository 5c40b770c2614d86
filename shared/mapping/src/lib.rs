//! The rules of the Campaign Monitor → Salesforce sync, as pure functions.
//!
//! No I/O lives here: no async runtime, no AWS SDK, no HTTP client. The functions and the sync
//! read data, call these rules to compute a [`plan::SyncPlan`], and apply it. Because everything
//! here is pure, every rule is tested directly, and a dry run is the same computation minus the
//! apply step.
//!
//! # Where each rule of PRODUCT.md lives
//!
//! | rule | item |
//! |---|---|
//! | §2 settings, defaults, validation naming the field | [`settings::Settings`], [`settings::Settings::from_json`], [`settings::Settings::validate`] |
//! | §2 `auto_create_enabled_at` moves forward, never back | [`settings::Settings::prepare_update`] |
//! | CM local dates → UTC through `cm_timezone` | [`activity::CmTimestamp::to_utc`] |
//! | §3.1 campaign statistics, changed values only | [`statistics::plan_statistics`] |
//! | how often a linked campaign is synced, by its age | [`cadence::next_sync`] |
//! | a sync with nothing new skips the CM streams and Salesforce | [`probe::activity_unchanged`], [`probe::statistics_unchanged`] |
//! | §2 `activity_overlap_minutes`: late-visible CM records read again, no SF call for the rest | [`overlap::already_applied`] |
//! | §3.2 auto-create eligibility (not retrospective) | [`autocreate::auto_create_eligibility`] |
//! | §3.2 explicit backfill window | [`autocreate::backfill_eligibility`] |
//! | §3.2 campaign template | [`autocreate::render_campaign`] |
//! | §3.3 member status refresh (`never`/`always`/`once_only`/`forward_only`) | [`decision::decide_member_in`] |
//! | §3.3 "Sent" is a starting status; `forward_only` keeps unmapped (hand-set) statuses | [`decision::is_starting_status`] |
//! | §3.3 a choice among several people is recorded | [`plan::MatchChoice`] |
//! | §3.3 Activity Date guard and equal-time tie-break | [`decision::activity_date_guard`] |
//! | §3.4 mapping and responded | [`settings::Settings::label_for`], [`settings::Settings::mapped_labels`] |
//! | §3.5 missing statuses (stock statuses by flags) | [`statuses::plan_statuses`] |
//! | §3.6 matching by email, `match_preference` | [`matching::match_person`] |
//! | §3.6 adding missing members | [`plan::plan_campaign`] |
//! | §3.7 `opt_out_policy` | [`people::decide_opt_out`] |
//! | §3.7 `record_bounces` | [`people::decide_bounce`] |
//! | §5 the plan, dry-run report | [`plan::SyncPlan`], [`plan::SyncPlan::report`] |
//! | logs never carry whole emails | [`email::redact_email`] |
//! | CM text reaches SF inert for spreadsheets (no formula) | [`text::neutralise_formula`] |
//! | a link typed into SF is used only if it names a campaign of a configured client | [`links::validate_link`] |
//! | a CM client in another time zone than `cm_timezone` is named | [`zones::client_zone_mismatch`] |

//!
//! # Example: the worked example of PRODUCT.md §3.3, first sync, mode `always`
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use mapping::{ActivityKind, MemberState, Occurrence, Settings, decide_member};
//!
//! let settings = Settings::from_json(
//!     r#"{"cm_clients": ["0123456789abcdef0123456789abcdef"], "cm_timezone": "UTC",
//!         "status_refresh": "always"}"#,
//! )?;
//! let at = |h, m| Utc.with_ymd_and_hms(2026, 3, 5, h, m, 0).unwrap();
//! let member = MemberState::new_member("Sent");
//! let batch = [
//!     Occurrence { kind: ActivityKind::Clicked, at: at(10, 5) },
//!     Occurrence { kind: ActivityKind::Opened, at: at(10, 0) },
//! ];
//! let decision = decide_member(&member, &batch, &settings);
//! assert_eq!(decision.after.status, "Clicked");
//! assert_eq!(decision.after.activity_date, Some(at(10, 5)));
//! # Ok::<(), mapping::SettingsError>(())
//! ```
//!
//! # Example: a refused settings document names the field
//!
//! ```
//! let refused = mapping::Settings::from_json(
//!     r#"{"cm_clients": ["0123456789abcdef0123456789abcdef"], "cm_timezone": "UTC",
//!         "status_mapping": [{"activity": "Opened", "status": "", "responded": true}]}"#,
//! );
//! let error = refused.unwrap_err().to_string();
//! assert!(error.contains("status_mapping[0].status"), "{error}");
//! ```

pub mod activity;
pub mod autocreate;
pub mod cadence;
pub mod decision;
pub mod email;
pub mod engagement;
pub mod links;
pub mod matching;
pub mod overlap;
pub mod people;
pub mod plan;
pub mod probe;
pub mod settings;
pub mod statistics;
pub mod statuses;
pub mod text;
pub mod zones;

pub use activity::{Activity, ActivityDetail, ActivityKind, CmTimestamp, Occurrence};
pub use chrono_tz::Tz;
pub use decision::{
    DecisionReason, MemberDecision, MemberState, StatusKept, activity_date_guard, decide_member, decide_member_in,
    is_starting_status,
};
pub use plan::{CampaignPlan, SyncPlan};
pub use settings::{Settings, SettingsError, StatusRefresh};
