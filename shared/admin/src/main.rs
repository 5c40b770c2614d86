//! `cm-sf-admin`: administer a deployment (or the local demo stack) from the command line.
//!
//! Uses the same configuration as the functions (`STATE_TABLE`, `EVENT_BUS`, `CM_SECRET_ID`,
//! `SF_SECRET_ID`, `WEBHOOK_SECRET_ID`, ...) and the usual AWS credentials. Output is readable
//! by default and JSON with `--json`; errors go to stderr with exit status 1 (2 for usage).

// The doc comments of the command-line types are clap's help text, read in a terminal: example
// URLs and `[n]` paths are meant literally there, not as rustdoc links.
#![allow(rustdoc::bare_urls, rustdoc::broken_intra_doc_links)]

mod settings_doc;

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use clap::{Parser, Subcommand};
use engine::doctor::Severity;
use lambda_support::Parts;
use mapping::Settings;
use serde_json::{Value, json};
use state::dynamo::DynamoStore;
use state::{LinkOutcome, LinkStore, RunStore, SettingsStore};

const AFTER_HELP: &str = "Configuration comes from the environment, as for the functions: STATE_TABLE and \
EVENT_BUS (stack outputs), CM_SECRET_ID, SF_SECRET_ID and WEBHOOK_SECRET_ID (Secrets Manager names), \
optionally CM_BASE_URL and SF_API_VERSION; AWS credentials as usual (AWS_PROFILE, AWS_REGION, ...).";

