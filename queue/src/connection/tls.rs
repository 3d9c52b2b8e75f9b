//! The TLS side of `amqps://` connections: the trusted CA chain from [`CA_FILE_ENV`], a probe that
//! finds a refused server at once, and the typed recognition of a TLS refusal.

use std::error::Error;
use std::io;

use lapin::ConnectionProperties;

use super::open_connection;
use crate::CA_FILE_ENV;

/// The PEM CA chain to trust for `uri`: the file [`CA_FILE_ENV`] names, for `amqps://` URIs only;
/// `None` when the variable is unset or empty (as for the S3 endpoint, empty counts as unset), which
/// leaves lapin's default roots. A file that cannot be read or holds no certificate is an error (its
/// message names the file), as lapin would skip it silently and trust the platform's roots.
pub(super) async fn ca_chain(uri: &str) -> Result<Option<String>, String> {
    let Some(path) = std::env::var_os(CA_FILE_ENV)
        .filter(|path| !path.is_empty() && uri.starts_with("amqps://"))
    else {
        return Ok(None);
    };
    let shown = path.to_string_lossy();
    let pem = tokio::fs::read_to_string(&path)
        .await
        .map_err(|e| format!("cannot read CA file {shown} (from {CA_FILE_ENV}): {e}"))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "CA file {shown} (from {CA_FILE_ENV}) holds no PEM CERTIFICATE block"
        ));
    }
    Ok(Some(pem))
}

/// One connect to `uri` without lapin's retries, closed at once. lapin retries every failed connect
/// for about 30 s, a TLS refusal included, which fails the same way every time: this finds it at
/// once. Returns the connect's error only when it is a TLS refusal ([`refusal`]); anything else (the
/// broker down, say) is for the retrying connect that follows.
pub(super) async fn probe(
    uri: &str,
    connection_name: &str,
    cert_chain: Option<String>,
) -> Option<lapin::Error> {
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("{connection_name}/tls-check").into());
    match open_connection(uri, properties, cert_chain).await {
        Ok(connection) => {
            if let Err(error) = connection.close(200, "OK".into()).await {
                tracing::debug!(%error, "closing the TLS check connection failed");
            }
            None
        }
        Err(error) if refusal(&error).is_some() => Some(error),
        Err(_) => None,
    }
}

/// The TLS layer's refusal of the handshake inside a failed connect's `error`, if that is what it
/// was: an untrusted, expired or wrongly named certificate (`invalid peer certificate:
/// UnknownIssuer`, `… NotValidForName`, `… Expired`), a fatal alert from the server, no common
/// protocol version or cipher. Any of these repeats on every attempt, so it is not worth retrying.
///
/// Typed, not read from the message: lapin keeps the I/O error of the TLS handshake as it is
/// (`ErrorKind::IOError`), and rustls-connector makes that an `io::Error` whose payload is the
/// `rustls::Error` itself. `io::Error::source` skips its payload, so payloads are visited explicitly,
/// at any depth. Any `rustls::Error` counts, as for the S3 client's `tls_refused` in `lucid-storage`:
/// in a connect it can only come from the handshake.
pub(super) fn refusal(error: &lapin::Error) -> Option<&rustls::Error> {
    find_rustls(error)
}

fn find_rustls<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let payload = error
        .downcast_ref::<io::Error>()
        .and_then(io::Error::get_ref);
    if let Some(tls) = payload.and_then(|payload| find_rustls(payload)) {
        return Some(tls);
    }
    error.source().and_then(find_rustls)
}

#[cfg(test)]
mod tests {
    use rustls::CertificateError;

    use super::*;
    use crate::QueueError;
    use crate::connection::connect_failure;
    use crate::uri::UriParts;

    /// A lapin connect error as the TLS handshake produces it: an `InvalidData` I/O error carrying
    /// the rustls error.
    fn handshake_error(tls: rustls::Error) -> lapin::Error {
        io::Error::new(io::ErrorKind::InvalidData, tls).into()
    }

    #[test]
    fn a_rustls_error_in_a_connect_is_a_tls_refusal() {
        let untrusted = handshake_error(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert!(matches!(
            refusal(&untrusted),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ));
        let alert = handshake_error(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure,
        ));
        assert!(refusal(&alert).is_some());
        // wrapped once more, as `io::Error::other` does
        let nested: lapin::Error = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        ))
        .into();
        assert!(refusal(&nested).is_some());
    }

    #[test]
    fn other_connect_errors_are_not_tls_refusals_whatever_they_say() {
        let refused: lapin::Error =
            io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused").into();
        assert!(refusal(&refused).is_none());
        // the word alone no longer counts: only the rustls type does
        let worded: lapin::Error = io::Error::other("certificate store locked").into();
        assert!(refusal(&worded).is_none());
        let state: lapin::Error = lapin::ErrorKind::NoDefaultRuntime.into();
        assert!(refusal(&state).is_none());
    }

    #[test]
    fn connect_failures_are_classified_once_and_scrubbed() {
        let uri = "amqps://guest:Sup3r-Secret@broker:5671/%2f";
        let parts = UriParts::parse(uri);
        let redacted = crate::redact_uri(uri);
        let untrusted = handshake_error(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        match connect_failure(&untrusted, &redacted, &parts) {
            QueueError::TlsRefused {
                uri_redacted,
                message,
            } => {
                assert_eq!(uri_redacted, "amqps://guest:***@broker:5671/%2f");
                let lower = message.to_lowercase();
                assert!(
                    lower.contains("invalid peer certificate") && lower.contains("unknownissuer"),
                    "{message}"
                );
            }
            other => panic!("expected TlsRefused, got {other:?}"),
        }
        let down: lapin::Error = io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "refused for guest:Sup3r-Secret",
        )
        .into();
        match connect_failure(&down, &redacted, &parts) {
            QueueError::Connect { message, .. } => {
                assert!(!message.contains("Sup3r-Secret"), "{message}");
            }
            other => panic!("expected Connect, got {other:?}"),
        }
    }
}
