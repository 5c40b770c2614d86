//! The command line: every command, its arguments and its help (with an example each).

// The doc comments of the command-line types are clap's help text, read in a terminal: example
// URLs and `[n]` paths are meant literally there, not as rustdoc links.
#![allow(rustdoc::bare_urls, rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "Configuration comes from the environment, as for the functions: STATE_TABLE and \
EVENT_BUS (stack outputs), CM_SECRET_ID, SF_SECRET_ID and WEBHOOK_SECRET_ID (Secrets Manager names), \
optionally CM_BASE_URL and SF_API_VERSION; AWS credentials as usual (AWS_PROFILE, AWS_REGION, ...).";

/// Administer the Campaign Monitor → Salesforce sync: settings, links, syncs, backfill, runs,
/// checks and webhooks.
#[derive(Debug, Parser)]
#[command(version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Print JSON instead of readable text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// List the CM campaigns of the configured clients (sent, scheduled, draft), read from CM
    /// now, and keep them as the catalog the console's Links, campaign picker and backfill
    /// preview show.
    ///
    /// Example: cm-sf-admin campaigns
    Campaigns,
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
    /// Recent sync runs with their counts, newest first; with `--email`, only the runs that
    /// failed on that person, with those failures (records keep no whole address: the address
    /// is matched by its key).
    ///
    /// Example: cm-sf-admin runs --last 5
    /// Example: cm-sf-admin runs --last 200 --email jo.bloggs@example.com
    Runs {
        /// How many (the newest runs searched, with `--email`).
        #[arg(long, default_value_t = 20)]
        last: usize,
        /// Only the failures of the person with this address.
        #[arg(long)]
        email: Option<String>,
    },
    /// Erase one person from the state table (a data-subject request): every item holding
    /// their address, their person key or one of their webhook events' keys is removed (their
    /// events and queued records) or rewritten (run failures and batches listing them). Scans
    /// the whole table. Salesforce and Campaign Monitor keep their own records.
    ///
    /// Example: cm-sf-admin forget jo.bloggs@example.com
    Forget {
        /// The person's email address.
        address: String,
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
    /// Changes made to this deployment, newest first: who (a Salesforce user id from the
    /// console, or `cli`), what, and the settings versions before and after. Kept
    /// run_retention_days.
    ///
    /// Example: cm-sf-admin audit --last 50
    Audit {
        /// How many.
        #[arg(long, default_value_t = 20)]
        last: usize,
    },
    /// Check, before the first sync, that everything the settings need is in place: the
    /// functions' own configuration (each function's environment as the template and the
    /// stage's samconfig deploy it); Salesforce objects, fields, types and access; CM
    /// credentials, clients and lists; webhooks; campaigns Salesforce refused to create. Each
    /// finding says how to fix it. Exit status 1 when a problem is found.
    ///
    /// Example: cm-sf-admin doctor --stage prod --url https://abc.lambda-url.eu-west-1.on.aws/hooks/
    Doctor {
        /// The intake URL (stack output WebhookUrl; or WEBHOOK_URL). With it, the webhook
        /// check looks for this deployment's URL exactly.
        #[arg(long, env = "WEBHOOK_URL")]
        url: Option<String>,
        /// The admin console's URL (stack output ConsoleUrl; or CONSOLE_URL): printed with the
        /// callback URL its External Client App needs. Its secret is checked when
        /// CONSOLE_SECRET_ID (stack parameter ConsoleSecretName) is set.
        #[arg(long, env = "CONSOLE_URL")]
        console_url: Option<String>,
        /// The deployment template whose functions are checked.
        #[arg(long, value_name = "PATH", default_value = "infra/template.yaml")]
        template: std::path::PathBuf,
        /// The stage deployed (its parameter overrides are read from samconfig.toml beside the
        /// template); without it, the parameters' defaults.
        #[arg(long, value_name = "NAME")]
        stage: Option<String>,
    },
    /// Re-drive what the functions failed on for good: every invocation record in the
    /// failed-invocations queue (FAILED_INVOCATIONS_QUEUE_URL, the stack output) goes back on the
    /// bus as the event it was, and leaves the queue once published. Fix the cause first (see
    /// the record's error); applying an event again changes nothing that was already applied.
    ///
    /// Example: cm-sf-admin replay --dry-run
    Replay {
        /// List what would be re-driven; publish and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve the admin console (Campaign Settings, runs and their failures as web pages, signed
    /// in with Salesforce) on a loopback address, against this deployment's state table. Needs
    /// the console's connected app: CONSOLE_CLIENT_ID, CONSOLE_ORG_ID (the org allowed to sign
    /// in), optionally CONSOLE_CLIENT_SECRET, CONSOLE_SF_LOGIN_URL (default
    /// https://login.salesforce.com), CONSOLE_PERMISSION (default CM_Sync_Console) and
    /// CONSOLE_PERMISSION_SET. The connected app's callback URL is http://ADDRESS/auth/callback.
    ///
    /// Example: cm-sf-admin console --listen 127.0.0.1:8080
    Console {
        /// Where to listen (a loopback address only).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// Register, list or remove this deployment's webhook on the configured CM lists.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
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
    /// The Salesforce fields a settings file names, with the type each must have (validated;
    /// needs no AWS access): what `make validate SETTINGS=FILE` checks against the metadata.
    ///
    /// Example: cm-sf-admin --json settings fields settings.json
    Fields {
        /// The JSON document.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
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
    /// The webhook events recorded and not applied yet, oldest first (addresses redacted): each
    /// with its state and, for a failed one, Salesforce's reason. `cm-sf-admin replay` re-applies
    /// them once the cause is fixed; the schedule also sweeps them.
    ///
    /// Example: cm-sf-admin webhooks events --failed
    Events {
        /// Only the events that failed (not those still waiting for their hand-off).
        #[arg(long)]
        failed: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// One implementation, two renderings: every console action names the command that does
    /// the same, and that command exists.
    #[test]
    fn every_console_action_has_its_command() {
        let cli = Cli::command();
        for (action, command) in console::ACTIONS {
            let mut current = &cli;
            for word in command.split_whitespace() {
                current = current
                    .find_subcommand(word)
                    .unwrap_or_else(|| panic!("console action `{action}`: no command `cm-sf-admin {command}`"));
            }
        }
        assert!(cli.find_subcommand("console").is_some(), "the CLI serves the console");
    }

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
}
