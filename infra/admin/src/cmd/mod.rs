//! One file per command; each takes its arguments and the [`Context`] and returns a [`Report`].

mod audit;
mod backfill;
mod campaigns;
mod console;
mod doctor;
mod forget;
mod init_table;
mod links;
mod replay;
mod retry;
mod runs;
mod settings;
mod sync;
mod webhooks;

use crate::cli::Command;
use crate::context::{Context, Failure, Report};

/// Runs one command.
pub async fn run(command: Command, context: &Context) -> Result<Report, Failure> {
    match command {
        Command::InitTable => init_table::run(context).await,
        Command::Audit { last } => audit::run(context, last).await,
        Command::Settings(command) => settings::run(command, context).await,
        Command::Link {
            cm_campaign,
            sf_campaign,
        } => links::link(context, &cm_campaign, &sf_campaign).await,
        Command::Unlink { cm_campaign } => links::unlink(context, &cm_campaign).await,
        Command::Links => links::list(context).await,
        Command::Campaigns => campaigns::run(context).await,
        Command::Sync { campaign, dry_run } => sync::run(context, campaign, dry_run).await,
        Command::Backfill { from, to, dry_run, max } => backfill::run(context, from, to, dry_run, max).await,
        Command::Runs { last, email: None } => runs::recent(context, last).await,
        Command::Runs {
            last,
            email: Some(email),
        } => runs::of_person(context, last, &email).await,
        Command::Run { run_id } => runs::one(context, &run_id).await,
        Command::Forget { address } => forget::run(context, &address).await,
        Command::Retry { run_id } => retry::run(context, &run_id).await,
        Command::Doctor {
            url,
            console_url,
            template,
            stage,
        } => {
            doctor::run(
                context,
                url.as_deref(),
                console_url.as_deref(),
                &template,
                stage.as_deref(),
            )
            .await
        }
        Command::Replay { dry_run } => replay::run(context, dry_run).await,
        Command::Webhooks(command) => webhooks::run(command, context).await,
        Command::Console { listen } => console::run(context, listen).await,
    }
}
