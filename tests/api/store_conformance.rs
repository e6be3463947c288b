//! The event store conformance suite: every backend behind
//! `hookwise::store::open` must pass all of it (see DESIGN.md, "Event store").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookwise::store::{
    subscribe_all, AppendResult, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError,
    Subscription,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use uuid::Uuid;

use crate::helpers::{store_backend_tests, Backend, TestDatabase};

use ExpectedVersion::{Any, Exact, NoStream, StreamExists};

store_backend_tests!(
    a_new_store_is_empty,
    stream_versions_start_at_zero_without_gaps,
    expected_any_accepts_a_missing_or_existing_stream,
    expected_no_stream_rejects_an_existing_stream,
    expected_stream_exists_rejects_a_missing_stream,
    expected_exact_version_must_match_the_last_version,
    an_empty_append_checks_the_expected_version_but_writes_nothing,
    reappending_the_same_event_ids_is_idempotent,
    an_append_mixing_stored_and_new_event_ids_is_rejected,
    an_event_id_stored_in_another_stream_is_rejected,
    an_event_id_twice_in_one_append_is_rejected,
    a_rejected_append_does_not_fail_the_appends_committed_with_it,
    read_stream_starts_at_from_version_and_honours_the_limit,
    read_all_is_exclusive_of_after_and_honours_the_limit,
    payloads_data_and_schema_versions_round_trip_exactly,
    head_is_the_last_committed_position,
    a_subscription_catches_up_then_follows_live_appends,
    a_subscription_sees_appends_made_through_another_instance,
    concurrent_appenders_and_a_tailing_subscriber_see_every_position_once,
    reopening_the_store_keeps_everything,
    appending_after_close_fails_with_closed,
);

/// How long a subscription may take to deliver an event that is committed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Helpers

async fn open(backend: Backend) -> Option<(TestDatabase, Arc<dyn EventStore>)> {
    let db = TestDatabase::create(backend).await?;
    let store = db.open_store().await;
    Some((db, store))
}

fn event(event_type: &str) -> NewEvent {
    let event_id = Uuid::new_v4();
    NewEvent {
        event_id,
        event_type: event_type.to_owned(),
        schema_version: 1,
        data: format!(r#"{{"id":"{event_id}"}}"#).into_bytes(),
        payload: None,
    }
}

fn events(count: usize) -> Vec<NewEvent> {
    (0..count).map(|i| event(&format!("Test{i}"))).collect()
}

fn ids_of(events: &[NewEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

fn recorded_ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(|e| e.event_id).collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position.0).collect()
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version).collect()
}

fn written(first: u64, stream_version: u64) -> AppendResult {
    AppendResult { first_position: Some(Position(first)), stream_version: Some(stream_version), already_stored: false }
}

fn already_stored(first: u64, stream_version: u64) -> AppendResult {
    AppendResult { first_position: Some(Position(first)), stream_version: Some(stream_version), already_stored: true }
}

async fn append(
    store: &Arc<dyn EventStore>,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> AppendResult {
    store
        .append(stream, expected, events.to_vec())
        .await
        .unwrap_or_else(|e| panic!("append to {stream} expecting {expected}: {e:?}"))
}

#[track_caller]
fn assert_wrong_version(
    result: Result<AppendResult, StoreError>,
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<u64>,
) {
    match result {
        Err(StoreError::WrongExpectedVersion { stream: s, expected: e, actual: a }) => assert_eq!(
            (s.as_str(), e, a),
            (stream, expected, actual),
            "WrongExpectedVersion (stream, expected, actual)"
        ),
        other => panic!(
            "expected WrongExpectedVersion {{ stream: {stream}, expected: {expected:?}, \
             actual: {actual:?} }}, got {other:?}"
        ),
    }
}

#[track_caller]
fn assert_duplicate(result: Result<AppendResult, StoreError>, event_id: Uuid) {
    match result {
        Err(StoreError::DuplicateEventId { event_id: id }) => {
            assert_eq!(id, event_id, "DuplicateEventId names the reused id")
        }
        other => panic!("expected DuplicateEventId {{ event_id: {event_id} }}, got {other:?}"),
    }
}

async fn head(store: &Arc<dyn EventStore>) -> u64 {
    store.head().await.expect("head").0
}

async fn read_all(store: &Arc<dyn EventStore>, after: u64, limit: usize) -> Vec<RecordedEvent> {
    store
        .read_all(Position(after), limit)
        .await
        .unwrap_or_else(|e| panic!("read_all after {after}, limit {limit}: {e:?}"))
}

async fn read_stream(store: &Arc<dyn EventStore>, stream: &str, from_version: u64, limit: usize) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, from_version, limit)
        .await
        .unwrap_or_else(|e| panic!("read_stream {stream} from {from_version}: {e:?}"))
}

