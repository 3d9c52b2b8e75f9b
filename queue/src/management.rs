//! A small client for the RabbitMQ management HTTP API (port 15672): queue counters the AMQP protocol does
//! not report (unacked deliveries, consumers) and connection control for operators and tests.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::QueueError;
use crate::uri::UriParts;

/// Where the management API is and how to log in. `Debug` does not show the password.
#[derive(Clone)]
pub struct ManagementApi {
    base: String,
    user: String,
    password: String,
    client: reqwest::Client,
}

impl fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementApi")
            .field("base", &self.base)
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// Counters of one queue as the management API reports them. The API refreshes its statistics every few
/// seconds (`collect_statistics_interval`, 5 s by default), so these lag behind the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct QueueInfo {
    /// Messages ready for delivery.
    #[serde(default)]
    pub messages_ready: u64,
    /// Messages delivered and not yet acknowledged.
    #[serde(default)]
    pub messages_unacknowledged: u64,
    /// Consumers subscribed to the queue.
    #[serde(default)]
    pub consumers: u64,
}

#[derive(Deserialize)]
struct ConnectionInfo {
    name: String,
    #[serde(default)]
    client_properties: serde_json::Value,
}

impl ManagementApi {
    /// A client for the API at `base` (`http://host:15672`) with basic-auth credentials.
    pub fn new(
        base: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            user: user.into(),
            password: password.into(),
            client,
        }
    }

    /// A client for the API at `base` using the user and password of `amqp_uri` (guest/guest when the
    /// URI has none, as the broker itself assumes).
    pub fn from_amqp_uri(base: &str, amqp_uri: &str) -> Self {
        let parts = UriParts::parse(amqp_uri);
        Self::new(
            base,
            parts.user.unwrap_or_else(|| "guest".into()),
            parts.password.unwrap_or_else(|| "guest".into()),
        )
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Counters of queue `queue` in virtual host `vhost` (`GET /api/queues/{vhost}/{queue}`).
    pub async fn queue_info(&self, vhost: &str, queue: &str) -> Result<QueueInfo, QueueError> {
        let url = format!(
            "{}/api/queues/{}/{}",
            self.base,
            urlencoding::encode(vhost),
            urlencoding::encode(queue)
        );
        let response = self.send(self.client.get(&url), &url).await?;
        response
            .json::<QueueInfo>()
            .await
            .map_err(|e| QueueError::Management {
                url,
                message: e.to_string(),
            })
    }

    /// Force-closes every connection whose client named itself `connection_name` (the
    /// `connection_name` client property; see [`crate::Broker::connection_name`]), as an operator
    /// would with `DELETE /api/connections/{name}`. Returns how many were closed.
    pub async fn close_connections_named(
        &self,
        connection_name: &str,
    ) -> Result<usize, QueueError> {
        let url = format!("{}/api/connections", self.base);
        let response = self.send(self.client.get(&url), &url).await?;
        let connections: Vec<ConnectionInfo> =
            response.json().await.map_err(|e| QueueError::Management {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let mut closed = 0;
        for connection in connections {
            if connection.client_properties.get("connection_name")
                != Some(&serde_json::Value::String(connection_name.into()))
            {
                continue;
            }
            let url = format!(
                "{}/api/connections/{}",
                self.base,
                urlencoding::encode(&connection.name)
            );
            let request = self
                .client
                .delete(&url)
                .header("X-Reason", "closed by lucid-queue management client");
            self.send(request, &url).await?;
            closed += 1;
        }
        Ok(closed)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, QueueError> {
        let response = request
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|e| QueueError::Management {
                url: url.to_string(),
                message: e.without_url().to_string(),
            })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(QueueError::Management {
                url: url.to_string(),
                message: format!(
                    "HTTP {status}: {}",
                    body.chars().take(300).collect::<String>()
                ),
            });
        }
        Ok(response)
    }
}
