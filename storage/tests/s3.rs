//! The S3 backend against the real SeaweedFS (`LUCID_TEST_S3_ENDPOINT`), including retries across an
//! outage and their bound.

mod common;

use std::time::{Duration, Instant};

use common::{assert_store_contract, bucket_of, drop_bucket, s3_section, test_s3, unique_bucket};
use lucid_storage::{Credentials, S3Store, StorageError, Store};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn s3_round_trip() {
    let Some(s3) = test_s3() else {
        return;
    };
    let store = s3.fresh_store().await;
    // idempotent: a second call finds the bucket
    store.ensure_bucket().await.unwrap();
    assert_eq!(store.describe(), format!("s3://{}/", bucket_of(&store)));
    assert_store_contract(&store).await;
    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_list_paginates_past_1000_keys() {
    let Some(s3) = test_s3() else {
        return;
    };
    let store = s3.fresh_store().await;
    let mut expected: Vec<String> = (0..1100)
        .map(|i| format!("run/seed/layer{}/{i:04}.png", i % 3))
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    for key in expected.clone() {
        let store = store.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            store.put(&key, vec![1, 2, 3], "image/png").await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    // a foreign object outside the prefix is not listed
    store
        .put("other/x.json", b"{}".to_vec(), "application/json")
        .await
        .unwrap();

    expected.sort();
    let listed = store.list("run/").await.unwrap();
    assert_eq!(listed.len(), 1100);
    assert_eq!(listed, expected);
    assert_eq!(store.list("").await.unwrap().len(), 1101);

    drop_bucket(&store).await;
}

#[tokio::test]
async fn s3_wrong_secret_fails_at_once_without_leaking_it() {
    let Some(s3) = test_s3() else {
        return;
    };
    let good = s3.fresh_store().await;
    let bucket = bucket_of(&good);
    let secret = format!("wrong-secret-{:016x}", rand::random::<u64>());
    let bad = Store::S3(
        S3Store::new(
            &s3_section(&s3.endpoint, &bucket, 30),
            Credentials {
                access_key_id: s3.credentials.access_key_id.clone(),
                secret_access_key: secret.clone(),
            },
        )
        .unwrap(),
    );

    let start = Instant::now();
    let errors = [
        bad.put("run/0001.png", vec![1], "image/png")
            .await
            .unwrap_err(),
        bad.get("run/0001.png").await.unwrap_err(),
        bad.list("run/").await.unwrap_err(),
        bad.ensure_bucket().await.unwrap_err(),
    ];
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "auth failures must not be retried: {:?}",
        start.elapsed()
    );
    for err in &errors {
        let shown = err.to_string();
        let debug = format!("{err:?}");
        assert!(!err.is_transient(), "{shown}");
        assert!(
            matches!(err, StorageError::S3 { attempts: 1, .. }),
            "{debug}"
        );
        assert!(shown.contains(&bucket), "{shown}");
        assert!(!shown.contains(&secret), "{shown}");
        assert!(!debug.contains(&secret), "{debug}");
        assert!(!format!("{bad:?}").contains(&secret));
    }
    assert!(
        errors[0].to_string().contains("SignatureDoesNotMatch"),
        "{}",
        errors[0]
    );
    eprintln!("wrong-secret error: {}", errors[0]);

    drop_bucket(&good).await;
}

#[tokio::test]
async fn s3_missing_bucket_fails_at_once() {
    let Some(s3) = test_s3() else {
        return;
    };
    // (SeaweedFS creates a missing bucket on PutObject for an admin identity, so put is not checked)
    let bucket = unique_bucket();
    let store = s3.store(&bucket, 30);
    let start = Instant::now();
    let errors = [
        store.get("run/0001.png").await.unwrap_err(),
        store.list("run/").await.unwrap_err(),
        store.delete("run/0001.png").await.unwrap_err(),
    ];
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    for err in &errors {
        assert!(!err.is_transient(), "{err}");
        assert!(err.to_string().contains("NoSuchBucket"), "{err}");
    }
    assert_eq!(
        errors[0].to_string(),
        format!(
            "s3 get s3://{bucket}/run/0001.png failed after 1 attempt: \
             http 404 NoSuchBucket: The specified bucket does not exist"
        )
    );
}

/// A port nothing listens on (bound, then released).
async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn s3_retries_are_bounded() {
    // needs no service: nothing listens on the port, so every attempt is refused
    let port = free_port().await;
    let section = s3_section(&format!("http://127.0.0.1:{port}"), "lucid-unreachable", 3);
    let store = Store::S3(
        S3Store::new(
            &section,
            Credentials {
                access_key_id: "ak".into(),
                secret_access_key: "sk".into(),
            },
        )
        .unwrap(),
    );
    let start = Instant::now();
    let err = store
        .put("run/0001.png", vec![1], "image/png")
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    eprintln!("after {elapsed:?}: {err}");
    assert!(err.is_transient(), "{err}");
    let StorageError::S3 { attempts, .. } = &err else {
        panic!("expected an s3 error: {err:?}")
    };
    assert!(
        *attempts >= 3,
        "at least two retries, got {attempts} attempts"
    );
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    assert!(
        err.to_string()
            .contains("s3://lucid-unreachable/run/0001.png"),
        "{err}"
    );
}

/// Forwards every connection on `listener` to `target`, byte for byte.
async fn proxy(listener: TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn s3_put_survives_an_outage() {
    let Some(s3) = test_s3() else {
        return;
    };
    let real = s3.fresh_store().await;
    let bucket = bucket_of(&real);
    let target = s3
        .endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();

    // The store's endpoint refuses connections for 2 s, then a proxy to SeaweedFS comes up there.
    let port = free_port().await;
    let flaky = Store::S3(
        S3Store::new(
            &s3_section(&format!("http://127.0.0.1:{port}"), &bucket, 30),
            s3.credentials.clone(),
        )
        .unwrap(),
    );
    let outage = Duration::from_secs(2);
    let proxy_task = tokio::spawn(async move {
        tokio::time::sleep(outage).await;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy port after the outage");
        proxy(listener, target).await;
    });

    let start = Instant::now();
    flaky
        .put("run/0001.png", b"survived".to_vec(), "image/png")
        .await
        .unwrap();
    let elapsed = start.elapsed();
    eprintln!("put succeeded after {elapsed:?}");
    assert!(elapsed >= outage, "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert_eq!(
        real.get("run/0001.png").await.unwrap(),
        Some(b"survived".to_vec())
    );
    assert_eq!(
        flaky.get("run/0001.png").await.unwrap(),
        Some(b"survived".to_vec())
    );

    proxy_task.abort();
    drop_bucket(&real).await;
}
