//! Integration tests against a real RabbitMQ (3.10+ with the management plugin).
//!
//! Endpoints come from `LUCID_TEST_AMQP_URI` and `LUCID_TEST_RABBIT_API` (see `scripts/services.sh env`).
//! A test that cannot reach them fails under CI and is reported as skipped elsewhere (the one policy of
//! `lucid_testkit`). Every test declares its own queues and exchange under a unique suffix and deletes
//! them at the end.

mod support;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use lucid_proto::spec::RenderSection;
use lucid_proto::{DecodeError, Document, ModelLocation, TaskMessage};
use lucid_queue::{Broker, Consumer, Delivery, ManagementApi, QueueError, Topology};
use support::{amqp_uri, test_var, topology};

/// Whether the test broker (AMQP and management API) answers. When it does not, the test cannot run:
/// under CI it fails, elsewhere it is reported as skipped, and the caller returns.
fn broker_reachable() -> bool {
    lucid_testkit::require(&[lucid_testkit::RABBITMQ, lucid_testkit::RABBITMQ_MANAGEMENT]).is_some()
}

fn management() -> ManagementApi {
    ManagementApi::from_amqp_uri(&test_var("LUCID_TEST_RABBIT_API"), &amqp_uri())
}

fn task(run: &str, seed: u32, channel: u32) -> TaskMessage {
    TaskMessage::new(
        run.parse().expect("run id"),
        format!("seed_{seed:02}").parse().expect("seed id"),
        "mixed4a".parse().expect("layer"),
        channel,
        RenderSection::default().settings(),
        ModelLocation::parse("s3://models/seed").expect("model location"),
    )
}

/// A fresh topology for `test` and a broker connected to it; `None` when the test broker cannot be
/// reached ([`broker_reachable`]), and the test returns.
async fn fresh_broker(test: &str, delivery_limit: u32) -> Option<(Topology, Broker)> {
    if !broker_reachable() {
        return None;
    }
    let topology = topology(test, delivery_limit);
    let broker = connect(&topology).await;
    Some((topology, broker))
}

async fn connect(topology: &Topology) -> Broker {
    Broker::connect(&amqp_uri(), topology.clone())
        .await
        .unwrap_or_else(|e| panic!("connect to the test broker: {e}"))
}

/// Awaits `future` for at most `secs`, panicking with a message naming what was awaited.
async fn within<T>(secs: u64, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs} s waiting for {what}"))
}

async fn next_delivery(consumer: &mut Consumer, what: &str) -> Delivery {
    within(10, what, consumer.next())
        .await
        .unwrap_or_else(|| panic!("consumer ended while waiting for {what}"))
        .unwrap_or_else(|e| panic!("consumer error while waiting for {what}: {e}"))
}

/// True when no delivery arrives within `millis`.
async fn quiet(consumer: &mut Consumer, millis: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(millis), consumer.next())
        .await
        .is_err()
}

#[tokio::test]
async fn declares_twice_and_publishes_with_confirms() {
    let Some((topology, broker)) = fresh_broker("publish", 5).await else {
        return;
    };
    // declaring the same topology again is a no-op
    let again = connect(&topology).await;
    // ...but changing a queue argument is refused, naming the queue
    let mut changed = topology.clone();
    changed.delivery_limit = 9;
    let err = Broker::connect(&amqp_uri(), changed)
        .await
        .expect_err("redeclare with another delivery limit");
    match &err {
        QueueError::Declare { queue, .. } => assert_eq!(queue, &topology.tasks),
        other => panic!("expected a Declare error, got {other:?}"),
    }

    let tasks: Vec<TaskMessage> = (0..10_000)
        .map(|i| task("rate", i / 1000, i % 1000))
        .collect();
    let start = Instant::now();
    let confirmed = within(120, "10,000 confirms", broker.publish_tasks(&tasks, 1000))
        .await
        .expect("publish");
    let elapsed = start.elapsed();
    let rate = confirmed as f64 / elapsed.as_secs_f64();
    println!("published {confirmed} tasks with confirms in {elapsed:?}: {rate:.0} msgs/s");
    assert_eq!(confirmed, 10_000);

    let stats = again.stats(None).await.expect("stats");
    assert_eq!(stats.ready, 10_000);
    assert_eq!(stats.dead, 0);
    assert_eq!((stats.unacked, stats.consumers), (None, None));
    let stats = broker
        .stats(Some(&management()))
        .await
        .expect("stats with api");
    assert_eq!(stats.consumers, Some(0));

    // an oversized task is refused before it is sent
    let mut small = topology.clone();
    small.max_message_bytes = 10;
    let small = Broker::connect(&amqp_uri(), small).await.expect("connect");
    let err = small
        .publish_tasks(&tasks[..1], 10)
        .await
        .expect_err("oversized task");
    small.close().await.expect("close");
    assert!(
        matches!(&err, QueueError::Publish { task_id, message } if task_id == &tasks[0].task_id && message.contains("max_message_bytes")),
        "{err}"
    );

    broker.delete_topology().await.expect("delete topology");
    broker.close().await.expect("close");
    again.close().await.expect("close");
}

