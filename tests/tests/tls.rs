//! `amqps://` and `https://` with a private CA, through the real binaries.
//!
//! The test makes a CA and a server certificate for `localhost` and 127.0.0.1 at run time (rcgen),
//! puts a TLS-terminating `socat` (OpenSSL) in front of the test RabbitMQ and the SeaweedFS S3
//! gateway, and runs a small sweep whose spec says `amqps://127.0.0.1:PORT/%2f` and
//! `https://localhost:PORT`, with `LUCID_CA_FILE` naming the CA: `submit`, one `serve` worker and
//! `verify` must pass. Without the CA, or trusting another one, `submit` must fail with a
//! certificate error for either protocol, at once, and a missing CA file or one without a
//! certificate must be named at once.
//! `socat` is installed by `scripts/services.sh start`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lucid_e2e::{
    EnvChange, ProcessGuard, Services, SweepConfig, TestRun, free_port, tail, wait_until,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The variable both clients read the trusted CA bundle from.
const CA_FILE_ENV: &str = "LUCID_CA_FILE";

/// How long `submit` may take to fail when the server's certificate is refused (S3 or AMQP), or the
/// CA file is missing or holds no certificate: none of these is retried (each repeats on every
/// connection; lapin's retrying connect is preceded by one attempt without retries for `amqps://`),
/// so this is start-up time, with six `submit`s starting at once. Before that first attempt, an
/// amqps refusal took lapin's reconnect backoff, about 30 s.
const REFUSED_AT_ONCE_WITHIN: Duration = Duration::from_secs(15);

