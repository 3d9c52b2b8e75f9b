//! A set of input files read by name — a probe set: a local folder or an `s3://bucket/prefix` —
//! behind the same [`Store`] the results go through, so a folder and a bucket are listed, named and
//! read one way (the coordinator lists the set once; each worker reads its shard's files).

use lucid_proto::ModelLocation;
use lucid_proto::spec::{StorageKind, StorageSection};

use crate::{StorageError, Store};

/// The files below one location.
#[derive(Debug, Clone)]
pub struct FileSet {
    store: Store,
    /// The listing prefix inside the store: empty, or ending in `/`.
    prefix: String,
    location: String,
}

impl FileSet {
    /// The set at `location`; `storage` supplies an S3 location's endpoint and credentials (its
    /// bucket and prefix are replaced by the location's). Nothing is read yet.
    pub async fn open(
        location: &ModelLocation,
        storage: &StorageSection,
    ) -> Result<Self, StorageError> {
        let (store, prefix) = match location {
            ModelLocation::Local(path) => (Store::local(path.clone()), String::new()),
            ModelLocation::S3 { bucket, prefix } => {
                let mut section = storage.clone();
                section.kind = StorageKind::S3;
                section.bucket = Some(bucket.to_owned());
                section.prefix = String::new();
                let prefix = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{}/", prefix.trim_matches('/'))
                };
                (Store::from_section(&section).await?, prefix)
            }
        };
        Ok(FileSet {
            store,
            prefix,
            location: location.to_string(),
        })
    }

    /// The location, as the spec wrote it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Every file's name relative to the location, in byte order; a name with a segment starting
    /// with `.` (hidden files and folders) is left out.
    pub async fn list(&self) -> Result<Vec<String>, StorageError> {
        let keys = self.store.list(&self.prefix).await?;
        let mut names: Vec<String> = keys
            .into_iter()
            .filter_map(|key| key.strip_prefix(&self.prefix).map(str::to_owned))
            .filter(|name| !name.split('/').any(|s| s.starts_with('.')))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The bytes of file `name`; one that is gone since the listing is an error naming it.
    pub async fn read(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        let key = format!("{}{name}", self.prefix);
        self.store
            .get(&key)
            .await?
            .ok_or_else(|| StorageError::Model {
                location: format!("{}/{name}", self.location.trim_end_matches('/')),
                reason: "no such file (listed by the run, gone since)".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_folder_lists_below_itself_in_order_without_hidden_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        for name in ["b.jpg", "a/c.png", "a/.hidden.jpg", ".git/x", "z.txt"] {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, name).unwrap();
        }
        let set = FileSet::open(
            &ModelLocation::Local(dir.clone()),
            &StorageSection::default(),
        )
        .await
        .unwrap();
        assert_eq!(set.list().await.unwrap(), ["a/c.png", "b.jpg", "z.txt"]);
        assert_eq!(set.read("a/c.png").await.unwrap(), b"a/c.png");
        let gone = set.read("gone.jpg").await.unwrap_err().to_string();
        assert!(
            gone.contains("gone.jpg") && gone.contains("no such file"),
            "{gone}"
        );
    }
}