#[tokio::test]
async fn prefetch_ack_and_requeue() {
    let Some((_, broker)) = fresh_broker("prefetch", 10).await else {
        return;
    };
    let tasks: Vec<TaskMessage> = (0..20).map(|c| task("pre", 1, c)).collect();
    assert_eq!(broker.publish_tasks(&tasks, 8).await.expect("publish"), 20);

    let mut consumer = broker.consume("prefetch-test", 8).await.expect("consume");
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(next_delivery(&mut consumer, "the first 8 deliveries").await);
    }
    assert!(
        quiet(&mut consumer, 1500).await,
        "a 9th delivery arrived while 8 were unacked"
    );
    for d in &held {
        assert_eq!(d.delivery_count, 0);
        assert!(d.message_id.is_some());
        let decoded = d.decode(65_536).expect("decode");
        assert_eq!(Some(decoded.task_id().to_owned()), d.message_id);
    }

    // requeue one: it comes back with its delivery count incremented
    let requeued = held.pop().expect("a held delivery");
    requeued.requeue().await.expect("requeue");
    let mut seen = BTreeSet::new();
    let mut found = false;
    // the requeued message may come after the others; ack everything until it shows up
    while !found {
        let d = next_delivery(&mut consumer, "the requeued delivery").await;
        if d.message_id == requeued.message_id {
            assert_eq!(d.delivery_count, 1, "delivery count after one requeue");
            assert!(d.redelivered);
            found = true;
        } else {
            assert_eq!(d.delivery_count, 0);
        }
        assert!(
            seen.insert(d.message_id.clone()),
            "duplicate {:?}",
            d.message_id
        );
        d.ack().await.expect("ack");
    }
    // acking the held ones frees the prefetch window for the rest
    for d in held.drain(..) {
        assert!(seen.insert(d.message_id.clone()));
        d.ack().await.expect("ack");
    }
    while seen.len() < 20 {
        let d = next_delivery(&mut consumer, "the remaining deliveries").await;
        assert!(
            seen.insert(d.message_id.clone()),
            "duplicate {:?}",
            d.message_id
        );
        d.ack().await.expect("ack");
    }
    assert!(
        quiet(&mut consumer, 500).await,
        "a delivery after all 20 were acked"
    );
    // acked means gone
    let stats = broker.stats(None).await.expect("stats");
    assert_eq!((stats.ready, stats.dead), (0, 0));

    consumer.cancel().await.expect("cancel");
    assert!(
        within(5, "the end of the cancelled consumer", consumer.next())
            .await
            .is_none()
    );
    broker.delete_topology().await.expect("delete topology");
    broker.close().await.expect("close");
}