#[test]
fn amqps_and_https_with_a_private_ca() {
    let Some(services) = Services::from_env() else {
        return;
    };
    let started = Instant::now();
    let pki = tempfile::Builder::new()
        .prefix("lucid-e2e-tls-")
        .tempdir()
        .expect("cannot create a temp dir for the certificates");
    let certs = Certificates::write(pki.path());

    let amqp_front = TlsFrontEnd::start(
        "amqps-front",
        &certs,
        &host_port(&services.amqp_uri),
        pki.path(),
    );
    let s3_front = TlsFrontEnd::start(
        "https-front",
        &certs,
        &host_port(&services.s3_endpoint),
        pki.path(),
    );

    // the run's spec and LUCID_AMQP_URI follow these: amqps by IP address, https by host name
    let mut tls_services = services.clone();
    tls_services.amqp_uri = with_authority(&services.amqp_uri, "amqps", amqp_front.port);
    tls_services.s3_endpoint = format!("https://localhost:{}", s3_front.port);
    let run = TestRun::new(&tls_services, "tls", SweepConfig::conv1(4, 4, 4));
    let spec = std::fs::read_to_string(&run.spec).expect("cannot read the spec back");
    assert!(
        spec.contains(&format!(
            "uri = \"amqps://127.0.0.1:{}/%2f\"",
            amqp_front.port
        )) && spec.contains(&format!(
            "endpoint = \"https://localhost:{}\"",
            s3_front.port
        )),
        "the spec should name the TLS front-ends:\n{spec}"
    );
    let ca = certs.ca.to_str().expect("temp paths are UTF-8");
    let other_ca = certs.other_ca.to_str().expect("temp paths are UTF-8");
    let ca_set = format!("storage.ca_file={ca}");

    // ---- negative: submit refuses an untrusted server. S3 is opened before AMQP, so the amqps
    // cases let S3 trust the CA through `storage.ca_file`, which also shows that it wins over
    // LUCID_CA_FILE. The cases run at once.
    let missing_path = pki.path().join("missing-ca.pem");
    let missing = missing_path.to_str().expect("temp paths are UTF-8");
    let no_ca: [EnvChange<'_>; 1] = [(CA_FILE_ENV, None)];
    let wrong_ca = [(CA_FILE_ENV, Some(other_ca))];
    let missing_ca = [(CA_FILE_ENV, Some(missing))];
    // a PEM file, but no certificate in it: the key file named by mistake
    let key_file = certs.server_key.to_str().expect("temp paths are UTF-8");
    let key_as_ca = [(CA_FILE_ENV, Some(key_file))];
    let s3_trusts_ca = [ca_set.as_str()];
    type Case<'a> = (&'a str, &'a [&'a str], &'a [EnvChange<'a>], Duration);
    let cases: [Case<'_>; 6] = [
        (
            "https without a CA file",
            &[],
            &no_ca,
            REFUSED_AT_ONCE_WITHIN,
        ),
        (
            "https with another CA",
            &[],
            &wrong_ca,
            REFUSED_AT_ONCE_WITHIN,
        ),
        (
            "amqps without a CA file",
            &s3_trusts_ca,
            &no_ca,
            REFUSED_AT_ONCE_WITHIN,
        ),
        (
            "amqps with another CA",
            &s3_trusts_ca,
            &wrong_ca,
            REFUSED_AT_ONCE_WITHIN,
        ),
        (
            "amqps with a missing CA file",
            &s3_trusts_ca,
            &missing_ca,
            REFUSED_AT_ONCE_WITHIN,
        ),
        (
            "amqps with a key file as CA file",
            &s3_trusts_ca,
            &key_as_ca,
            REFUSED_AT_ONCE_WITHIN,
        ),
    ];
    let failures: Vec<String> = std::thread::scope(|scope| {
        let run = &run;
        let handles: Vec<_> = cases
            .iter()
            .map(|&(what, sets, env, within)| {
                scope.spawn(move || submit_fails(run, what, sets, env, within))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a negative check failed (see above)"))
            .collect()
    });
    let untrusted = |what: &str, failed: &str| {
        let lower = failed.to_lowercase();
        assert!(
            lower.contains("invalid peer certificate") && lower.contains("unknownissuer"),
            "{what}: submit should say the server certificate is not trusted:\n{failed}"
        );
    };
    for (&(what, ..), failed) in cases.iter().zip(&failures).take(2) {
        untrusted(what, failed);
        assert!(
            failed.contains("s3 head bucket s3://lucid-e2e/"),
            "{what}: the error should say it was the S3 store:\n{failed}"
        );
        assert!(
            !failed.contains(&services.s3_secret_key),
            "{what}: the S3 secret must not be shown:\n{failed}"
        );
    }
    let broker = format!(
        "connect to amqps://guest:***@127.0.0.1:{}/%2f",
        amqp_front.port
    );
    for (&(what, ..), failed) in cases.iter().zip(&failures).skip(2).take(2) {
        untrusted(what, failed);
        assert!(
            failed.contains(&broker),
            "{what}: the error should name the (redacted) broker URI {broker:?}:\n{failed}"
        );
    }
    assert!(
        failures[4].contains(&format!(
            "cannot read CA file {missing} (from {CA_FILE_ENV})"
        )),
        "a missing CA file should be named with the variable that named it:\n{}",
        failures[4]
    );
    assert!(
        failures[5].contains(&format!(
            "CA file {key_file} (from {CA_FILE_ENV}) holds no PEM CERTIFICATE block"
        )),
        "a CA file without a certificate should be refused, naming it:\n{}",
        failures[5]
    );

    // ---- positive: submit, one worker, verify, all trusting the private CA
    let trust = [(CA_FILE_ENV, Some(ca))];
    let mut worker = run.start_worker("worker-tls", &[], &[(CA_FILE_ENV, ca.to_string())]);
    run.wait_ready(&mut worker);
    let submitted = run.coordinator_with_env("submit", &[], &["--json"], &trust);
    let submitted = lucid_e2e::run::json_document(
        submitted.expect_success("lucid-coordinator submit over TLS"),
    );
    assert_eq!(
        (&submitted["published"], &submitted["expected"]),
        (&4.into(), &4.into()),
        "{submitted}"
    );
    run.wait_verified_with_env(Duration::from_secs(180), &trust);
    let verify = run.coordinator_with_env("verify", &[], &["--json"], &trust);
    let report = lucid_e2e::run::json_document(verify.expect_success("verify over TLS"));
    // 4 PNGs + 4 sidecars + run.json, nothing else
    assert_eq!(
        (
            &report["complete"],
            &report["listed"],
            &report["violations"]
        ),
        (&4.into(), &9.into(), &serde_json::json!([])),
        "verify report: {report}"
    );
    assert_eq!(worker.tasks("ok"), 4.0, "the worker rendered every task");
    assert_eq!(worker.tasks("failed"), 0.0);
    assert_eq!(worker.tasks("dead_lettered"), 0.0);
    // and the bytes really went through the front-ends
    for front in [&amqp_front, &s3_front] {
        assert!(
            front.handshakes() > 0,
            "{} completed no TLS handshake; stderr:\n{}",
            front.process.name(),
            tail(&front.process.stderr(), 20)
        );
    }
    eprintln!("tls sweep took {:?}", started.elapsed());
}

/// Runs `submit` with `sets` and `env`, asserts it fails (non-zero, within `within`) and returns
/// its stdout and stderr together.
fn submit_fails(
    run: &TestRun,
    what: &str,
    sets: &[&str],
    env: &[EnvChange<'_>],
    within: Duration,
) -> String {
    let began = Instant::now();
    let output = run.coordinator_with_env("submit", sets, &[], env);
    let took = began.elapsed();
    let text = format!("{}\n{}", output.stdout, output.stderr);
    assert!(
        !output.status.success(),
        "{what}: submit should fail, but it exited with {}:\n{text}",
        output.status
    );
    assert!(
        took < within,
        "{what}: submit took {took:?} to fail (at most {within:?}):\n{}",
        tail(&text, 20)
    );
    eprintln!(
        "{what}: submit failed in {took:?}: {}",
        tail(&output.stderr, 1)
    );
    text
}

/// `host:port` of a URI such as `amqp://user:pass@127.0.0.1:5672/%2f` or `http://127.0.0.1:8333`.
fn host_port(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// `uri` with scheme `scheme` and host `127.0.0.1:port`, keeping its user, password and path.
fn with_authority(uri: &str, scheme: &str, port: u16) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (format!("{userinfo}@"), rest),
        None => (String::new(), rest),
    };
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    format!("{scheme}://{userinfo}127.0.0.1:{port}{path}")
}

// ------------------------------------------------------------------------------- certificates

/// The PEM files the test writes.
struct Certificates {
    /// The private CA the clients are told to trust.
    ca: PathBuf,
    /// Another CA, which did not sign the server certificate.
    other_ca: PathBuf,
    /// The server certificate (`localhost`, 127.0.0.1) signed by [`Certificates::ca`].
    server_cert: PathBuf,
    /// Its private key.
    server_key: PathBuf,
}

impl Certificates {
    fn write(dir: &Path) -> Self {
        let ca = make_ca("lucid-e2e test CA");
        let other = make_ca("lucid-e2e other CA");
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("valid subject alt names");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("cannot generate the server key");
        let server = params
            .signed_by(&key, &ca)
            .expect("cannot sign the server certificate");
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        };
        Self {
            ca: write("ca.pem", ca.pem()),
            other_ca: write("other-ca.pem", other.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server.key", key.serialize_pem()),
        }
    }
}

/// A self-signed CA certificate named `name`, with its key.
fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names to check");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("cannot generate a CA key");
    CertifiedIssuer::self_signed(params, key).expect("cannot self-sign the CA")
}