/// Administer the Campaign Monitor → Salesforce sync: settings, links, syncs, backfill, runs,
/// checks and webhooks.
#[derive(Debug, Parser)]
#[command(version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Print JSON instead of readable text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the state table (local stacks only; on AWS the template creates it).
    ///
    /// Example: cm-sf-admin init-table
    InitTable,
    /// Read, change, or compare the settings document.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Link a CM campaign to an SF Campaign by hand: writes the Campaign's link field and the
    /// state table, then syncs the campaign.
    ///
    /// Example: cm-sf-admin link 0123456789abcdef0123456789abcdef 701000000000001AAA
    Link {
        /// CM CampaignID (32 hex characters).
        cm_campaign: String,
        /// SF Campaign Id (starts with 701).
        sf_campaign: String,
    },
    /// Remove a link: clears the Campaign's link field and forgets the link and the campaign's
    /// sync progress (a new link reads everything again). Nothing is removed from Salesforce.
    ///
    /// Example: cm-sf-admin unlink 0123456789abcdef0123456789abcdef
    Unlink {
        /// CM CampaignID.
        cm_campaign: String,
    },
    /// List the links between CM campaigns and SF Campaigns.
    ///
    /// Example: cm-sf-admin links --json
    Links,
    /// Start a sync now (through the same event the schedule uses), or print the plan of one
    /// without writing anything.
    ///
    /// Examples: cm-sf-admin sync --dry-run;
    /// cm-sf-admin sync --campaign 0123456789abcdef0123456789abcdef
    Sync {
        /// Only this CM campaign (linked).
        #[arg(long, value_name = "CM_CAMPAIGN_ID")]
        campaign: Option<String>,
        /// Compute and print the plan; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Create and link SF Campaigns for CM campaigns created or sent in a window of dates
    /// (inclusive, in the settings' CM time zone): the retrospective creation auto-create never
    /// does. Each new link is synced at once.
    ///
    /// Example: cm-sf-admin backfill --from 2026-01-01 --to 2026-03-31 --dry-run
    Backfill {
        /// First day (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        from: NaiveDate,
        /// Last day (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        to: NaiveDate,
        /// List what would be created; create nothing.
        #[arg(long)]
        dry_run: bool,
        /// Refuse (creating nothing) when more campaigns than this are in the window.
        #[arg(long, default_value_t = 200)]
        max: usize,
    },
    /// Recent sync runs with their counts, newest first.
    ///
    /// Example: cm-sf-admin runs --last 5
    Runs {
        /// How many.
        #[arg(long, default_value_t = 20)]
        last: usize,
    },
    /// One run: counts, and every failed or skipped record with its reason.
    ///
    /// Example: cm-sf-admin run 20261127T110055Z-1a2b3c4d:0123456789abcdef0123456789abcdef
    Run {
        /// Run id (as `runs` prints it).
        run_id: String,
    },
    /// Queue the people a run failed on for one more attempt, and sync their campaign now.
    ///
    /// Example: cm-sf-admin retry 20261127T110055Z-1a2b3c4d:0123456789abcdef0123456789abcdef
    Retry {
        /// Run id (a campaign sync, as `runs` prints it).
        run_id: String,
    },
    /// Check, before the first sync, that everything the settings need is in place: Salesforce
    /// objects, fields, types and access; CM credentials, clients and lists; webhooks. Each
    /// finding says how to fix it. Exit status 1 when a problem is found.
    ///
    /// Example: cm-sf-admin doctor --url https://abc.lambda-url.eu-west-1.on.aws/hooks/
    Doctor {
        /// The intake URL (stack output WebhookUrl; or WEBHOOK_URL). With it, the webhook
        /// check looks for this deployment's URL exactly.
        #[arg(long, env = "WEBHOOK_URL")]
        url: Option<String>,
    },
    /// Register, list or remove this deployment's webhook on the configured CM lists.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(Debug, Subcommand)]
enum SettingsCommand {
    /// Print the stored settings.
    ///
    /// Example: cm-sf-admin settings show
    Show,
    /// Validate a settings file and store it (optimistic locking: refused if someone saved in
    /// between).
    ///
    /// Example: cm-sf-admin settings apply settings.json
    Apply {
        /// The JSON document.
        file: PathBuf,
    },
    /// Change one value of the stored settings (validated like a whole document). VALUE is JSON
    /// when it parses (true, 3, ["a"]), otherwise text.
    ///
    /// Examples: cm-sf-admin settings set opt_out_policy any_list;
    /// cm-sf-admin settings set status_mapping[2].status "Opened email"
    Set {
        /// Path: a key, nested with dots, list entries with [n].
        key: String,
        /// New value.
        value: String,
    },
    /// Show what applying a settings file would change (validated; nothing is stored).
    ///
    /// Example: cm-sf-admin settings diff settings.json
    Diff {
        /// The JSON document.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// Register the intake URL (with the token from WEBHOOK_SECRET_ID) for Deactivate events on
    /// every list in `cm_lists`; lists that have it already are left alone.
    ///
    /// Example: cm-sf-admin webhooks register --url https://abc.lambda-url.eu-west-1.on.aws/hooks/
    Register {
        /// The intake URL (stack output WebhookUrl).
        #[arg(long, env = "WEBHOOK_URL")]
        url: String,
    },
    /// List the webhooks on the configured lists (tokens hidden); `--url` marks ours.
    ///
    /// Example: cm-sf-admin webhooks list
    List {
        /// The intake URL (stack output WebhookUrl).
        #[arg(long, env = "WEBHOOK_URL")]
        url: Option<String>,
    },
    /// Remove this deployment's webhooks from the configured lists (others are left alone).
    ///
    /// Example: cm-sf-admin webhooks remove --url https://abc.lambda-url.eu-west-1.on.aws/hooks/
    Remove {
        /// The intake URL (stack output WebhookUrl).
        #[arg(long, env = "WEBHOOK_URL")]
        url: String,
    },
}

/// A command's failure: what to tell the admin.
#[derive(Debug)]
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.to_string())
    }
}

/// Prints readable text, or the JSON value with `--json`.
struct Output {
    json: bool,
}

impl Output {
    fn emit(&self, text: impl FnOnce() -> String, value: Value) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        } else {
            let text = text();
            if text.ends_with('\n') {
                print!("{text}");
            } else {
                println!("{text}");
            }
        }
    }

    /// Progress of a long operation: stderr, so stdout stays the result.
    fn progress(&self, line: &str) {
        eprintln!("{line}");
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = Output { json: cli.json };
    match run(cli.command, &output).await {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("cm-sf-admin: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn aws() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

async fn store() -> Result<DynamoStore, Failure> {
    let table =
        std::env::var("STATE_TABLE").map_err(|_| Failure("environment variable STATE_TABLE is required".into()))?;
    Ok(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws().await), table))
}

type AdminEngine = engine::Engine<DynamoStore, events::publisher::EventBridgeSink>;

async fn engine() -> Result<AdminEngine, Failure> {
    let parts = Parts::from_env().await?;
    Ok(parts.engine().await?)
}

/// The full intake URL: the stack's `WebhookUrl` plus the token from `WEBHOOK_SECRET_ID`.
async fn intake_url(base: &str) -> Result<String, Failure> {
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(Failure(format!("--url `{base}` is not an http(s) URL")));
    }
    let secret_id = std::env::var("WEBHOOK_SECRET_ID").map_err(|_| {
        Failure("environment variable WEBHOOK_SECRET_ID is required (the webhook token's secret)".into())
    })?;
    let token = lambda_support::webhook_token(&aws_sdk_secretsmanager::Client::new(&aws().await), &secret_id).await?;
    Ok(format!("{}/{token}", base.trim_end_matches('/')))
}