#[tokio::test]
async fn dead_letters_retry_and_cancel_run() {
    let Some((_, broker)) = fresh_broker("dead", 2).await else {
        return;
    };
    let failing = task("dl", 1, 0);
    let exhausted = task("dl", 1, 1);
    broker
        .publish_tasks(&[failing.clone(), exhausted.clone()], 10)
        .await
        .expect("publish");

    let mut consumer = broker.consume("dead-test", 1).await.expect("consume");
    let long_reason = format!("render failed: {}", "x".repeat(3000));
    let mut deliveries_of_exhausted = 0;
    let mut dead_lettered = false;
    // requeue `exhausted` until the broker gives it up (limit 2: deliveries 0, 1, 2, then dead)
    loop {
        let Ok(next) = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await else {
            break;
        };
        let d = next.expect("consumer open").expect("delivery");
        if d.message_id.as_deref() == Some(failing.task_id.as_str()) {
            d.dead_letter(&long_reason).await.expect("dead letter");
            dead_lettered = true;
        } else {
            assert_eq!(d.delivery_count, deliveries_of_exhausted);
            deliveries_of_exhausted += 1;
            d.requeue().await.expect("requeue");
        }
    }
    assert!(dead_lettered);
    assert_eq!(
        deliveries_of_exhausted, 3,
        "deliveries before the limit hit"
    );
    consumer.cancel().await.expect("cancel");

    let stats = broker.stats(None).await.expect("stats");
    assert_eq!((stats.ready, stats.dead), (0, 2));
    let letters = broker.peek_dead(10).await.expect("peek");
    assert_eq!(letters.len(), 2);
    let by_id = |id: &str| {
        letters
            .iter()
            .find(|l| l.message_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} not in the dead-letter queue"))
    };
    let worker = by_id(&failing.task_id);
    let reason = worker.reason.as_deref().expect("x-lucid-reason");
    assert_eq!(reason.len(), 1024, "reason truncated to 1 KiB");
    assert!(reason.starts_with("render failed: xxx"));
    assert_eq!(worker.deaths, 0);
    assert_eq!(
        TaskMessage::decode(&worker.body, 65_536).expect("body intact"),
        failing
    );
    let limit = by_id(&exhausted.task_id);
    assert_eq!(limit.reason.as_deref(), Some("delivery_limit"));
    assert!(limit.deaths >= 1);
    // peeking does not remove
    assert_eq!(broker.stats(None).await.expect("stats").dead, 2);

    assert_eq!(broker.retry_dead().await.expect("retry"), 2);
    let stats = broker.stats(None).await.expect("stats");
    assert_eq!((stats.ready, stats.dead), (2, 0));

    // cancel_run drops only that run's ready tasks
    let others: Vec<TaskMessage> = (0..7).map(|c| task("keep", 2, c)).collect();
    let doomed: Vec<TaskMessage> = (10..15).map(|c| task("dl", 2, c)).collect();
    broker.publish_tasks(&others, 100).await.expect("publish");
    broker.publish_tasks(&doomed, 100).await.expect("publish");
    assert_eq!(broker.cancel_run("dl").await.expect("cancel run"), 7);
    assert_eq!(broker.cancel_run("nosuchrun").await.expect("cancel run"), 0);
    let mut consumer = broker.consume("after-cancel", 50).await.expect("consume");
    let mut ids = BTreeSet::new();
    for _ in 0..7 {
        let d = next_delivery(&mut consumer, "the kept tasks").await;
        // retried and republished tasks start with a fresh delivery count
        assert_eq!(d.delivery_count, 0);
        ids.insert(d.decode(65_536).expect("decode").task_id().to_owned());
        d.ack().await.expect("ack");
    }
    assert!(quiet(&mut consumer, 500).await);
    let expected: BTreeSet<String> = others.iter().map(|t| t.task_id.clone()).collect();
    assert_eq!(ids, expected);

    broker.delete_topology().await.expect("delete topology");
    broker.close().await.expect("close");
}