async fn next_event(subscription: &mut Subscription) -> RecordedEvent {
    tokio::time::timeout(DELIVERY_TIMEOUT, subscription.next())
        .await
        .unwrap_or_else(|_| panic!("no event after position {} within {DELIVERY_TIMEOUT:?}", subscription.position()))
        .expect("subscription read")
}

// ---------------------------------------------------------------------------
// Appends and expected versions

async fn a_new_store_is_empty(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    assert_eq!(store.head().await.expect("head"), Position::START);
    assert!(read_all(&store, 0, 100).await.is_empty());
    assert!(read_stream(&store, "missing", 0, 100).await.is_empty());
    store.ping().await.expect("ping");
}

async fn stream_versions_start_at_zero_without_gaps(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let first = events(3);
    let second = events(2);
    let other = events(1);
    let third = events(1);
    assert_eq!(append(&store, "order-1", NoStream, &first).await, written(1, 2));
    assert_eq!(append(&store, "order-1", Exact(2), &second).await, written(4, 4));
    assert_eq!(append(&store, "order-2", Any, &other).await, written(6, 0));
    assert_eq!(append(&store, "order-1", StreamExists, &third).await, written(7, 5));

    let order1 = read_stream(&store, "order-1", 0, 100).await;
    assert_eq!(versions(&order1), [0, 1, 2, 3, 4, 5]);
    assert_eq!(positions(&order1), [1, 2, 3, 4, 5, 7]);
    let expected_ids: Vec<Uuid> = [&first, &second, &third].into_iter().flat_map(|batch| ids_of(batch)).collect();
    assert_eq!(recorded_ids(&order1), expected_ids);
    assert!(order1.iter().all(|e| e.stream == "order-1"));
    let types: Vec<&str> = order1.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Test0", "Test1", "Test2", "Test0", "Test1", "Test0"]);

    let order2 = read_stream(&store, "order-2", 0, 100).await;
    assert_eq!(versions(&order2), [0]);
    assert_eq!(positions(&order2), [6]);
    assert_eq!(order2[0].stream, "order-2");
    assert_eq!(recorded_ids(&order2), ids_of(&other));
}

async fn expected_any_accepts_a_missing_or_existing_stream(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    assert_eq!(append(&store, "s", Any, &events(1)).await, written(1, 0));
    assert_eq!(append(&store, "s", Any, &events(2)).await, written(2, 2));
    assert_eq!(versions(&read_stream(&store, "s", 0, 10).await), [0, 1, 2]);
}

async fn expected_no_stream_rejects_an_existing_stream(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    assert_eq!(append(&store, "s", NoStream, &events(1)).await, written(1, 0));
    assert_wrong_version(store.append("s", NoStream, events(1)).await, "s", NoStream, Some(0));
    append(&store, "s", Any, &events(2)).await;
    assert_wrong_version(store.append("s", NoStream, events(2)).await, "s", NoStream, Some(2));
    // A rejected append writes nothing.
    assert_eq!(head(&store).await, 3);
    assert_eq!(versions(&read_stream(&store, "s", 0, 10).await), [0, 1, 2]);
    // Another stream is still new.
    assert_eq!(append(&store, "t", NoStream, &events(1)).await, written(4, 0));
}

async fn expected_stream_exists_rejects_a_missing_stream(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    assert_wrong_version(store.append("s", StreamExists, events(1)).await, "s", StreamExists, None);
    assert_eq!(head(&store).await, 0);
    assert!(read_stream(&store, "s", 0, 10).await.is_empty());

    assert_eq!(append(&store, "s", NoStream, &events(1)).await, written(1, 0));
    assert_eq!(append(&store, "s", StreamExists, &events(1)).await, written(2, 1));
    assert_eq!(append(&store, "s", StreamExists, &events(2)).await, written(3, 3));
}

