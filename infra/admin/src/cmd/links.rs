//! `link`, `unlink`, `links`: the links between CM campaigns and SF Campaigns.

use serde_json::json;
use state::{LinkOutcome, LinkStore};

use crate::context::{Context, Failure, Report};

/// `link CM SF`: writes the Campaign's link field and the state table, then syncs.
pub async fn link(context: &Context, cm_campaign: &str, sf_campaign: &str) -> Result<Report, Failure> {
    let outcome = context
        .engine()
        .await?
        .link_manually(cm_campaign, sf_campaign, engine::admin::CLI_ACTOR)
        .await?;
    let created = outcome == LinkOutcome::Created;
    let text = if created {
        format!("linked CM campaign {cm_campaign} to SF Campaign {sf_campaign}; a sync of it was requested")
    } else {
        format!("CM campaign {cm_campaign} was already linked to SF Campaign {sf_campaign}; nothing changed")
    };
    Ok(Report::new(
        text,
        json!({"cm_campaign_id": cm_campaign, "sf_campaign_id": sf_campaign, "created": created}),
    ))
}

/// `unlink CM`: clears the link field and forgets the link and the campaign's progress.
pub async fn unlink(context: &Context, cm_campaign: &str) -> Result<Report, Failure> {
    let removed = context
        .engine()
        .await?
        .unlink(cm_campaign, engine::admin::CLI_ACTOR)
        .await?;
    let text = match &removed {
        Some(link) => format!(
            "unlinked CM campaign {cm_campaign} from SF Campaign {} (its link field cleared; the Campaign and its members stay)",
            link.sf_campaign_id
        ),
        None => format!("CM campaign {cm_campaign} was not linked; nothing changed"),
    };
    Ok(Report::new(
        text,
        json!({"cm_campaign_id": cm_campaign, "removed": removed}),
    ))
}

/// `links`: every link, oldest first.
pub async fn list(context: &Context) -> Result<Report, Failure> {
    let mut links = context.store().await?.links().await?;
    links.sort_by_key(|link| link.linked_at);
    let mut text = String::new();
    if links.is_empty() {
        text += "no links yet";
    } else {
        text += &format!(
            "{:<32}  {:<18}  {:<19}  {}\n",
            "CM campaign", "SF Campaign", "origin", "linked at"
        );
    }
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
    Ok(Report::new(text, json!(links)))
}