#[tokio::test]
async fn malformed_bodies_decode_to_errors() {
    let Some((_, broker)) = fresh_broker("malformed", 5).await else {
        return;
    };
    broker.publish_raw(b"not json", "bad-1").await.expect("raw");
    broker
        .publish_raw(br#"{"schema_version": 7}"#, "bad-2")
        .await
        .expect("raw");
    broker
        .publish_raw(&vec![b' '; 70_000], "bad-3")
        .await
        .expect("raw");
    let mut consumer = broker.consume("", 10).await.expect("consume");
    assert!(consumer.tag().starts_with("amq.ctag"), "{}", consumer.tag());
    for _ in 0..3 {
        let d = next_delivery(&mut consumer, "raw messages").await;
        let err = d.decode(65_536).expect_err("malformed");
        match d.message_id.as_deref() {
            Some("bad-1") => assert!(matches!(err, DecodeError::Malformed { .. }), "{err}"),
            Some("bad-2") => assert_eq!(
                err,
                DecodeError::UnsupportedVersion {
                    document: Document::Task,
                    found: 7,
                    supported: 2,
                    oldest: 1,
                }
            ),
            Some("bad-3") => assert_eq!(
                err,
                DecodeError::TooLarge {
                    document: Document::Task,
                    len: 70_000,
                    max: 65_536
                }
            ),
            other => panic!("unexpected message {other:?}"),
        }
        d.dead_letter(&err.to_string()).await.expect("dead letter");
    }
    let letters = broker.peek_dead(10).await.expect("peek");
    assert_eq!(letters.len(), 3);
    assert!(letters.iter().all(|l| l.reason.is_some()));
    broker.delete_topology().await.expect("delete topology");
    broker.close().await.expect("close");
}

/// A server-side close of the consumer's connection: unacked deliveries go back to the queue, the old
/// deliveries are stale and report `AckLost`, and the same `Consumer` recovers (lapin's auto-recovery) and goes on.
#[tokio::test]
async fn consumer_recovers_after_server_closes_connection() {
    let Some((topology, publisher)) = fresh_broker("drop", 10).await else {
        return;
    };
    let worker = connect(&topology).await;
    let tasks: Vec<TaskMessage> = (0..10).map(|c| task("drop", 1, c)).collect();
    publisher.publish_tasks(&tasks, 10).await.expect("publish");

    let mut consumer = worker.consume("drop-test", 4).await.expect("consume");
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(next_delivery(&mut consumer, "deliveries before the drop").await);
    }
    assert!(
        held.iter().all(|d| !d.is_stale()),
        "fresh deliveries are not stale"
    );
    let api = management();
    // the management API lists a new connection after a short delay
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let closed = api
            .close_connections_named(worker.connection_name())
            .await
            .expect("management api");
        if closed > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connection {} never appeared in the management API",
            worker.connection_name()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // the consumer recovers and receives everything, the 4 unacked ones again
    let mut acked = BTreeSet::new();
    let mut redelivered = 0;
    while acked.len() < 10 {
        let next = within(60, "deliveries after the connection drop", consumer.next()).await;
        let d = next
            .expect("consumer ended")
            .unwrap_or_else(|e| panic!("consumer did not recover: {e}"));
        assert!(
            !d.is_stale(),
            "a delivery of the recovered channel is not stale"
        );
        if held.iter().any(|h| h.message_id == d.message_id) {
            redelivered += 1;
            assert!(d.redelivered);
            assert!(d.delivery_count >= 1);
        }
        d.ack().await.expect("ack after recovery");
        acked.insert(d.message_id.clone());
    }
    assert_eq!(redelivered, 4);
    // deliveries from before the drop are stale and cannot be acked any more
    for d in &held {
        assert!(d.is_stale(), "a delivery of the lost channel is stale");
        assert!(matches!(d.ack().await, Err(QueueError::AckLost)));
    }
    assert!(quiet(&mut consumer, 500).await);
    let stats = publisher.stats(None).await.expect("stats");
    assert_eq!(stats.ready, 0);

    publisher.delete_topology().await.expect("delete topology");
    publisher.close().await.expect("close");
    worker.close().await.expect("close");
}

/// Note: after a refused login lapin 4.12 leaves its I/O thread behind; when this test's runtime ends
/// that thread may print a "Task did not complete ... was cancelled" panic on stderr. It does not fail
/// the test (it is not the test's thread).
#[tokio::test]
async fn errors_never_show_the_password() {
    if !broker_reachable() {
        return;
    }
    let secret = "Sup3r-Secret-pw";
    let topology = topology("secret", 5);
    for uri in [
        // wrong password: the broker refuses the login
        format!("amqp://guest:{secret}@127.0.0.1:5672/%2f"),
        // not a valid URI (the port): the parser's message must not echo it
        format!("amqp://guest:{secret}@127.0.0.1:notaport/%2f"),
    ] {
        let err = within(
            120,
            "a failed connection",
            Broker::connect(&uri, topology.clone()),
        )
        .await
        .expect_err("connection must fail");
        let shown = format!("{err} / {err:?}");
        println!("{shown}");
        assert!(!shown.contains(secret), "password leaked: {shown}");
        assert!(
            matches!(&err, QueueError::Connect { uri_redacted, .. } if uri_redacted.contains("guest:***@127.0.0.1"))
        );
    }
    let api = ManagementApi::new("http://127.0.0.1:15672", "guest", secret);
    assert!(!format!("{api:?}").contains(secret));
    let err = api
        .queue_info("/", "nope")
        .await
        .expect_err("wrong password");
    assert!(!format!("{err} {err:?}").contains(secret));
    assert_eq!(
        lucid_queue::redact_uri(&format!("amqp://guest:{secret}@h:5672/%2f")),
        "amqp://guest:***@h:5672/%2f"
    );
}
