//! A bus on the moto emulator with rules routing to one SQS queue each, shared by the
//! EventBridge tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test support

use std::collections::BTreeMap;

use aws_sdk_eventbridge::types::Target;
use events::Event;
use events::publisher::EventBridgeSink;

pub async fn config() -> aws_config::SdkConfig {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run these tests through `make test` (it starts the moto emulator)"
    );
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A bus with one rule per given detail-type set, each targeting its own queue.
pub struct Routing {
    pub bus: String,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub queues: BTreeMap<String, String>,
}

impl Routing {
    /// `rules`: (queue name, event pattern).
    pub async fn new(rules: &[(String, serde_json::Value)]) -> Routing {
        let config = config().await;
        let eventbridge = aws_sdk_eventbridge::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let bus = format!("bus-{suffix}");
        eventbridge.create_event_bus().name(&bus).send().await.unwrap();
        let mut queues = BTreeMap::new();
        for (name, pattern) in rules {
            let queue_url = sqs
                .create_queue()
                .queue_name(format!("{name}-{suffix}"))
                .send()
                .await
                .unwrap()
                .queue_url
                .unwrap();
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap()
                .attributes
                .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
                .clone();
            let rule = format!("{name}-{suffix}");
            eventbridge
                .put_rule()
                .name(&rule)
                .event_bus_name(&bus)
                .event_pattern(pattern.to_string())
                .send()
                .await
                .unwrap();
            eventbridge
                .put_targets()
                .rule(&rule)
                .event_bus_name(&bus)
                .targets(Target::builder().id("queue").arn(arn).build().unwrap())
                .send()
                .await
                .unwrap();
            queues.insert(name.clone(), queue_url);
        }
        Routing {
            bus,
            eventbridge,
            sqs,
            queues,
        }
    }

    pub fn sink(&self) -> EventBridgeSink {
        EventBridgeSink::new(self.eventbridge.clone(), &self.bus)
    }

    /// Every event delivered to a queue, read back through the shared event types.
    pub async fn drain(&self, name: &str) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(&self.queues[name])
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            for message in messages {
                let body: serde_json::Value = serde_json::from_str(message.body().unwrap()).unwrap();
                let event = Event::from_parts(
                    body["source"].as_str().unwrap(),
                    body["detail-type"].as_str().unwrap(),
                    body["detail"].clone(),
                )
                .unwrap();
                events.push(event);
                self.sqs
                    .delete_message()
                    .queue_url(&self.queues[name])
                    .receipt_handle(message.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}