async fn expected_exact_version_must_match_the_last_version(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    assert_wrong_version(store.append("s", Exact(0), events(1)).await, "s", Exact(0), None);
    assert_eq!(head(&store).await, 0);

    assert_eq!(append(&store, "s", NoStream, &events(3)).await, written(1, 2));
    assert_eq!(append(&store, "s", Exact(2), &events(1)).await, written(4, 3));
    // Stale, ahead, and far behind.
    for stale in [2, 4, 10, 0] {
        assert_wrong_version(store.append("s", Exact(stale), events(1)).await, "s", Exact(stale), Some(3));
    }
    assert_eq!(head(&store).await, 4);
    assert_eq!(append(&store, "s", Exact(3), &events(2)).await, written(5, 5));
    assert_eq!(versions(&read_stream(&store, "s", 0, 10).await), [0, 1, 2, 3, 4, 5]);
    assert_eq!(head(&store).await, 6);
}

async fn an_empty_append_checks_the_expected_version_but_writes_nothing(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let nothing = AppendResult { first_position: None, stream_version: None, already_stored: false };
    assert_eq!(append(&store, "s", NoStream, &[]).await, nothing);
    assert_eq!(append(&store, "s", Any, &[]).await, nothing);
    assert_wrong_version(store.append("s", StreamExists, vec![]).await, "s", StreamExists, None);
    assert_eq!(head(&store).await, 0);
    assert!(read_stream(&store, "s", 0, 10).await.is_empty());

    append(&store, "s", NoStream, &events(1)).await;
    assert_eq!(
        append(&store, "s", Exact(0), &[]).await,
        AppendResult { first_position: None, stream_version: Some(0), already_stored: false }
    );
    assert_wrong_version(store.append("s", Exact(5), vec![]).await, "s", Exact(5), Some(0));
    assert_wrong_version(store.append("s", NoStream, vec![]).await, "s", NoStream, Some(0));
    assert_eq!(head(&store).await, 1);
}

// ---------------------------------------------------------------------------
// Event ids: idempotency and uniqueness

async fn reappending_the_same_event_ids_is_idempotent(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let batch = events(2);
    assert_eq!(append(&store, "s", NoStream, &batch).await, written(1, 1));
    assert_eq!(append(&store, "other", Any, &events(1)).await, written(3, 0));

    // A retry succeeds whatever it expects, and writes nothing.
    for expected in [NoStream, Exact(1), Exact(0), StreamExists, Any] {
        assert_eq!(append(&store, "s", expected, &batch).await, already_stored(1, 1), "retry expecting {expected}");
    }
    assert_eq!(head(&store).await, 3);

    let later = events(1);
    assert_eq!(append(&store, "s", Exact(1), &later).await, written(4, 2));
    // The result reports the stream's current version.
    assert_eq!(append(&store, "s", NoStream, &batch).await, already_stored(1, 2));
    // Retrying part of an append: the position of its first event.
    assert_eq!(append(&store, "s", Any, &batch[1..]).await, already_stored(2, 2));
    assert_eq!(append(&store, "s", Exact(0), &later).await, already_stored(4, 2));

    assert_eq!(head(&store).await, 4);
    let all = read_all(&store, 0, 100).await;
    assert_eq!(positions(&all), [1, 2, 3, 4]);
    let stream = read_stream(&store, "s", 0, 100).await;
    assert_eq!(recorded_ids(&stream), [batch[0].event_id, batch[1].event_id, later[0].event_id]);
    assert_eq!(versions(&stream), [0, 1, 2]);
}

async fn an_append_mixing_stored_and_new_event_ids_is_rejected(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let batch = events(2);
    append(&store, "s", NoStream, &batch).await;
    let fresh = event("Fresh");
    assert_duplicate(store.append("s", Any, vec![fresh.clone(), batch[1].clone()]).await, batch[1].event_id);
    assert_duplicate(store.append("s", Exact(1), vec![batch[0].clone(), fresh.clone()]).await, batch[0].event_id);
    assert_eq!(head(&store).await, 2);
    assert_eq!(recorded_ids(&read_stream(&store, "s", 0, 10).await), ids_of(&batch));
    // The fresh event was not stored, so it can still be appended.
    assert_eq!(append(&store, "s", Exact(1), &[fresh]).await, written(3, 2));
}

async fn an_event_id_stored_in_another_stream_is_rejected(backend: Backend) {
    if !backend.checks_event_ids_across_streams() {
        eprintln!("skipped: {backend} does not check event ids across streams (docs/decisions/kurrentdb.md)");
        return;
    }
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let stored = event("Stored");
    append(&store, "a", NoStream, std::slice::from_ref(&stored)).await;
    assert_duplicate(store.append("b", Any, vec![stored.clone()]).await, stored.event_id);
    assert_duplicate(store.append("b", NoStream, vec![event("Fresh"), stored.clone()]).await, stored.event_id);
    assert!(read_stream(&store, "b", 0, 10).await.is_empty());
    assert_eq!(head(&store).await, 1);
    assert_eq!(append(&store, "b", NoStream, &events(1)).await, written(2, 0));
}

