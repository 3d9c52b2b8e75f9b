//! The RabbitMQ management API: queue counters, raw publishes, peeking, clean-up.

use serde_json::{Value, json};

use super::Services;

/// The RabbitMQ virtual host of the test broker (`/`), as the management API spells it.
const VHOST: &str = "%2f";

impl Services {
    // ---- RabbitMQ management API

    pub(crate) fn rabbit(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, format!("{}/api/{path}", self.rabbit_api))
            .basic_auth(&self.rabbit_user, Some(&self.rabbit_password))
    }

    /// POSTs `body` to the management API's `path`; panics naming `what` when it cannot be sent.
    fn rabbit_post(&self, path: &str, body: &Value, what: &str) -> reqwest::blocking::Response {
        self.rabbit(reqwest::Method::POST, path)
            .json(body)
            .send()
            .unwrap_or_else(|e| panic!("management API: {what}: {e}"))
    }

    /// PUTs `body` to the management API's `path`; panics naming `what` unless it succeeds.
    pub(crate) fn rabbit_put(&self, path: &str, body: &Value, what: &str) {
        super::success(
            self.rabbit(reqwest::Method::PUT, path).json(body).send(),
            &format!("management API: {what}"),
        );
    }

    /// Counters of queue `name` from the management API (a few seconds stale), `None` when the queue
    /// does not exist.
    pub fn queue_info(&self, name: &str) -> Option<QueueInfo> {
        let response = self
            .rabbit(reqwest::Method::GET, &format!("queues/{VHOST}/{name}"))
            .send()
            .unwrap_or_else(|e| panic!("management API: GET queue {name}: {e}"));
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let body: Value = json_body(response, &format!("GET queue {name}"));
        let count = |field: &str| body.get(field).and_then(Value::as_u64).unwrap_or(0);
        Some(QueueInfo {
            messages: count("messages"),
            ready: count("messages_ready"),
            unacked: count("messages_unacknowledged"),
            consumers: count("consumers"),
        })
    }

    /// Publishes `payload` to `queue` through the default exchange as a persistent message with
    /// `message_id`; panics unless the broker routed it.
    pub fn publish_raw(&self, queue: &str, message_id: &str, payload: &str) {
        let body = json!({
            "properties": {"message_id": message_id, "delivery_mode": 2},
            "routing_key": queue,
            "payload": payload,
            "payload_encoding": "string",
        });
        let response = self.rabbit_post(
            &format!("exchanges/{VHOST}/amq.default/publish"),
            &body,
            &format!("publish {message_id} to {queue}"),
        );
        let answer = json_body(response, &format!("publish {message_id} to {queue}"));
        assert_eq!(
            answer.get("routed"),
            Some(&Value::Bool(true)),
            "the broker did not route {message_id} to {queue}: {answer}"
        );
    }

    /// Reads up to `count` messages of `queue` and puts them back (`ack_requeue_true`): the current
    /// contents, unlike the counters of [`Services::queue_info`]. Empty when the queue does not exist.
    pub fn peek_messages(&self, queue: &str, count: usize) -> Vec<PeekedMessage> {
        let body = json!({
            "count": count,
            "ackmode": "ack_requeue_true",
            "encoding": "auto",
            "truncate": 100_000,
        });
        let response = self.rabbit_post(
            &format!("queues/{VHOST}/{queue}/get"),
            &body,
            &format!("get from {queue}"),
        );
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let messages = json_body(response, &format!("get from {queue}"));
        messages
            .as_array()
            .unwrap_or_else(|| panic!("management API: get from {queue} answered {messages}"))
            .iter()
            .map(|m| {
                let properties = &m["properties"];
                let header = |name: &str| properties["headers"][name].as_str().map(str::to_string);
                PeekedMessage {
                    message_id: properties["message_id"].as_str().map(str::to_string),
                    reason: header("x-lucid-reason"),
                    task_id_header: header("x-lucid-task-id"),
                    payload: m["payload"].as_str().unwrap_or_default().to_string(),
                }
            })
            .collect()
    }

    /// Deletes queue `name` (no error when it does not exist).
    pub fn delete_queue(&self, name: &str) {
        let result = self
            .rabbit(reqwest::Method::DELETE, &format!("queues/{VHOST}/{name}"))
            .send();
        if let Err(error) = result {
            eprintln!("lucid-e2e: deleting queue {name} failed: {error}");
        }
    }

    /// Deletes exchange `name` (no error when it does not exist).
    pub fn delete_exchange(&self, name: &str) {
        let result = self
            .rabbit(
                reqwest::Method::DELETE,
                &format!("exchanges/{VHOST}/{name}"),
            )
            .send();
        if let Err(error) = result {
            eprintln!("lucid-e2e: deleting exchange {name} failed: {error}");
        }
    }

    // ---- Prometheus
}

fn json_body(response: reqwest::blocking::Response, what: &str) -> Value {
    let status = response.status();
    let text = response
        .text()
        .unwrap_or_else(|e| panic!("management API: {what}: reading the answer: {e}"));
    assert!(
        status.is_success(),
        "management API: {what} answered {status}: {text}"
    );
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("management API: {what}: undecodable answer {text:?}: {e}"))
}

/// Queue counters from the management API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    /// Ready plus unacknowledged.
    pub messages: u64,
    /// Ready for delivery.
    pub ready: u64,
    /// Delivered, not acknowledged.
    pub unacked: u64,
    /// Consumers.
    pub consumers: u64,
}

/// A message read with [`Services::peek_messages`].
#[derive(Debug, Clone)]
pub struct PeekedMessage {
    /// The AMQP message id.
    pub message_id: Option<String>,
    /// The `x-lucid-reason` header (set by a worker that dead-lettered the message).
    pub reason: Option<String>,
    /// The `x-lucid-task-id` header.
    pub task_id_header: Option<String>,
    /// The body.
    pub payload: String,
}
