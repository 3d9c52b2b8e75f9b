//! Credential resolution through the real process environment. Everything that touches the
//! environment is in this one test of this one binary: setting variables while another thread reads
//! them is not safe.

mod common;

use std::path::Path;

use common::{drop_bucket, s3_section, temp_dir, test_s3, unique_bucket};
use lucid_storage::{
    ACCESS_KEY_ENV, AWS_ACCESS_KEY_ENV, AWS_SECRET_KEY_ENV, Credentials, SECRET_KEY_ENV,
    StorageError, Store,
};

const VARS: [&str; 4] = [
    ACCESS_KEY_ENV,
    SECRET_KEY_ENV,
    AWS_ACCESS_KEY_ENV,
    AWS_SECRET_KEY_ENV,
];

fn set(name: &str, value: &str) {
    // SAFETY: this binary's only test runs on one thread and nothing else reads the environment
    // concurrently (see the module docs).
    unsafe { std::env::set_var(name, value) }
}

fn clear_all() {
    for name in VARS {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(name) }
    }
}

fn resolve(file: Option<&Path>) -> Result<Credentials, StorageError> {
    Credentials::resolve(file)
}

#[tokio::test(flavor = "current_thread")]
async fn credentials_from_env_and_files() {
    let saved: Vec<(&str, Option<String>)> =
        VARS.iter().map(|v| (*v, std::env::var(v).ok())).collect();
    let (_guard, dir) = temp_dir();
    let plain = dir.join("plain");
    std::fs::write(
        &plain,
        "# lucid keys\naccess_key_id = file-ak\nsecret_access_key = file-sk\n",
    )
    .unwrap();
    let aws = dir.join("aws-credentials");
    std::fs::write(
        &aws,
        "[default]\naws_access_key_id=aws-file-ak\naws_secret_access_key=aws-file-sk\n",
    )
    .unwrap();
    let half = dir.join("half");
    std::fs::write(&half, "access_key_id=only-the-id\n").unwrap();

    clear_all();

    // nothing anywhere: the message lists where it looked
    let msg = resolve(None).unwrap_err().to_string();
    for place in [
        ACCESS_KEY_ENV,
        SECRET_KEY_ENV,
        AWS_ACCESS_KEY_ENV,
        "storage.credentials_file",
    ] {
        assert!(msg.contains(place), "{msg}");
    }

    // files, both formats
    let c = resolve(Some(&plain)).unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.secret_access_key.as_str()),
        ("file-ak", "file-sk")
    );
    let c = resolve(Some(&aws)).unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.secret_access_key.as_str()),
        ("aws-file-ak", "aws-file-sk")
    );
    let msg = resolve(Some(&half)).unwrap_err().to_string();
    assert!(
        msg.contains("secret_access_key") && msg.contains("half"),
        "{msg}"
    );
    let missing = dir.join("missing");
    match resolve(Some(&missing)).unwrap_err() {
        StorageError::Io { path, .. } => assert_eq!(path, missing),
        other => panic!("expected an io error, got {other:?}"),
    }

    // the AWS variables win over the file
    set(AWS_ACCESS_KEY_ENV, "aws-env-ak");
    set(AWS_SECRET_KEY_ENV, "aws-env-sk");
    let c = resolve(Some(&plain)).unwrap();
    assert_eq!(c.access_key_id, "aws-env-ak");

    // the project's variables win over the AWS ones
    set(ACCESS_KEY_ENV, "lucid-env-ak");
    set(SECRET_KEY_ENV, "lucid-env-sk");
    let c = resolve(Some(&plain)).unwrap();
    assert_eq!(
        (c.access_key_id.as_str(), c.secret_access_key.as_str()),
        ("lucid-env-ak", "lucid-env-sk")
    );
    assert!(!format!("{c:?}").contains("lucid-env-sk"));

    // half a pair is a mistake, not a fall-through
    clear_all();
    set(ACCESS_KEY_ENV, "lucid-env-ak");
    let msg = resolve(Some(&plain)).unwrap_err().to_string();
    assert!(msg.contains(SECRET_KEY_ENV), "{msg}");
    clear_all();

    // Store::from_section resolves from storage.credentials_file end to end
    if let Some(s3) = test_s3() {
        let file = dir.join("test-keys");
        std::fs::write(
            &file,
            format!(
                "access_key_id={}\nsecret_access_key={}\n",
                s3.credentials.access_key_id, s3.credentials.secret_access_key
            ),
        )
        .unwrap();
        let mut section = s3_section(&s3.endpoint, &unique_bucket(), 30);
        section.credentials_file = Some(file);
        let store = Store::from_section(&section).await.unwrap();
        store.ensure_bucket().await.unwrap();
        store
            .put("k/0001.png", b"png".to_vec(), "image/png")
            .await
            .unwrap();
        assert_eq!(
            store.get("k/0001.png").await.unwrap(),
            Some(b"png".to_vec())
        );
        drop_bucket(&store).await;

        // no credentials at all: from_section says where it looked
        section.credentials_file = None;
        let err = Store::from_section(&section).await.unwrap_err();
        assert!(matches!(err, StorageError::Credentials(_)), "{err}");
    }

    for (name, value) in saved {
        match value {
            Some(v) => set(name, &v),
            // SAFETY: as in `set`.
            None => unsafe { std::env::remove_var(name) },
        }
    }
}
