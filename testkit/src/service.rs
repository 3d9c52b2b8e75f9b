//! The test services, the variables naming them and the check that a test can reach them.

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::skip_or_fail;

/// How long the reachability probe waits for a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A service some tests need, as `scripts/services.sh` provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Its name in messages.
    pub name: &'static str,
    /// The variable holding its address (a URL or URI), which must answer a TCP connection.
    pub address_var: &'static str,
    /// Further variables the tests read with it (credentials, folders); they must be set too.
    pub setting_vars: &'static [&'static str],
    /// The argument of `scripts/services.sh start` that starts it.
    pub start: &'static str,
}

/// The AMQP side of the test RabbitMQ (the URI holds the test credentials).
pub const RABBITMQ: Service = Service {
    name: "RabbitMQ (AMQP)",
    address_var: "LUCID_TEST_AMQP_URI",
    setting_vars: &[],
    start: "rabbitmq",
};

/// The management API of the test RabbitMQ.
pub const RABBITMQ_MANAGEMENT: Service = Service {
    name: "RabbitMQ management API",
    address_var: "LUCID_TEST_RABBIT_API",
    setting_vars: &["LUCID_TEST_RABBIT_USER", "LUCID_TEST_RABBIT_PASSWORD"],
    start: "rabbitmq",
};

/// The test S3 server (SeaweedFS) and its admin credentials.
pub const SEAWEEDFS: Service = Service {
    name: "SeaweedFS (S3)",
    address_var: "LUCID_TEST_S3_ENDPOINT",
    setting_vars: &["LUCID_TEST_S3_ACCESS_KEY", "LUCID_TEST_S3_SECRET_KEY"],
    start: "seaweedfs",
};

/// The test Prometheus and the `file_sd` folder it scrapes.
pub const PROMETHEUS: Service = Service {
    name: "Prometheus",
    address_var: "LUCID_TEST_PROMETHEUS",
    setting_vars: &["LUCID_TEST_PROM_TARGETS_DIR"],
    start: "prometheus",
};

/// The values of the variables of the services [`require`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<&'static str, String>,
}

impl Settings {
    /// The value of `var`, one of the required services' variables.
    ///
    /// # Panics
    /// If `var` is not one of them: the test asked for a service it did not require.
    pub fn get(&self, var: &str) -> &str {
        self.values.get(var).map_or_else(
            || panic!("{var} is not a variable of the services this test required"),
            String::as_str,
        )
    }
}

/// The settings of `services` when every variable is set and every address answers a TCP
/// connection. Otherwise the test cannot run: [`skip_or_fail`] reports every service that is missing
/// (failing under CI) and this returns `None`, and the caller returns.
pub fn require(services: &[Service]) -> Option<Settings> {
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    let mut starts: Vec<&str> = Vec::new();
    for service in services {
        match check(service) {
            Ok(found) => values.extend(found),
            Err(problem) => {
                problems.push(problem);
                if !starts.contains(&service.start) {
                    starts.push(service.start);
                }
            }
        }
    }
    if problems.is_empty() {
        return Some(Settings { values });
    }
    let fix = format!(
        "start {} and export the settings: scripts/services.sh start {} && source <(scripts/services.sh env)",
        if problems.len() == 1 { "it" } else { "them" },
        if starts.len() == 1 { starts[0] } else { "all" }
    );
    skip_or_fail(&problems.join("; "), &fix);
    None
}

/// The service's variables, or why the test cannot use it.
fn check(service: &Service) -> Result<Vec<(&'static str, String)>, String> {
    let unset: Vec<&str> = std::iter::once(service.address_var)
        .chain(service.setting_vars.iter().copied())
        .filter(|var| var_value(var).is_none())
        .collect();
    if !unset.is_empty() {
        return Err(format!(
            "{} unreachable (set {})",
            service.name,
            unset.join(", ")
        ));
    }
    let address = var_value(service.address_var).unwrap_or_default();
    let authority = authority(&address).ok_or_else(|| {
        format!(
            "{} unreachable ({} is not a URL with a host: {:?})",
            service.name,
            service.address_var,
            without_userinfo(&address)
        )
    })?;
    if !answers(&authority) {
        return Err(format!(
            "{} unreachable at {authority} (from {})",
            service.name, service.address_var
        ));
    }
    Ok(std::iter::once(service.address_var)
        .chain(service.setting_vars.iter().copied())
        .map(|var| (var, var_value(var).unwrap_or_default()))
        .collect())
}

/// The value of `var` when it is set and not blank.
fn var_value(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// `host:port` of a URL or URI (`scheme://[user[:password]@]host[:port][/…]`), with the scheme's
/// port when none is given.
fn authority(address: &str) -> Option<String> {
    let (scheme, rest) = address.trim().split_once("://")?;
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = host_port
        .rsplit_once('@')
        .map_or(host_port, |(_, host)| host);
    // a port follows the last `:` unless that colon is inside an IPv6 literal `[…]`
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.contains(']') && !port.is_empty());
    if host_port.is_empty() || host_port.starts_with(':') {
        return None;
    }
    if has_port {
        return Some(host_port.to_owned());
    }
    let port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        "amqp" => 5672,
        "amqps" => 5671,
        _ => return None,
    };
    Some(format!("{host_port}:{port}"))
}

/// The address without `user:password@`, for messages.
fn without_userinfo(address: &str) -> String {
    match address.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => address.to_owned(),
    }
}

/// Whether something accepts a TCP connection at `authority` within [`PROBE_TIMEOUT`].
fn answers(authority: &str) -> bool {
    let Ok(addresses) = authority.to_socket_addrs() else {
        return false;
    };
    addresses
        .into_iter()
        .any(|address| TcpStream::connect_timeout(&address, PROBE_TIMEOUT).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_urls_and_uris() {
        let cases = [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                Some("127.0.0.1:5672"),
            ),
            ("amqps://u:p@broker/%2f", Some("broker:5671")),
            ("http://127.0.0.1:8333", Some("127.0.0.1:8333")),
            ("https://localhost/", Some("localhost:443")),
            ("http://[::1]:9090/x", Some("[::1]:9090")),
            ("http://[::1]", Some("[::1]:80")),
            ("127.0.0.1:5672", None),
            ("ftp://host", None),
            ("http://:80", None),
        ];
        for (address, want) in cases {
            assert_eq!(authority(address).as_deref(), want, "{address}");
        }
    }

    #[test]
    fn messages_never_show_credentials() {
        assert_eq!(
            without_userinfo("amqp://guest:hunter2@127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
    }

    #[test]
    fn a_closed_port_does_not_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let authority = listener.local_addr().expect("address").to_string();
        assert!(answers(&authority));
        drop(listener);
        assert!(!answers(&authority));
    }
}
