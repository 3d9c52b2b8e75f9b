//! Connecting to the broker and the object store named by a spec.
//!
//! The AMQP URI with its credentials comes only from env `LUCID_AMQP_URI` or the file named by
//! `queue.uri_file` (see [`QueueSection::resolve_uri`]); it is never logged except through
//! [`lucid_queue::redact_uri`].

use lucid_proto::SweepSpec;
use lucid_proto::spec::{AMQP_URI_ENV, QueueSection};
use lucid_queue::{Broker, ManagementApi, Topology};
use lucid_storage::Store;

use crate::error::{Error, Result};

/// Environment variable with the RabbitMQ management API base URL.
pub const RABBIT_API_ENV: &str = "LUCID_RABBIT_API";

/// The management API URL used when neither `--rabbit-api` nor [`RABBIT_API_ENV`] is given.
pub const DEFAULT_RABBIT_API: &str = "http://127.0.0.1:15672";

/// The AMQP URI to connect with: env [`AMQP_URI_ENV`], else the contents of `queue.uri_file`, else
/// `queue.uri` (which a validated spec keeps free of passwords).
pub fn amqp_uri(queue: &QueueSection) -> Result<String> {
    let env = std::env::var(AMQP_URI_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let file = match (&env, &queue.uri_file) {
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| Error::io("failed to read queue.uri_file", path, e))?,
        ),
        _ => None,
    };
    Ok(queue.resolve_uri(env.as_deref(), file.as_deref()))
}

/// A connection to the spec's broker, with the topology declared, and the URI it used.
pub async fn connect_broker(spec: &SweepSpec) -> Result<(Broker, String)> {
    let uri = amqp_uri(&spec.queue)?;
    let broker = Broker::connect(&uri, Topology::from_section(&spec.queue))
        .await
        .map_err(|e| Error::queue("connect to the broker", e))?;
    Ok((broker, uri))
}

/// The management API client at `base`, authenticated as the AMQP URI's user.
pub fn management_api(base: &str, amqp_uri: &str) -> ManagementApi {
    ManagementApi::from_amqp_uri(base, amqp_uri)
}

/// The spec's object store.
pub async fn open_store(spec: &SweepSpec) -> Result<Store> {
    Store::from_section(&spec.storage)
        .await
        .map_err(|e| Error::storage("open the object store of [storage]", e))
}
