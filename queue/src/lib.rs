//! The AMQP side of lucid-sweep: the RabbitMQ topology, publishing tasks with confirms, consuming them
//! with a per-consumer prefetch, dead letters, and queue statistics.
//!
//! **Architecture Invariant:** this is the only crate that speaks AMQP (and the only one that links
//! lapin). The coordinator and the workers see tasks as [`lucid_proto::TaskMessage`] values and
//! deliveries as [`Delivery`]; they never see a lapin type.
//!
//! # Topology
//!
//! - The task queue ([`Topology::tasks`]): a durable quorum queue with `x-delivery-limit` and
//!   `x-dead-letter-exchange`. Messages are persistent JSON with the task id as message id.
//! - The dead-letter exchange ([`Topology::dead_letter_exchange`]): durable fanout.
//! - The dead-letter queue ([`Topology::dead_letter_queue`]): durable quorum queue bound to it;
//!   nothing consumes it. Tasks land there two ways: the broker moves a task that exhausted its
//!   delivery limit (`x-death` reason `delivery_limit`), or a worker gives one up with
//!   [`Delivery::dead_letter`] (header `x-lucid-reason`). [`Broker::retry_dead`] moves them back.
//!
//! # Delivery semantics
//!
//! At least once. A delivery is acked only after its durable effect; anything unacked when a channel
//! or connection closes comes back. On RabbitMQ 3.10 every return to the queue (a requeue, a closed
//! channel or connection) counts toward the delivery limit, so size the limit for a few restarts.
//!
//! # Layout
//!
//! - [`Broker`] (`broker.rs`): the shared connection and its channels. What it does is split by
//!   concern: `connection/` (connecting, the TLS set-up and the typed TLS refusal, the connection
//!   watcher and [`RECOVERY_DEADLINE`]), `topology.rs` ([`Topology`], declaring and deleting the
//!   queues), `publishing.rs` (publishing with confirms), `administration.rs` ([`QueueStats`],
//!   [`DeadLetter`]: statistics, `retry_dead`, `cancel_run`, `peek_dead`).
//! - [`Consumer`], [`Delivery`] (`consumer.rs`): the consume side and the three outcomes of a
//!   delivery.
//! - [`ManagementApi`]: the management HTTP API (unacked counts, consumers, closing connections).
//! - [`redact_uri`]: the only form in which a URI is logged.
#![warn(missing_docs)]

mod administration;
mod broker;
mod connection;
mod consumer;
mod error;
pub mod headers;
mod management;
mod publishing;
mod topology;
mod uri;

pub use administration::{DeadLetter, QueueStats};
pub use broker::Broker;
pub use connection::RECOVERY_DEADLINE;
pub use consumer::{Consumer, Delivery};
pub use error::QueueError;
pub use management::{ManagementApi, QueueInfo};
pub use topology::Topology;
pub use uri::redact_uri;

/// Environment variable naming a PEM file of CA certificates trusted for `amqps://` connections.
pub const CA_FILE_ENV: &str = "LUCID_CA_FILE";
