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

/// A fresh temporary folder.
pub fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().to_path_buf();
    (dir, path)
}