async fn an_event_id_twice_in_one_append_is_rejected(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let twice = event("Twice");
    assert_duplicate(store.append("s", Any, vec![twice.clone(), event("Other"), twice.clone()]).await, twice.event_id);
    assert_eq!(head(&store).await, 0);
    assert!(read_stream(&store, "s", 0, 10).await.is_empty());
    assert_eq!(append(&store, "s", NoStream, &[twice]).await, written(1, 0));
}

/// Group commit must not turn one caller's mistake into everyone's failure:
/// appends sent together (and so likely committed in one transaction) each
/// get their own answer.
async fn a_rejected_append_does_not_fail_the_appends_committed_with_it(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let stored = event("Stored");
    append(&store, "existing", NoStream, std::slice::from_ref(&stored)).await;

    enum Kind {
        Good,
        WrongVersion,
        StoredElsewhere,
        Twice,
        NotUtf8,
    }
    const ROUNDS: usize = 5;
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..ROUNDS {
        for (n, kind) in [
            Kind::Good,
            Kind::WrongVersion,
            Kind::Good,
            Kind::StoredElsewhere,
            Kind::Good,
            Kind::Twice,
            Kind::Good,
            Kind::NotUtf8,
            Kind::Good,
        ]
        .into_iter()
        .enumerate()
        {
            let store = store.clone();
            let stored = stored.clone();
            tasks.spawn(async move {
                let stream = format!("s-{round}-{n}");
                let fresh = event("Fresh");
                let result = match kind {
                    Kind::Good => store.append(&stream, NoStream, vec![fresh.clone()]).await,
                    Kind::WrongVersion => store.append("existing", NoStream, vec![fresh]).await,
                    // Without a cross-stream check the event is simply written.
                    Kind::StoredElsewhere if !backend.checks_event_ids_across_streams() => {
                        store.append(&stream, Any, vec![fresh]).await
                    }
                    Kind::StoredElsewhere => store.append(&stream, Any, vec![stored]).await,
                    Kind::Twice => store.append(&stream, Any, vec![fresh.clone(), fresh.clone()]).await,
                    Kind::NotUtf8 => {
                        let mut bad = fresh;
                        bad.data = vec![b'"', 0xff, 0xfe, b'"'];
                        store.append(&stream, Any, vec![bad]).await
                    }
                };
                (kind, stream, result)
            });
        }
    }
    let mut good = 0;
    while let Some(joined) = tasks.join_next().await {
        let (kind, stream, result) = joined.expect("append task");
        match kind {
            Kind::Good => {
                let result = result.unwrap_or_else(|e| panic!("good append to {stream}: {e:?}"));
                assert_eq!(result.stream_version, Some(0));
                assert!(!result.already_stored);
                good += 1;
            }
            Kind::WrongVersion => assert_wrong_version(result, "existing", NoStream, Some(0)),
            Kind::StoredElsewhere if !backend.checks_event_ids_across_streams() => {
                result.unwrap_or_else(|e| panic!("append to {stream}: {e:?}"));
                good += 1;
            }
            Kind::StoredElsewhere => assert_duplicate(result, stored.event_id),
            Kind::Twice => assert!(
                matches!(result, Err(StoreError::DuplicateEventId { .. })),
                "an event id twice in one append: {result:?}"
            ),
            Kind::NotUtf8 => assert!(
                matches!(&result, Err(e) if !e.is_unavailable()),
                "data that is not UTF-8 is refused without blaming the store: {result:?}"
            ),
        }
    }
    let good_per_round = if backend.checks_event_ids_across_streams() { 5 } else { 6 };
    assert_eq!(good, ROUNDS * good_per_round);
    assert_eq!(head(&store).await, 1 + good as u64);
    let all = read_all(&store, 0, 1000).await;
    assert_eq!(positions(&all), (1..=1 + good as u64).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// Reads

/// Streams `s` (5 events) and `t` (2 events), interleaved:
/// s0 s1 t0 s2 s3 s4 t1 at positions 1..=7.
async fn interleaved(store: &Arc<dyn EventStore>) {
    append(store, "s", NoStream, &events(2)).await;
    append(store, "t", NoStream, &events(1)).await;
    append(store, "s", Exact(1), &events(3)).await;
    append(store, "t", Exact(0), &events(1)).await;
}

async fn read_stream_starts_at_from_version_and_honours_the_limit(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    interleaved(&store).await;
    let s = read_stream(&store, "s", 0, 100).await;
    assert_eq!(versions(&s), [0, 1, 2, 3, 4]);
    assert_eq!(positions(&s), [1, 2, 4, 5, 6]);

    let page = read_stream(&store, "s", 2, 2).await;
    assert_eq!(versions(&page), [2, 3]);
    assert_eq!(page, s[2..4]);
    assert_eq!(positions(&read_stream(&store, "s", 4, 10).await), [6]);
    assert!(read_stream(&store, "s", 5, 10).await.is_empty());
    assert!(read_stream(&store, "s", 0, 0).await.is_empty());
    assert!(read_stream(&store, "s", u64::MAX, 10).await.is_empty());
    assert_eq!(read_stream(&store, "s", 0, usize::MAX).await, s);
    assert_eq!(read_stream(&store, "s", 1, usize::MAX).await, s[1..]);

    let t = read_stream(&store, "t", 1, 1).await;
    assert_eq!((versions(&t), positions(&t), t[0].stream.as_str()), (vec![1], vec![7], "t"));
}

async fn read_all_is_exclusive_of_after_and_honours_the_limit(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    interleaved(&store).await;
    let all = read_all(&store, 0, 100).await;
    assert_eq!(positions(&all), [1, 2, 3, 4, 5, 6, 7]);
    let streams: Vec<(&str, u64)> = all.iter().map(|e| (e.stream.as_str(), e.version)).collect();
    assert_eq!(streams, [("s", 0), ("s", 1), ("t", 0), ("s", 2), ("s", 3), ("s", 4), ("t", 1)]);
    // The same records as the stream reads.
    let mut by_stream = read_stream(&store, "s", 0, 100).await;
    by_stream.extend(read_stream(&store, "t", 0, 100).await);
    by_stream.sort_by_key(|e| e.position);
    assert_eq!(by_stream, all);

    assert_eq!(positions(&read_all(&store, 2, 3).await), [3, 4, 5]);
    assert_eq!(positions(&read_all(&store, 6, 10).await), [7]);
    assert!(read_all(&store, 7, 10).await.is_empty());
    assert!(read_all(&store, 0, 0).await.is_empty());
    assert!(read_all(&store, u64::MAX, 10).await.is_empty());
    assert_eq!(read_all(&store, 0, usize::MAX).await, all);
    assert_eq!(read_all(&store, 3, usize::MAX).await, all[3..]);

    // Paging with the last position read sees everything once.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = read_all(&store, after, 2).await;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.position.0;
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

async fn payloads_data_and_schema_versions_round_trip_exactly(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let every_byte: Vec<u8> = (0..=255u8).chain([0xc3, 0x28, 0xff, 0x00, 0xed, 0xa0, 0x80]).collect();
    assert!(std::str::from_utf8(&every_byte).is_err());
    let mut large = vec![0u8; 1 << 20];
    rand::rng().fill_bytes(&mut large);

    let with = |event_type: &str, schema_version: u32, data: &str, payload: Option<Vec<u8>>| NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version,
        data: data.as_bytes().to_vec(),
        payload: payload.map(Bytes::from),
    };
    let sent = vec![
        with(
            "WebhookReceived",
            3,
            "{ \"emoji\": \"🦀\",\n  \"escaped\": \"a\\u0000b\\n\", \"n\": [1, 2.50, -3e2] }",
            Some(every_byte),
        ),
        with("Empty", 0, "{}", Some(Vec::new())),
        with("Événement✓", u32::MAX, "null", None),
        with("Large", 1, r#"{"size":1048576}"#, Some(large)),
        with("Spaces", 2, "  [ ]  ", Some(b"plain text body".to_vec())),
    ];

    let before = now_micros();
    assert_eq!(append(&store, "delivery-1", NoStream, &sent).await, written(1, 4));
    let after = now_micros();

    let check = |stored: &[RecordedEvent]| {
        assert_eq!(stored.len(), sent.len());
        for (i, (stored, sent)) in stored.iter().zip(&sent).enumerate() {
            assert_eq!(stored.event_id, sent.event_id, "event {i}: id");
            assert_eq!(stored.event_type, sent.event_type, "event {i}: type");
            assert_eq!(stored.schema_version, sent.schema_version, "event {i}: schema version");
            assert_eq!(stored.data, sent.data, "event {i}: data bytes");
            assert_eq!(stored.payload, sent.payload, "event {i}: payload bytes");
            assert_eq!(stored.position, Position(i as u64 + 1), "event {i}: position");
            assert_eq!(stored.version, i as u64, "event {i}: version");
            assert!(
                (before..=after).contains(&stored.recorded_at_micros),
                "event {i}: recorded at {} outside the append's {before}..={after}",
                stored.recorded_at_micros
            );
        }
    };
    check(&read_stream(&store, "delivery-1", 0, 100).await);
    check(&read_all(&store, 0, 100).await);

    // Without payloads: the same events, every payload left out.
    let bare = store.read_all_without_payloads(Position(1), 3).await.expect("read_all_without_payloads");
    let full = read_all(&store, 1, 3).await;
    assert_eq!(positions(&bare), vec![2, 3, 4]);
    for (bare, full) in bare.iter().zip(&full) {
        assert_eq!(bare.payload, None, "position {}: payload left out", bare.position);
        assert_eq!(RecordedEvent { payload: None, ..full.clone() }, *bare);
    }
}

fn now_micros() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    i64::try_from(since_epoch.as_micros()).expect("micros fit i64")
}

async fn head_is_the_last_committed_position(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    assert_eq!(head(&store).await, 0);
    let batch = events(2);
    append(&store, "s", NoStream, &batch).await;
    assert_eq!(head(&store).await, 2);
    let _ = store.append("s", NoStream, events(3)).await;
    assert_eq!(head(&store).await, 2, "a rejected append does not move the head");
    append(&store, "s", Any, &batch).await;
    assert_eq!(head(&store).await, 2, "an idempotent retry does not move the head");
    append(&store, "t", Any, &events(3)).await;
    assert_eq!(head(&store).await, 5);
}

// ---------------------------------------------------------------------------
// Subscriptions

async fn a_subscription_catches_up_then_follows_live_appends(backend: Backend) {
    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let early = events(5);
    append(&store, "a", NoStream, &early[..2]).await;
    append(&store, "b", NoStream, &early[2..]).await;

    let mut subscription = subscribe_all(store.clone(), Position(2));
    assert_eq!(subscription.position(), Position(2));
    for (position, sent) in (3..=5).zip(&early[2..]) {
        let received = next_event(&mut subscription).await;
        assert_eq!((received.position, received.event_id), (Position(position), sent.event_id));
    }
    assert_eq!(subscription.position(), Position(5));
    // Caught up: nothing more yet (and giving up waiting loses nothing).
    assert!(
        tokio::time::timeout(Duration::from_millis(100), subscription.next()).await.is_err(),
        "no event beyond the head"
    );

    let late = events(3);
    let appender = tokio::spawn({
        let store = store.clone();
        let late = late.clone();
        async move {
            for (i, event) in late.into_iter().enumerate() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let expected = if i == 0 { NoStream } else { Exact(i as u64 - 1) };
                store.append("c", expected, vec![event]).await.expect("live append");
            }
        }
    });
    for (position, sent) in (6..=8).zip(&late) {
        let received = next_event(&mut subscription).await;
        assert_eq!(
            (received.position, received.event_id, received.stream.as_str()),
            (Position(position), sent.event_id, "c")
        );
    }
    appender.await.expect("appender");
    assert_eq!(subscription.position(), Position(8));

    // From the start, a new subscription replays the same log.
    let mut replay = subscribe_all(store.clone(), Position::START);
    let mut replayed = Vec::new();
    for _ in 0..8 {
        replayed.push(next_event(&mut replay).await);
    }
    assert_eq!(replayed, read_all(&store, 0, 100).await);
}

async fn a_subscription_sees_appends_made_through_another_instance(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let first = db.open_store().await;
    let second = db.open_store().await;
    let mut subscription = subscribe_all(first.clone(), Position::START);

    let batch = events(2);
    assert_eq!(append(&second, "s", NoStream, &batch).await, written(1, 1));
    for (position, sent) in (1..=2).zip(&batch) {
        let received = next_event(&mut subscription).await;
        assert_eq!((received.position, received.event_id), (Position(position), sent.event_id));
    }
    // Both instances share versions and event ids.
    assert_wrong_version(first.append("s", Exact(0), events(1)).await, "s", Exact(0), Some(1));
    assert_eq!(append(&first, "s", NoStream, &batch).await, already_stored(1, 1));
    assert_eq!(append(&first, "s", Exact(1), &events(1)).await, written(3, 2));
    assert_eq!(next_event(&mut subscription).await.position, Position(3));
    assert_eq!(head(&second).await, 3);
    first.close().await;
    second.close().await;
}

// ---------------------------------------------------------------------------
// Concurrency

/// One successful append, as its caller saw it.
struct Appended {
    stream: String,
    ids: Vec<Uuid>,
    result: AppendResult,
}

/// Many writers with random pauses, some racing for the same streams with
/// exact expected versions (and retrying on conflict), while a subscriber
/// tails the log from the start: every position arrives exactly once and in
/// order, and exactly the appended events arrive.
async fn concurrent_appenders_and_a_tailing_subscriber_see_every_position_once(backend: Backend) {
    const TASKS: u64 = 16;
    const APPENDS_PER_TASK: u64 = 50;
    const SHARED_STREAMS: usize = 3;

    let Some((_db, store)) = open(backend).await else {
        return;
    };
    let seed: u64 = rand::random();
    eprintln!("{backend}: concurrency test seed {seed}");

    let (received_tx, mut received_rx) = tokio::sync::mpsc::unbounded_channel();
    let subscriber = tokio::spawn({
        let mut subscription = subscribe_all(store.clone(), Position::START);
        async move {
            loop {
                let event = subscription.next().await.expect("subscription read");
                if received_tx.send(event).is_err() {
                    return;
                }
            }
        }
    });

    let mut appenders = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        appenders.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ task.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let own = format!("own-{task}");
            let mut own_version: Option<u64> = None;
            let mut shared_known: [Option<u64>; SHARED_STREAMS] = [None; SHARED_STREAMS];
            let mut appended: Vec<Appended> = Vec::new();
            let mut conflicts = 0u64;
            for n in 0..APPENDS_PER_TASK {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..=4))).await;
                let batch: Vec<NewEvent> =
                    (0..rng.random_range(1..=3)).map(|i| event(&format!("T{task}N{n}I{i}"))).collect();
                let ids = ids_of(&batch);
                let choice = rng.random_range(0..20);
                let (stream, result) = if choice == 0 && !appended.is_empty() {
                    // A retry of an earlier append: nothing new is written.
                    let earlier = &appended[rng.random_range(0..appended.len())];
                    let retry: Vec<NewEvent> =
                        earlier.ids.iter().map(|&id| NewEvent { event_id: id, ..event("Retry") }).collect();
                    let result = append(&store, &earlier.stream, Any, &retry).await;
                    assert!(result.already_stored, "retry of {:?}", earlier.ids);
                    assert_eq!(result.first_position, earlier.result.first_position);
                    continue;
                } else if choice < 6 {
                    let expected = own_version.map_or(NoStream, Exact);
                    let result = append(&store, &own, expected, &batch).await;
                    own_version = result.stream_version;
                    (own.clone(), result)
                } else if choice < 16 {
                    let k = rng.random_range(0..SHARED_STREAMS);
                    let stream = format!("shared-{k}");
                    // The last version this task saw: often stale.
                    let mut expected = shared_known[k].map_or(NoStream, Exact);
                    let mut attempts = 0;
                    let result = loop {
                        match store.append(&stream, expected, batch.clone()).await {
                            Ok(result) => break result,
                            Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                                conflicts += 1;
                                attempts += 1;
                                assert!(attempts < 1000, "{stream}: no progress");
                                expected = actual.map_or(NoStream, Exact);
                            }
                            Err(e) => panic!("append to {stream}: {e:?}"),
                        }
                    };
                    shared_known[k] = result.stream_version;
                    (stream, result)
                } else {
                    let stream = format!("solo-{task}-{n}");
                    (stream.clone(), append(&store, &stream, NoStream, &batch).await)
                };
                assert!(!result.already_stored, "{stream}: fresh ids already stored");
                assert!(result.stream_version.zip(result.first_position).is_some(), "{stream}: {result:?}");
                appended.push(Appended { stream, ids, result });
            }
            (appended, conflicts)
        });
    }
    let mut appended = Vec::new();
    let mut conflicts = 0;
    while let Some(joined) = appenders.join_next().await {
        let (mine, my_conflicts) = joined.expect("appender task");
        appended.extend(mine);
        conflicts += my_conflicts;
    }
    assert!(conflicts > 0, "the test should make appenders race for shared streams");

    let total: usize = appended.iter().map(|a| a.ids.len()).sum();
    let mut received: Vec<RecordedEvent> = Vec::with_capacity(total);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while received.len() < total {
        let event = tokio::time::timeout_at(deadline, received_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the subscriber received {} of {total} events", received.len()))
            .expect("subscriber stopped");
        if let Some(last) = received.last() {
            assert!(event.position > last.position, "position {} arrived after {}", event.position, last.position);
        }
        received.push(event);
    }
    // Nothing beyond what was appended.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(received_rx.try_recv().is_err(), "an extra event arrived");
    subscriber.abort();

    // Every position exactly once, in order, and exactly the appended events.
    assert_eq!(positions(&received), (1..=total as u64).collect::<Vec<_>>());
    let received_ids: HashSet<Uuid> = received.iter().map(|e| e.event_id).collect();
    let appended_ids: HashSet<Uuid> = appended.iter().flat_map(|a| a.ids.clone()).collect();
    assert_eq!(received_ids.len(), total, "an event id arrived twice");
    assert_eq!(received_ids, appended_ids);
    assert_eq!(head(&store).await, total as u64);

    // Each append landed where its caller was told, in order, in its stream.
    let by_id: HashMap<Uuid, &RecordedEvent> = received.iter().map(|e| (e.event_id, e)).collect();
    for a in &appended {
        let first = by_id[&a.ids[0]];
        assert_eq!(Some(first.position), a.result.first_position);
        let last_version = a.result.stream_version.expect("written");
        let first_version = last_version + 1 - a.ids.len() as u64;
        for (i, id) in a.ids.iter().enumerate() {
            let event = by_id[id];
            assert_eq!(event.stream, a.stream);
            assert_eq!(event.version, first_version + i as u64);
            if i > 0 {
                assert!(event.position > by_id[&a.ids[i - 1]].position);
            }
        }
    }
    // Every stream's versions are 0, 1, 2, … in position order.
    let mut streams: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in &received {
        streams.entry(&event.stream).or_default().push(event.version);
    }
    for (stream, stream_versions) in &streams {
        assert_eq!(*stream_versions, (0..stream_versions.len() as u64).collect::<Vec<_>>(), "versions of {stream}");
    }
    assert_eq!(streams.keys().filter(|s| s.starts_with("shared-")).count(), SHARED_STREAMS);
}

