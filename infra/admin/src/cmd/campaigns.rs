//! `campaigns`: the CM campaigns of the configured clients, read now and kept as the console's
//! catalog (the same operation the console asks of the sync function).

use lambda_support::Invocation;
use serde_json::json;
use state::LinkStore;

use crate::context::{Context, Failure, Report};

pub async fn run(context: &Context) -> Result<Report, Failure> {
    let Invocation { engine, settings } = context.invocation().await?;
    let zone = settings.zone();
    let catalog = engine.refresh_catalog(&settings).await?;
    let links = context.store().await?.links().await?;
    let mut text = String::new();
    for campaign in &catalog.campaigns {
        let when = campaign
            .created_or_sent()
            .map(|t| t.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "-".to_owned());
        let linked = links
            .iter()
            .find(|l| l.cm_campaign_id == campaign.cm_campaign_id)
            .map_or_else(|| "unlinked".to_owned(), |l| format!("linked to {}", l.sf_campaign_id));
        text += &format!(
            "{}  {when}  {:?}  {}  ({linked})\n",
            campaign.cm_campaign_id, campaign.state, campaign.name
        );
    }
    text += &format!("{} campaign(s); kept for the console\n", catalog.campaigns.len());
    Ok(Report::new(text, json!(catalog)))
}
