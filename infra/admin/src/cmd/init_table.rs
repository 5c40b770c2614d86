//! `init-table`: create the state table (local stacks only; on AWS the template creates it).

use serde_json::json;
use state::dynamo::DynamoStore;

use crate::context::{Context, Failure, Report};

pub async fn run(context: &Context) -> Result<Report, Failure> {
    let store = context.store().await?;
    DynamoStore::create_table(
        &aws_sdk_dynamodb::Client::new(&lambda_support::aws().await),
        store.table(),
    )
    .await?;
    Ok(Report::new(
        format!("created table {}", store.table()),
        json!({"table": store.table()}),
    ))
}