// ---------------------------------------------------------------------------
// Lifecycle

async fn reopening_the_store_keeps_everything(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else {
        return;
    };
    let store = db.open_store().await;
    let first = vec![NewEvent {
        payload: Some(Bytes::from_static(b"\x00\xffraw body\xc3\x28")),
        schema_version: 2,
        ..event("WebhookReceived")
    }];
    append(&store, "delivery-1", NoStream, &first).await;
    interleaved(&store).await;
    let before = read_all(&store, 0, 100).await;
    assert_eq!(before.len(), 8);
    store.close().await;
    drop(store);

    let store = db.open_store().await;
    assert_eq!(read_all(&store, 0, 100).await, before);
    assert_eq!(head(&store).await, 8);
    assert_eq!(read_stream(&store, "delivery-1", 0, 10).await, before[..1]);
    // Versions, event ids and positions carry on where they were.
    assert_eq!(append(&store, "delivery-1", NoStream, &first).await, already_stored(1, 0));
    assert_wrong_version(store.append("s", Exact(3), events(1)).await, "s", Exact(3), Some(4));
    if backend.checks_event_ids_across_streams() {
        assert_duplicate(store.append("other", Any, first.clone()).await, first[0].event_id);
    }
    assert_eq!(append(&store, "s", Exact(4), &events(1)).await, written(9, 5));
    let after = read_all(&store, 0, 100).await;
    store.close().await;
    drop(store);

    // A third open migrates nothing and loses nothing.
    let store = db.open_store().await;
    assert_eq!(read_all(&store, 0, 100).await, after);
    assert_eq!(append(&store, "t", Exact(1), &events(1)).await, written(10, 2));
    store.close().await;
}

async fn appending_after_close_fails_with_closed(backend: Backend) {
    let Some((db, store)) = open(backend).await else {
        return;
    };
    append(&store, "s", NoStream, &events(1)).await;
    store.close().await;
    let result = store.append("s", Any, events(1)).await;
    assert!(matches!(result, Err(StoreError::Closed)), "{result:?}");
    // Closing twice does not hang.
    tokio::time::timeout(Duration::from_secs(5), store.close()).await.expect("second close returns");
    drop(store);
    // What was committed before closing is there.
    let reopened = db.open_store().await;
    assert_eq!(reopened.head().await.expect("head"), Position(1));
}
