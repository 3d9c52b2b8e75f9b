//! The test S3 server through `lucid-storage`: uploading models, reading results.

use std::path::Path;

use super::Services;

impl Services {
    /// A store for `bucket` of the test S3 server, with the test credentials, and a runtime to
    /// drive it.
    fn s3_store(&self, bucket: &str) -> (lucid_storage::Store, tokio::runtime::Runtime) {
        let section = lucid_proto::spec::StorageSection {
            kind: lucid_proto::spec::StorageKind::S3,
            endpoint: Some(self.s3_endpoint.clone()),
            bucket: Some(bucket.to_owned()),
            retry_for_secs: 30,
            ..lucid_proto::spec::StorageSection::default()
        };
        let credentials = lucid_storage::Credentials {
            access_key_id: self.s3_access_key.clone(),
            secret_access_key: self.s3_secret_key.clone(),
        };
        let store = lucid_storage::Store::S3(
            lucid_storage::S3Store::new(&section, credentials).expect("an S3 store"),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        (store, runtime)
    }

    /// Uploads every file of the folder `dir` to `s3://{bucket}/{prefix}/{file name}` (the bucket is
    /// created if needed) and returns that location, as a spec's `[models]` names it.
    pub fn upload_model(&self, dir: &Path, bucket: &str, prefix: &str) -> String {
        let (store, runtime) = self.s3_store(bucket);
        runtime.block_on(async {
            store
                .ensure_bucket()
                .await
                .expect("create the model bucket");
            let entries = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                store
                    .put(
                        &format!("{prefix}/{name}"),
                        bytes,
                        "application/octet-stream",
                    )
                    .await
                    .unwrap_or_else(|e| panic!("cannot upload {}: {e}", path.display()));
            }
        });
        format!("s3://{bucket}/{prefix}")
    }

    /// The bytes of `s3://{bucket}/{key}`, `None` when there is no such object.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (store, runtime) = self.s3_store(bucket);
        runtime
            .block_on(store.get(key))
            .unwrap_or_else(|e| panic!("cannot get s3://{bucket}/{key}: {e}"))
    }
}
