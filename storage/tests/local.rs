//! The local-folder backend: round trip, atomic writes, keys that would escape the root, I/O errors.

mod common;

use std::path::Path;

use common::{CONTRACT_KEYS, assert_store_contract, temp_dir};
use lucid_proto::spec::{StorageKind, StorageSection};
use lucid_storage::{StorageError, Store};

/// Every file below `dir`, as paths relative to it.
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.push(
                    entry
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn local_round_trip() {
    let (_guard, dir) = temp_dir();
    let root = dir.join("nested/out");
    let store = Store::local(&root);
    assert_eq!(store.describe(), root.display().to_string());
    store.ensure_bucket().await.unwrap();
    store.ensure_bucket().await.unwrap();
    assert!(root.is_dir());

    assert_store_contract(&store).await;
    // an object is a file under the root, and a folder is not an object
    let key = CONTRACT_KEYS[2];
    assert_eq!(
        std::fs::read(root.join(key)).unwrap(),
        store.get(key).await.unwrap().unwrap()
    );
    assert!(!store.exists("run1/seed_a").await.unwrap());
    assert!(
        Store::local(dir.join("never-created"))
            .list("")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn local_puts_leave_no_partial_files() {
    let (_guard, dir) = temp_dir();
    let store = Store::local(&dir);
    let mut tasks = tokio::task::JoinSet::new();
    // many writers of the same key and of distinct keys at once
    for i in 0..40u8 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .put("run/seed/conv1/0000.png", vec![i; 4096], "image/png")
                .await?;
            store
                .put(
                    &format!("run/seed/conv1/{i:04}.json"),
                    vec![i],
                    "application/json",
                )
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    let files = files_below(&dir);
    // 0000.png plus 0000.json to 0039.json
    assert_eq!(files.len(), 41, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| !f.contains(".lucid-tmp-") && !f.ends_with(".tmp")),
        "{files:?}"
    );
    // the shared key holds one writer's bytes, whole
    let bytes = store.get("run/seed/conv1/0000.png").await.unwrap().unwrap();
    assert_eq!(bytes.len(), 4096);
    assert!(bytes.iter().all(|b| *b == bytes[0]));

    // a leftover temporary file from a crashed writer is not listed
    std::fs::write(dir.join("run/seed/conv1/.lucid-tmp-0-0001.png"), b"x").unwrap();
    assert_eq!(store.list("run/").await.unwrap().len(), 41);
}

#[tokio::test]
async fn local_refuses_keys_that_escape_the_root() {
    let (_guard, dir) = temp_dir();
    let root = dir.join("root");
    let store = Store::local(&root);
    store.ensure_bucket().await.unwrap();
    for key in [
        "../escaped.png",
        "a/../../escaped.png",
        "/tmp/escaped.png",
        "a/./b.png",
        "a//b.png",
        "a/\0.png",
        "a/\n.png",
        "",
        "..",
    ] {
        let err = store.put(key, vec![1], "image/png").await.unwrap_err();
        assert!(
            matches!(&err, StorageError::InvalidKey { key: k, .. } if k == key),
            "{key:?}: {err}"
        );
        assert!(err.to_string().starts_with("invalid object key"), "{err}");
        assert!(store.get(key).await.is_err(), "{key:?}");
        assert!(store.exists(key).await.is_err(), "{key:?}");
        assert!(store.delete(key).await.is_err(), "{key:?}");
    }
    assert!(store.list("../").await.is_err());
    assert!(store.list("/").await.is_err());
    assert_eq!(files_below(&dir), Vec::<String>::new());
}

#[tokio::test]
async fn local_io_errors_name_the_path() {
    let (_guard, dir) = temp_dir();
    // the root lies below a regular file: no folder can be made there, root or not
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let store = Store::local(blocker.join("out"));
    let err = store
        .put("run/0001.png", vec![1], "image/png")
        .await
        .unwrap_err();
    match &err {
        StorageError::Io { path, .. } => assert!(path.starts_with(&blocker), "{err}"),
        other => panic!("expected an io error, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(
        shown.starts_with("failed to create folder ") && shown.contains("blocker"),
        "{shown}"
    );
    let err = store.ensure_bucket().await.unwrap_err();
    assert!(err.to_string().contains("blocker/out"), "{err}");
    assert!(!err.is_transient());

    // a read-only folder (not enforced for root, so checked only where it bites)
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let probe = std::fs::write(ro.join("probe"), b"x");
        if probe.is_err() {
            let err = Store::local(&ro)
                .put("0001.png", vec![1], "image/png")
                .await
                .unwrap_err();
            let shown = err.to_string();
            assert!(
                shown.starts_with("failed to write ") && shown.contains("ro/0001.png"),
                "{shown}"
            );
        } else {
            eprintln!("running as root: read-only folder check skipped");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[tokio::test]
async fn local_from_section() {
    let (_guard, dir) = temp_dir();
    let section = StorageSection {
        kind: StorageKind::Local,
        local_dir: Some(dir.clone()),
        ..StorageSection::default()
    };
    let store = Store::from_section(&section).await.unwrap();
    assert!(matches!(store, Store::Local(_)));
    store
        .put("a.json", b"{}".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(store.list("").await.unwrap(), vec!["a.json"]);

    let section = StorageSection {
        kind: StorageKind::Local,
        ..StorageSection::default()
    };
    let err = Store::from_section(&section).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid storage config storage.local_dir: required for local storage"
    );
}
