//! `cm-sf-admin`: administer a deployment (or the local demo stack) from the command line.
//!
//! Uses the same configuration as the functions (`STATE_TABLE`, `EVENT_BUS`, `CM_SECRET_ID`,
//! `SF_SECRET_ID`, `WEBHOOK_SECRET_ID`, ...; read by `lambda_support::Config`) and the usual AWS
//! credentials. [`cli`] declares the commands; each lives in a file of [`cmd`] and returns a
//! [`context::Report`], printed as text or, with `--json`, as JSON. Errors go to stderr with
//! exit status 1 (2 for usage).

mod cli;
mod cmd;
mod context;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let context = context::Context::from_env();
    match cmd::run(cli.command, &context).await {
        Ok(report) => report.print(cli.json),
        Err(context::Failure(message)) => {
            eprintln!("cm-sf-admin: {message}");
            ExitCode::FAILURE
        }
    }
}
