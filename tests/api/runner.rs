//! The runner that carries event handlers along the log, on both backends,
//! with handlers of the test's own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hookwise::runner::{
    claim_checkpoint, is_checkpoint_conflict, move_checkpoint, run_handlers, save_checkpoint, Checkpoint, EventHandler,
    HandlerError, CHECKPOINT_MIGRATIONS,
};
use hookwise::sql::{Migration, SqlDb, Statement};
use hookwise::sql_params;
use hookwise::store::{EventStore, ExpectedVersion, NewEvent, RecordedEvent};
use tokio::sync::watch;

use crate::helpers::{backend_tests, eventually, read_whole_log, Backend, TestDatabase};

backend_tests!(
    a_handler_far_behind_catches_up_alone_while_the_others_follow_the_log,
    a_moved_checkpoint_is_recognised_by_the_engines_error_code,
);

/// How long the runner gets to apply what the test expects.
const WAIT: Duration = Duration::from_secs(20);

const APPLIED: &[Migration] = &[(
    1,
    "CREATE TABLE runner_test_applied (handler TEXT NOT NULL, position BIGINT NOT NULL, PRIMARY KEY (handler, position))",
)];

/// Records each event it applies in `runner_test_applied`; a plain insert, so
/// applying an event twice fails its batch for good. With a gate, waits at
/// every event until the gate opens.
struct Recorder {
    name: &'static str,
    gate: Option<watch::Receiver<bool>>,
}

#[async_trait]
impl EventHandler for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }

    fn migrations(&self) -> &'static [Migration] {
        &[]
    }

    fn reads_payloads(&self) -> bool {
        false
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        if let Some(gate) = &self.gate {
            gate.clone().wait_for(|open| *open).await.expect("the test keeps the gate");
        }
        Ok(vec![Statement::new(
            "INSERT INTO runner_test_applied (handler, position) VALUES (?, ?)",
            sql_params![self.name, event.position.0],
        )])
    }
}

async fn append(store: &dyn EventStore, count: usize) {
    let events = (0..count)
        .map(|_| NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: "RunnerTestEvent".into(),
            schema_version: 1,
            data: b"{}".to_vec(),
            payload: None,
        })
        .collect();
    store
        .append(&format!("runner-test-{}", uuid::Uuid::new_v4()), ExpectedVersion::NoStream, events)
        .await
        .expect("append");
}

async fn applied(db: &SqlDb, handler: &str) -> Vec<u64> {
    let rows = db
        .query("SELECT position FROM runner_test_applied WHERE handler = ? ORDER BY position", sql_params![handler])
        .await
        .expect("reading what was applied");
    rows.iter().map(|row| row.get::<u64>(0).expect("a position")).collect()
}

async fn a_handler_far_behind_catches_up_alone_while_the_others_follow_the_log(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let store = database.open_store().await;
    let db = SqlDb::connect(&database.url).await.expect("SQL database");
    db.migrate("checkpoints", CHECKPOINT_MIGRATIONS).await.expect("checkpoints");
    db.migrate("runner_test", APPLIED).await.expect("the test's table");

    // A history far longer than the gap that splits a reading; one handler
    // has applied it all, the other none of it (reset by a schema change, say).
    append(store.as_ref(), 1_500).await;
    let history: Vec<u64> = read_whole_log(store.as_ref()).await.iter().map(|e| e.position.0).collect();
    let head = *history.last().expect("the history");
    db.write(vec![save_checkpoint("ahead", hookwise::store::Position(head))]).await.expect("checkpoint");
    let (open_gate, gate) = watch::channel(false);
    let handlers: Vec<Arc<dyn EventHandler>> =
        vec![Arc::new(Recorder { name: "ahead", gate: None }), Arc::new(Recorder { name: "behind", gate: Some(gate) })];
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(run_handlers(store.clone(), db.clone(), handlers, stopped));

    // While the one behind is held at its very first event, the one ahead
    // still applies what arrives.
    append(store.as_ref(), 1).await;
    let live = read_whole_log(store.as_ref()).await.last().expect("the new event").position.0;
    eventually(WAIT, "the handler ahead applies the new event", || async { applied(&db, "ahead").await == [live] })
        .await;
    assert_eq!(applied(&db, "behind").await, Vec::<u64>::new());

    // Let go, the one behind applies the whole log once, in order, and then
    // follows with the other.
    open_gate.send(true).expect("the gate");
    append(store.as_ref(), 1).await;
    let whole: Vec<u64> = read_whole_log(store.as_ref()).await.iter().map(|e| e.position.0).collect();
    let last = *whole.last().expect("the log");
    eventually(WAIT, "the handler behind applies the whole log", || async { applied(&db, "behind").await == whole })
        .await;
    eventually(WAIT, "the handler ahead applies the last event", || async {
        applied(&db, "ahead").await == [live, last]
    })
    .await;

    stop.send(true).expect("stop");
    running.await.expect("the runner stops");
}

async fn a_moved_checkpoint_is_recognised_by_the_engines_error_code(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else { return };
    let db = SqlDb::connect(&database.url).await.expect("SQL database");
    db.migrate("checkpoints", CHECKPOINT_MIGRATIONS).await.expect("checkpoints");
    let stale = claim_checkpoint(&db, "conflict_test").await.expect("a checkpoint");
    let moved = Checkpoint { position: hookwise::store::Position(7), generation: stale.generation + 1 };
    db.write(move_checkpoint("conflict_test", stale, moved)).await.expect("a rebuild moves it");

    // A runner still holding the stale checkpoint tries to move it on.
    let next = Checkpoint { position: hookwise::store::Position(3), generation: stale.generation };
    let error = db.write(move_checkpoint("conflict_test", stale, next)).await.expect_err("the guard fires");
    assert!(is_checkpoint_conflict(&error), "{error}");
    assert!(error.code().is_some(), "{error}");
    assert!(!error.is_unique_violation(), "{error}");
    assert_eq!(claim_checkpoint(&db, "conflict_test").await.expect("the checkpoint"), moved);

    // Any other failure is not taken for one.
    let duplicate = Statement::new(
        "INSERT INTO checkpoints (name, position, updated_at) VALUES (?, 0, 0)",
        sql_params!["conflict_test"],
    );
    let error = db.write(vec![duplicate]).await.expect_err("a duplicate name");
    assert!(error.is_unique_violation(), "{error}");
    assert!(!is_checkpoint_conflict(&error), "{error}");
}
