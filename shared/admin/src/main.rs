//! `cm-sf-admin`: administer a deployment (or the local demo stack) from the command line.
//!
//! Uses the same configuration as the functions (`STATE_TABLE`, `EVENT_BUS`, `CM_SECRET_ID`,
//! `SF_SECRET_ID`, ...) and the usual AWS credentials.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use events::{Event, LinkOrigin};
use lambda_support::Parts;
use mapping::Settings;
use state::dynamo::DynamoStore;
use state::{LinkRecord, LinkStore, SettingsStore};

/// Administer the Campaign Monitor → Salesforce sync.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the state table (local stacks; on AWS the template creates it).
    ///
    /// Example: cm-sf-admin init-table
    InitTable,
    /// Read or change the settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Link a CM campaign to an SF Campaign by hand.
    ///
    /// Example: cm-sf-admin link 0123456789abcdef0123456789abcdef 701000000000001AAA
    Link {
        /// CM CampaignID.
        cm_campaign: String,
        /// SF Campaign Id.
        sf_campaign: String,
    },
    /// Start a sync now (through the same event the schedule uses), or print the plan.
    ///
    /// Example: cm-sf-admin sync --dry-run
    Sync {
        /// Only this CM campaign.
        #[arg(long)]
        campaign: Option<String>,
        /// Compute and print the plan; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SettingsCommand {
    /// Print the stored settings.
    ///
    /// Example: cm-sf-admin settings show
    Show,
    /// Validate a settings file and store it (optimistic locking).
    ///
    /// Example: cm-sf-admin settings apply settings.json
    Apply {
        /// The JSON document.
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cm-sf-admin: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn store() -> Result<DynamoStore, String> {
    let table = std::env::var("STATE_TABLE").map_err(|_| "environment variable STATE_TABLE is required".to_owned())?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Ok(DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table))
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::InitTable => {
            let store = store().await?;
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            DynamoStore::create_table(&aws_sdk_dynamodb::Client::new(&aws), store.table())
                .await
                .map_err(|e| e.to_string())?;
            println!("created table {}", store.table());
        }
        Command::Settings(SettingsCommand::Show) => {
            match store().await?.load_settings().await.map_err(|e| e.to_string())? {
                Some(stored) => println!(
                    "# version {}, saved {}\n{}",
                    stored.version,
                    stored.updated_at,
                    stored.settings.to_json()
                ),
                None => println!("no settings stored yet"),
            }
        }
        Command::Settings(SettingsCommand::Apply { file }) => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let submitted = Settings::from_json(&text).map_err(|e| e.to_string())?;
            let store = store().await?;
            let stored = store.load_settings().await.map_err(|e| e.to_string())?;
            let prepared = submitted
                .prepare_update(stored.as_ref().map(|s| &s.settings), chrono::Utc::now())
                .map_err(|e| e.to_string())?;
            let version = store
                .save_settings(&prepared, stored.map(|s| s.version), chrono::Utc::now())
                .await
                .map_err(|e| e.to_string())?;
            println!("settings stored (version {version})");
        }
        Command::Link {
            cm_campaign,
            sf_campaign,
        } => {
            let link = LinkRecord {
                cm_campaign_id: cm_campaign,
                sf_campaign_id: sf_campaign,
                origin: LinkOrigin::Manual,
                linked_at: chrono::Utc::now(),
            };
            let outcome = store().await?.put_link(&link).await.map_err(|e| e.to_string())?;
            println!("{outcome:?}");
        }
        Command::Sync { campaign, dry_run } => {
            let parts = Parts::from_env().await.map_err(|e| e.to_string())?;
            let engine = parts.engine().await.map_err(|e| e.to_string())?;
            let run_id = engine::new_run_id();
            if dry_run {
                let report = match campaign {
                    Some(cm) => match engine
                        .sync_campaign(&cm, &run_id, true, 0, engine::Deadline::none())
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        engine::campaign::CampaignOutcome::Done { plan, .. } => mapping::SyncPlan {
                            campaigns: vec![*plan],
                            ..Default::default()
                        }
                        .report(mapping::plan::EmailDisplay::Full),
                        other => format!("{other:?}"),
                    },
                    None => engine
                        .run_scheduled(&run_id, true)
                        .await
                        .map_err(|e| e.to_string())?
                        .report
                        .unwrap_or_default(),
                };
                print!("{report}");
            } else {
                engine
                    .publish(&[Event::sync_requested(&run_id, campaign.as_deref(), false, "admin")])
                    .await
                    .map_err(|e| e.to_string())?;
                println!("sync requested (run {run_id})");
            }
        }
    }
    Ok(())
}
