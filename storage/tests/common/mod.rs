//! Helpers shared by the integration tests: the test S3 service from the environment, unique buckets.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;

use lucid_proto::spec::{StorageKind, StorageSection};
use lucid_storage::{Credentials, S3Store, Store};

/// The test SeaweedFS: endpoint and credentials from `scripts/services.sh env`.
pub struct TestS3 {
    pub endpoint: String,
    pub credentials: Credentials,
}

/// The test S3 service, or `None` when the test cannot reach it: then under CI the test fails, and
/// elsewhere it is reported as skipped (the one policy of `lucid_testkit`) and the caller returns.
pub fn test_s3() -> Option<TestS3> {
    let settings = lucid_testkit::require(&[lucid_testkit::SEAWEEDFS])?;
    Some(TestS3 {
        endpoint: settings.get("LUCID_TEST_S3_ENDPOINT").to_owned(),
        credentials: Credentials {
            access_key_id: settings.get("LUCID_TEST_S3_ACCESS_KEY").to_owned(),
            secret_access_key: settings.get("LUCID_TEST_S3_SECRET_KEY").to_owned(),
        },
    })
}

/// A bucket name no other test (or earlier run) uses.
pub fn unique_bucket() -> String {
    format!("lucid-test-{:016x}", rand::random::<u64>())
}

/// An S3 storage section for `bucket` at `endpoint`.
pub fn s3_section(endpoint: &str, bucket: &str, retry_for_secs: u64) -> StorageSection {
    StorageSection {
        kind: StorageKind::S3,
        endpoint: Some(endpoint.to_owned()),
        bucket: Some(bucket.to_owned()),
        retry_for_secs,
        ..StorageSection::default()
    }
}

impl TestS3 {
    /// A store for a fresh bucket (created).
    pub async fn fresh_store(&self) -> Store {
        let store = self.store(&unique_bucket(), 30);
        store.ensure_bucket().await.expect("create test bucket");
        store
    }

    /// A store for `bucket` with the test credentials.
    pub fn store(&self, bucket: &str, retry_for_secs: u64) -> Store {
        Store::S3(
            S3Store::new(
                &s3_section(&self.endpoint, bucket, retry_for_secs),
                self.credentials.clone(),
            )
            .expect("build s3 store"),
        )
    }
}

/// Deletes every object and then the bucket, so test runs do not pile up collections in SeaweedFS.
pub async fn drop_bucket(store: &Store) {
    let Store::S3(s3) = store else {
        return;
    };
    let keys = store.list("").await.expect("list bucket for cleanup");
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in keys.chunks(64) {
        let store = store.clone();
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            for key in chunk {
                store.delete(&key).await.expect("delete for cleanup");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("cleanup task");
    }
    s3.client()
        .delete_bucket()
        .bucket(s3.bucket())
        .send()
        .await
        .expect("delete test bucket");
}

/// The bucket of an S3 store.
pub fn bucket_of(store: &Store) -> String {
    match store {
        Store::S3(s3) => s3.bucket().to_owned(),
        other => panic!("expected an s3 store, got {}", other.describe()),
    }
}

/// A fresh temporary folder.
pub fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// The keys [`assert_store_contract`] writes: two runs, one with two models.
pub const CONTRACT_KEYS: [&str; 5] = [
    "run1/seed_a/conv1/0007.png",
    "run1/seed_a/conv1/0007.json",
    "run1/seed_b/conv1/0001.png",
    "run1/run.json",
    "run2/run.json",
];

/// What every backend promises, checked on an empty `store`: each key of [`CONTRACT_KEYS`] reads back
/// what was put (a PNG or JSON body by its extension) with its content type and size; a missing key
/// is `None`; listing is sorted and by prefix (not by folder); an overwrite replaces; a delete
/// removes and deleting again is fine; bad keys are refused before any I/O.
pub async fn assert_store_contract(store: &Store) {
    use lucid_storage::{StorageError, content_type_for};
    let png = b"\x89PNG\r\n\x1a\nnot really".to_vec();
    let json = br#"{"channel":7}"#.to_vec();
    let body = |key: &str| {
        if key.ends_with(".png") {
            png.clone()
        } else {
            json.clone()
        }
    };
    let keys = CONTRACT_KEYS;
    for key in keys {
        store
            .put(key, body(key), content_type_for(key))
            .await
            .expect("put");
    }
    for key in keys {
        assert_eq!(store.get(key).await.expect("get"), Some(body(key)), "{key}");
        let head = store.head(key).await.expect("head").expect("present");
        assert_eq!(
            (head.size, head.content_type.as_deref()),
            (body(key).len() as u64, Some(content_type_for(key))),
            "{key}"
        );
        assert!(store.exists(key).await.expect("exists"), "{key}");
    }
    let missing = "run1/seed_a/conv1/0008.png";
    assert_eq!(store.get(missing).await.expect("get missing"), None);
    assert!(!store.exists(missing).await.expect("exists missing"));
    assert!(store.head(missing).await.expect("head missing").is_none());

    let listed = |prefix: &'static str| async move { store.list(prefix).await.expect("list") };
    let run1 = [keys[3], keys[1], keys[0], keys[2]];
    assert_eq!(listed("run1/").await, run1);
    assert_eq!(listed("run1/seed_").await, run1[1..]);
    assert_eq!(listed("run").await.len(), keys.len());
    assert_eq!(listed("").await.len(), keys.len());
    assert!(listed("run3/").await.is_empty());

    store
        .put(keys[0], b"v2".to_vec(), "image/png")
        .await
        .expect("overwrite");
    assert_eq!(store.get(keys[0]).await.expect("get"), Some(b"v2".to_vec()));
    store.delete(keys[0]).await.expect("delete");
    assert!(!store.exists(keys[0]).await.expect("exists"));
    assert_eq!(store.get(keys[0]).await.expect("get deleted"), None);
    store
        .delete(keys[0])
        .await
        .expect("deleting what is not there");

    for bad in ["/abs", "a/../b", "a\nb", ""] {
        let err = store.put(bad, vec![1], "image/png").await.expect_err(bad);
        assert!(
            matches!(&err, StorageError::InvalidKey { key, .. } if key == bad),
            "{bad:?}: {err}"
        );
    }
}