/// `[from 00:00, to 24:00)` in the CM time zone, in UTC.
fn window(from: NaiveDate, to: NaiveDate, zone: Tz) -> Result<(DateTime<Utc>, DateTime<Utc>), Failure> {
    if from > to {
        return Err(Failure(format!("--from {from} is after --to {to}")));
    }
    let start = |day: NaiveDate| {
        zone.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| Failure(format!("{day} has no midnight in {zone}")))
    };
    let end = to
        .succ_opt()
        .ok_or_else(|| Failure(format!("--to {to} is out of range")))?;
    Ok((start(from)?, start(end)? - chrono::Duration::milliseconds(1)))
}

async fn run(command: Command, out: &Output) -> Result<ExitCode, Failure> {
    match command {
        Command::InitTable => {
            let store = store().await?;
            DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&aws().await), store.table()).await?;
            out.emit(
                || format!("created table {}", store.table()),
                json!({"table": store.table()}),
            );
        }
        Command::Settings(command) => settings(command, out).await?,
        Command::Link {
            cm_campaign,
            sf_campaign,
        } => {
            let outcome = engine().await?.link_manually(&cm_campaign, &sf_campaign).await?;
            let created = outcome == LinkOutcome::Created;
            out.emit(
                || {
                    if created {
                        format!(
                            "linked CM campaign {cm_campaign} to SF Campaign {sf_campaign}; a sync of it was requested"
                        )
                    } else {
                        format!(
                            "CM campaign {cm_campaign} was already linked to SF Campaign {sf_campaign}; nothing changed"
                        )
                    }
                },
                json!({"cm_campaign_id": cm_campaign, "sf_campaign_id": sf_campaign, "created": created}),
            );
        }
        Command::Unlink { cm_campaign } => {
            let removed = engine().await?.unlink(&cm_campaign).await?;
            out.emit(
                || match &removed {
                    Some(link) => format!(
                        "unlinked CM campaign {cm_campaign} from SF Campaign {} (its link field cleared; the Campaign and its members stay)",
                        link.sf_campaign_id
                    ),
                    None => format!("CM campaign {cm_campaign} was not linked; nothing changed"),
                },
                json!({"cm_campaign_id": cm_campaign, "removed": removed}),
            );
        }
        Command::Links => {
            let mut links = store().await?.links().await?;
            links.sort_by_key(|link| link.linked_at);
            out.emit(
                || {
                    if links.is_empty() {
                        return "no links yet".to_owned();
                    }
                    let mut text = format!(
                        "{:<32}  {:<18}  {:<19}  {}\n",
                        "CM campaign", "SF Campaign", "origin", "linked at"
                    );
                    for link in &links {
                        text += &format!(
                            "{:<32}  {:<18}  {:<19}  {}\n",
                            link.cm_campaign_id,
                            link.sf_campaign_id,
                            serde_json::to_value(link.origin)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            link.linked_at.format("%Y-%m-%d %H:%M:%S UTC")
                        );
                    }
                    text
                },
                json!(links),
            );
        }
        Command::Sync { campaign, dry_run } => sync(campaign, dry_run, out).await?,
        Command::Backfill { from, to, dry_run, max } => backfill(from, to, dry_run, max, out).await?,
        Command::Runs { last } => {
            let runs = store().await?.recent_runs(last).await?;
            out.emit(
                || {
                    if runs.is_empty() {
                        return "no runs yet".to_owned();
                    }
                    let mut text = String::new();
                    for run in &runs {
                        let counts: Vec<String> = run
                            .counts
                            .iter()
                            .filter(|(_, n)| **n > 0)
                            .map(|(k, n)| format!("{k}={n}"))
                            .collect();
                        text += &format!(
                            "{}  {}  {:?}  failures={}  {}\n",
                            run.run_id,
                            run.started_at.format("%Y-%m-%d %H:%M:%S"),
                            run.status,
                            run.failure_count,
                            counts.join(" ")
                        );
                    }
                    text
                },
                json!(runs),
            );
        }
        Command::Run { run_id } => {
            let Some((run, failures)) = store().await?.run(&run_id).await? else {
                return Err(Failure(format!("no run `{run_id}` (see `cm-sf-admin runs`)")));
            };
            out.emit(
                || {
                    let mut text = format!(
                        "run {}\nscope    {}\nstarted  {}\nended    {}\nstatus   {:?}\n",
                        run.run_id,
                        run.scope,
                        run.started_at,
                        run.ended_at.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                        run.status
                    );
                    for (key, n) in &run.counts {
                        text += &format!("  {key}: {n}\n");
                    }
                    if failures.is_empty() {
                        text += "no failed or skipped records\n";
                    } else {
                        text += &format!("{} failed or skipped records:\n", failures.len());
                        for failure in &failures {
                            text += &format!(
                                "  {}  {}{}\n",
                                failure.record,
                                failure.reason,
                                failure.code.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default()
                            );
                        }
                    }
                    text
                },
                json!({"run": run, "failures": failures}),
            );
        }
        Command::Retry { run_id } => {
            let queued = engine().await?.retry_run(&run_id).await?;
            out.emit(
                || {
                    format!(
                        "queued {} people of run {run_id} for another attempt; sync of CM campaign {} requested (run {}){}",
                        queued.queued,
                        queued.cm_campaign_id,
                        queued.run_id,
                        if queued.not_queued > 0 {
                            format!("; {} other failures (fields, statistics) are written again by every sync", queued.not_queued)
                        } else {
                            String::new()
                        }
                    )
                },
                json!(queued),
            );
        }
        Command::Doctor { url } => {
            let engine = engine().await?;
            let full_url = match url.as_deref() {
                Some(base) => Some(intake_url(base).await?),
                None => None,
            };
            let findings = engine.doctor(full_url.as_deref()).await;
            let problems = findings.iter().filter(|f| f.severity == Severity::Problem).count();
            out.emit(
                || {
                    let mut text = String::new();
                    for finding in &findings {
                        let mark = match finding.severity {
                            Severity::Ok => "ok     ",
                            Severity::Warning => "WARNING",
                            Severity::Problem => "PROBLEM",
                        };
                        text += &format!("{mark}  {}: {}\n", finding.check, finding.detail);
                        if let Some(fix) = &finding.fix {
                            text += &format!("         fix: {fix}\n");
                        }
                    }
                    text += &format!("{problems} problem(s)\n");
                    text
                },
                json!({"findings": findings, "problems": problems}),
            );
            if problems > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Webhooks(command) => webhooks(command, out).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn settings(command: SettingsCommand, out: &Output) -> Result<(), Failure> {
    let store = store().await?;
    match command {
        SettingsCommand::Show => match store.load_settings().await? {
            Some(stored) => out.emit(
                || {
                    format!(
                        "# version {}, saved {}\n{}",
                        stored.version,
                        stored.updated_at,
                        stored.settings.to_json()
                    )
                },
                json!({"version": stored.version, "updated_at": stored.updated_at, "settings": stored.settings}),
            ),
            None => {
                return Err(Failure(
                    "no settings stored yet: `cm-sf-admin settings apply settings.json`".into(),
                ));
            }
        },
        SettingsCommand::Apply { file } => {
            let submitted = read_settings_file(&file)?;
            let stored = store.load_settings().await?;
            let version = save(&store, submitted, stored).await?;
            out.emit(
                || format!("settings stored (version {version})"),
                json!({"version": version}),
            );
        }
        SettingsCommand::Set { key, value } => {
            let Some(stored) = store.load_settings().await? else {
                return Err(Failure(
                    "no settings stored yet: apply a whole document first (`cm-sf-admin settings apply FILE`)".into(),
                ));
            };
            let mut document = serde_json::to_value(&stored.settings)?;
            let before = document.clone();
            settings_doc::set_path(&mut document, &key, settings_doc::parse_value(&value))?;
            let submitted = Settings::from_json(&document.to_string())?;
            let changes = settings_doc::diff(&before, &serde_json::to_value(&submitted)?);
            if changes.is_empty() {
                out.emit(
                    || format!("{key} already has that value; nothing stored"),
                    json!({"version": stored.version, "changes": []}),
                );
                return Ok(());
            }
            let version = save(&store, submitted, Some(stored)).await?;
            out.emit(
                || {
                    let lines: Vec<String> = changes.iter().map(settings_doc::describe).collect();
                    format!("{}\nsettings stored (version {version})", lines.join("\n"))
                },
                json!({"version": version, "changes": changes}),
            );
        }
        SettingsCommand::Diff { file } => {
            let submitted = read_settings_file(&file)?;
            let stored = store.load_settings().await?;
            let before = match &stored {
                Some(stored) => serde_json::to_value(&stored.settings)?,
                None => json!({}),
            };
            let prepared = submitted.prepare_update(stored.as_ref().map(|s| &s.settings), Utc::now())?;
            let changes = settings_doc::diff(&before, &serde_json::to_value(&prepared)?);
            out.emit(
                || {
                    if changes.is_empty() {
                        "no changes".to_owned()
                    } else {
                        let lines: Vec<String> = changes.iter().map(settings_doc::describe).collect();
                        format!(
                            "{}\n{} change(s); `settings apply` stores them",
                            lines.join("\n"),
                            changes.len()
                        )
                    }
                },
                json!({"changes": changes, "stored_version": stored.map(|s| s.version)}),
            );
        }
    }
    Ok(())
}

fn read_settings_file(file: &PathBuf) -> Result<Settings, Failure> {
    let text = std::fs::read_to_string(file).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
    Ok(Settings::from_json(&text)?)
}

/// Validates and stores, expecting the version that was read (optimistic locking).
async fn save(
    store: &DynamoStore,
    submitted: Settings,
    stored: Option<state::VersionedSettings>,
) -> Result<u64, Failure> {
    let prepared = submitted.prepare_update(stored.as_ref().map(|s| &s.settings), Utc::now())?;
    Ok(store
        .save_settings(&prepared, stored.map(|s| s.version), Utc::now())
        .await?)
}

async fn sync(campaign: Option<String>, dry_run: bool, out: &Output) -> Result<(), Failure> {
    let engine = engine().await?;
    let run_id = engine::new_run_id();
    if !dry_run {
        if let Some(cm) = &campaign
            && engine.store.link(cm).await?.is_none()
        {
            return Err(Failure(format!(
                "CM campaign {cm} is not linked (see `cm-sf-admin links`)"
            )));
        }
        engine
            .publish(&[events::Event::sync_requested(
                &run_id,
                campaign.as_deref(),
                false,
                "admin",
            )])
            .await?;
        out.emit(
            || format!("sync requested (run {run_id}); `cm-sf-admin runs` shows it when done"),
            json!({"run_id": run_id, "campaign": campaign}),
        );
        return Ok(());
    }
    out.progress("planning (nothing is written)...");
    let plan = match &campaign {
        Some(cm) => match engine
            .sync_campaign(cm, &run_id, true, 0, engine::Deadline::none())
            .await?
        {
            engine::campaign::CampaignOutcome::Done { plan, .. } => mapping::SyncPlan {
                campaigns: vec![*plan],
                ..Default::default()
            },
            other => return Err(Failure(format!("no plan: {other:?}"))),
        },
        None => engine.run_scheduled(&run_id, true).await?.plan.unwrap_or_default(),
    };
    out.emit(|| plan.report(mapping::plan::EmailDisplay::Full), json!(plan));
    Ok(())
}

async fn backfill(from: NaiveDate, to: NaiveDate, dry_run: bool, max: usize, out: &Output) -> Result<(), Failure> {
    let engine = engine().await?;
    let settings = engine.settings().await?;
    let (start, end) = window(from, to, settings.zone())?;
    out.progress(&format!(
        "looking for unlinked CM campaigns from {from} to {to} ({})...",
        settings.zone()
    ));
    let candidates = engine.backfill_candidates(start, end).await?;
    if candidates.len() > max {
        return Err(Failure(format!(
            "{} campaigns are in the window, more than --max {max}: narrow the window or raise --max; nothing was created",
            candidates.len()
        )));
    }
    let mut results = Vec::new();
    for (i, campaign) in candidates.iter().enumerate() {
        let outcome = if dry_run {
            None
        } else {
            let outcome = engine.backfill_one(campaign).await?;
            out.progress(&format!(
                "[{}/{}] {} ({}): {}",
                i + 1,
                candidates.len(),
                campaign.name,
                campaign.cm_campaign_id,
                match &outcome {
                    engine::autocreate::AutoCreateOutcome::Linked {
                        sf_campaign_id,
                        created,
                    } => format!(
                        "{} SF Campaign {sf_campaign_id}",
                        if *created { "created" } else { "linked existing" }
                    ),
                    engine::autocreate::AutoCreateOutcome::Skipped { reason } => format!("skipped: {reason}"),
                }
            ));
            Some(outcome)
        };
        results.push(engine::admin::BackfillResult {
            campaign: campaign.clone(),
            outcome,
        });
    }
    out.emit(
        || {
            let mut text = String::new();
            for result in &results {
                let when = result
                    .campaign
                    .created_or_sent()
                    .map(|t| t.with_timezone(&settings.zone()).format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                text += &format!(
                    "{}  {}  {:?}  {}\n",
                    result.campaign.cm_campaign_id, when, result.campaign.state, result.campaign.name
                );
            }
            text += &if dry_run {
                format!(
                    "{} campaign(s) would get an SF Campaign (dry run: nothing created)\n",
                    results.len()
                )
            } else {
                format!("{} campaign(s) backfilled; each is synced now\n", results.len())
            };
            text
        },
        json!({"dry_run": dry_run, "from": start, "to": end, "campaigns": results}),
    );
    Ok(())
}

async fn webhooks(command: WebhooksCommand, out: &Output) -> Result<(), Failure> {
    let engine = engine().await?;
    match command {
        WebhooksCommand::Register { url } => {
            let full = intake_url(&url).await?;
            let changes = engine.register_webhooks(&full).await?;
            out.emit(|| webhook_lines(&changes), json!(changes));
        }
        WebhooksCommand::Remove { url } => {
            let full = intake_url(&url).await?;
            let changes = engine.remove_webhooks(&full).await?;
            out.emit(
                || {
                    if changes.is_empty() {
                        "no webhook of this deployment on the configured lists".to_owned()
                    } else {
                        webhook_lines(&changes)
                    }
                },
                json!(changes),
            );
        }
        WebhooksCommand::List { url } => {
            let full = match url.as_deref() {
                Some(base) => Some(intake_url(base).await?),
                None => None,
            };
            let hooks = engine.webhooks(full.as_deref()).await?;
            out.emit(
                || {
                    if hooks.is_empty() {
                        return "no webhooks on the configured lists".to_owned();
                    }
                    let mut text = String::new();
                    for hook in &hooks {
                        text += &format!(
                            "{}  {}  {}  [{}]  {}{}\n",
                            hook.list_id,
                            hook.webhook_id,
                            hook.url,
                            hook.events.join(","),
                            hook.status,
                            if hook.ours { "  (this deployment)" } else { "" }
                        );
                    }
                    text
                },
                json!(hooks),
            );
        }
    }
    Ok(())
}

fn webhook_lines(changes: &[engine::admin::WebhookChange]) -> String {
    use engine::admin::WebhookChange;
    let mut text = String::new();
    for change in changes {
        text += &match change {
            WebhookChange::Created { list_id, webhook_id } => {
                format!("list {list_id}: registered (webhook {webhook_id})\n")
            }
            WebhookChange::AlreadyRegistered { list_id, webhook_id } => {
                format!("list {list_id}: already registered (webhook {webhook_id})\n")
            }
            WebhookChange::Removed { list_id, webhook_id } => format!("list {list_id}: removed webhook {webhook_id}\n"),
        };
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed_and_every_command_has_an_example() {
        Cli::command().debug_assert();
        fn walk(command: &clap::Command, path: &str) {
            let path = format!("{path} {}", command.get_name());
            if command.has_subcommands() {
                for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                    walk(sub, &path);
                }
            } else if path.trim() != "cm-sf-admin" {
                let help = command.get_long_about().map(ToString::to_string).unwrap_or_default();
                assert!(help.contains("Example"), "`{path}` has no example in its help");
            }
        }
        walk(&Cli::command(), "");
    }

    #[test]
    fn a_backfill_window_covers_whole_days_in_the_cm_time_zone() {
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        let (from, to) = window(day("2026-01-01"), day("2026-01-31"), chrono_tz::Australia::Sydney).unwrap();
        assert_eq!(from.to_rfc3339(), "2025-12-31T13:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-01-31T12:59:59.999+00:00");
        assert!(window(day("2026-02-01"), day("2026-01-01"), chrono_tz::UTC).is_err());
    }
}
