//! The test services (RabbitMQ, SeaweedFS, Prometheus) as `scripts/services.sh env` names them, and
//! the HTTP helpers the tests use on them.

mod control;
mod prometheus;
mod rabbitmq;
mod s3;

use std::path::PathBuf;
use std::time::Duration;

pub use control::{Restore, exclusive_services, rabbitmqctl, services_script, shared_services};
pub use prometheus::{PromSample, PromTargets};
pub use rabbitmq::{PeekedMessage, QueueInfo};

/// Timeout of every HTTP request the tests make.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The response of a sent request that must succeed; panics naming `what` when it could not be
/// sent or answered other than 2xx.
pub(crate) fn success(
    sent: reqwest::Result<reqwest::blocking::Response>,
    what: &str,
) -> reqwest::blocking::Response {
    let response = sent.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        response.status().is_success(),
        "{what} answered {}",
        response.status()
    );
    response
}

/// The test services, from the environment `scripts/services.sh env` sets up.
#[derive(Debug, Clone)]
pub struct Services {
    /// AMQP URI with credentials.
    pub amqp_uri: String,
    /// RabbitMQ management API base URL.
    pub rabbit_api: String,
    /// Management API user.
    pub rabbit_user: String,
    /// Management API password.
    pub rabbit_password: String,
    /// S3 endpoint (SeaweedFS).
    pub s3_endpoint: String,
    /// S3 access key.
    pub s3_access_key: String,
    /// S3 secret key.
    pub s3_secret_key: String,
    /// Prometheus base URL.
    pub prometheus: String,
    /// Prometheus `file_sd` folder (scraped every second).
    pub prom_targets_dir: PathBuf,
    pub(crate) http: reqwest::blocking::Client,
}

/// Runs `f` where blocking is allowed: on a scoped thread when called from inside a tokio runtime
/// (a `#[tokio::test]`, whose thread reqwest's blocking client refuses to block), else right here.
/// The [`Services`] HTTP helpers are blocking: from async code, call them through this.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

impl Services {
    /// The services named by the `LUCID_TEST_*` variables, when every one is set and answers. When
    /// not, the test cannot run: under CI this panics naming what is missing, elsewhere it prints a
    /// `SKIPPED` line and returns `None`, and the caller returns (see [`lucid_testkit`]).
    ///
    /// The probe waits while a fault test of this binary holds [`exclusive_services`] (it may have a
    /// service stopped), so call this before taking that guard.
    pub fn from_env() -> Option<Self> {
        use lucid_testkit::{PROMETHEUS, RABBITMQ, RABBITMQ_MANAGEMENT, SEAWEEDFS};
        let settings = {
            let _no_outage = shared_services();
            lucid_testkit::require(&[RABBITMQ, RABBITMQ_MANAGEMENT, SEAWEEDFS, PROMETHEUS])?
        };
        let var = |name: &str| settings.get(name).to_owned();
        Some(Self {
            amqp_uri: var("LUCID_TEST_AMQP_URI"),
            rabbit_api: var("LUCID_TEST_RABBIT_API")
                .trim_end_matches('/')
                .to_owned(),
            rabbit_user: var("LUCID_TEST_RABBIT_USER"),
            rabbit_password: var("LUCID_TEST_RABBIT_PASSWORD"),
            s3_endpoint: var("LUCID_TEST_S3_ENDPOINT"),
            s3_access_key: var("LUCID_TEST_S3_ACCESS_KEY"),
            s3_secret_key: var("LUCID_TEST_S3_SECRET_KEY"),
            prometheus: var("LUCID_TEST_PROMETHEUS")
                .trim_end_matches('/')
                .to_owned(),
            prom_targets_dir: PathBuf::from(var("LUCID_TEST_PROM_TARGETS_DIR")),
            http: off_runtime(|| {
                reqwest::blocking::Client::builder()
                    .timeout(HTTP_TIMEOUT)
                    .build()
                    .expect("cannot build an HTTP client")
            }),
        })
    }

    /// The AMQP URI without user and password (what a spec may hold).
    pub fn amqp_uri_without_credentials(&self) -> String {
        match self.amqp_uri.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{host}")
            }
            None => self.amqp_uri.clone(),
        }
    }

    /// The environment every lucid process of a test gets: credentials and service addresses.
    pub(crate) fn process_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LUCID_AMQP_URI", self.amqp_uri.clone()),
            ("LUCID_S3_ACCESS_KEY_ID", self.s3_access_key.clone()),
            ("LUCID_S3_SECRET_ACCESS_KEY", self.s3_secret_key.clone()),
            ("LUCID_RABBIT_API", self.rabbit_api.clone()),
            ("LUCID_LOG", "info".into()),
            ("RUST_LOG", "info".into()),
            ("NO_COLOR", "1".into()),
        ]
    }

    /// `GET url` as text; panics on a transport error or a non-success status.
    pub fn get_text(&self, url: &str) -> String {
        let response = self
            .http
            .get(url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status();
        let text = response
            .text()
            .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
        assert!(status.is_success(), "GET {url} answered {status}: {text}");
        text
    }

    /// The HTTP status of `GET url`, `None` when nothing answers.
    pub fn get_status(&self, url: &str) -> Option<u16> {
        self.http.get(url).send().ok().map(|r| r.status().as_u16())
    }
}