// ------------------------------------------------------------------------------ TLS front-ends

/// A `socat` process terminating TLS on `127.0.0.1:port` with the test's server certificate and
/// forwarding the plain bytes to a service. Killed on drop.
struct TlsFrontEnd {
    process: ProcessGuard,
    port: u16,
}

impl TlsFrontEnd {
    /// Starts `socat` forwarding `127.0.0.1:{free port}` (TLS) to `target` (`host:port`, plain TCP)
    /// and waits until it listens.
    fn start(name: &str, certs: &Certificates, target: &str, log_dir: &Path) -> Self {
        // the one policy for a missing program: fails under CI, else says SKIPPED (and the test
        // then fails here, since it cannot go on without its front-end)
        let socat = lucid_testkit::require_program(
            "socat",
            None,
            "install it with scripts/services.sh start tools (or apt-get install socat)",
        )
        .unwrap_or_else(|| panic!("socat is needed as the TLS-terminating front-end"));
        let port = free_port();
        let mut command = Command::new(socat);
        command.args([
            "-d".into(),
            "-d".into(),
            format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
                certs.server_cert.display(),
                certs.server_key.display()
            ),
            format!("TCP:{target}"),
        ]);
        let mut process = ProcessGuard::spawn(name, command, log_dir);
        wait_until(
            Duration::from_secs(10),
            &format!("{name} (socat) to listen on 127.0.0.1:{port}"),
            || {
                if let Some(status) = process.try_wait() {
                    panic!(
                        "{name} (socat) exited with {status}; stderr:\n{}",
                        tail(&process.stderr(), 20)
                    );
                }
                process.stderr().contains("listening on")
            },
        );
        Self { process, port }
    }

    /// TLS handshakes it completed so far (from its `-d -d` log).
    fn handshakes(&self) -> usize {
        self.process
            .stderr()
            .matches("SSL connection using")
            .count()
    }
}
