//! Read models: disposable SQL tables derived from the log, which can be
//! rebuilt into shadow tables (while the live ones stay queryable) and
//! swapped in, or fed a stretch of history again. Neither ever runs a side
//! effect: read models only write their own tables.
//!
//! Every read model is written so that applying an event again, in log
//! order, leaves the same rows (upserts keyed by what the event is about,
//! counts computed from child rows rather than incremented). That is what
//! makes `replay` safe.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

pub use super::tables::Tables;
use super::time_ranges;
use crate::runner::{
    checkpoint_of, claim_checkpoint, is_checkpoint_conflict, move_checkpoint, Checkpoint, EventHandler, HandlerError,
};
use crate::sql::{coalesce_inserts, Migration, SqlDb, SqlError, Statement};
use crate::sql_params;
use crate::store::{EventStore, Position, RecordedEvent, StoreError};

/// Events read and applied per transaction during a rebuild or replay.
const REBUILD_BATCH: usize = 2000;

/// A read model. Its SQL names tables as `{p}name` so that the same
/// statements write the live tables or a shadow set.
pub trait ReadModel: Send + Sync + 'static {
    /// Names the read model in the API, the CLI and its checkpoint.
    fn name(&self) -> &'static str;
    /// Bumped when the tables change shape: at start, a read model whose
    /// stored version differs is dropped and rebuilt from the log.
    fn schema_version(&self) -> i64;
    /// Its tables' names, without prefix.
    fn tables(&self) -> &'static [&'static str];
    /// `CREATE TABLE` templates (keys and unique constraints included), and
    /// the indexes the projection itself needs while it runs (named with the
    /// `{p}` prefix too: they keep their shadow names after a swap).
    fn create_tables(&self) -> &'static [&'static str];
    /// `CREATE INDEX` templates only queries need, built after a rebuild's bulk load.
    fn create_indexes(&self) -> &'static [&'static str];
    /// The statements that apply `event` to `tables`.
    fn apply(&self, tables: &Tables, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError>;
    /// Whether `apply` looks at webhook bodies; a read model that does not is
    /// fed events without them, which spares reading and decompressing them.
    fn reads_payloads(&self) -> bool {
        true
    }
}

/// Runs a read model over its live tables from its checkpoint.
pub struct ReadModelHandler {
    model: Arc<dyn ReadModel>,
    live: Tables,
}

impl ReadModelHandler {
    pub fn new(model: Arc<dyn ReadModel>) -> Self {
        ReadModelHandler { model, live: Tables::live() }
    }
}

#[async_trait]
impl EventHandler for ReadModelHandler {
    fn name(&self) -> &'static str {
        self.model.name()
    }

    /// Read models manage their tables themselves (see [`prepare`]).
    fn migrations(&self) -> &'static [Migration] {
        &[]
    }

    fn reads_payloads(&self) -> bool {
        self.model.reads_payloads()
    }

    async fn handle(&self, event: &RecordedEvent) -> Result<Vec<Statement>, HandlerError> {
        self.model.apply(&self.live, event)
    }

    fn compact(&self, statements: Vec<Statement>) -> Vec<Statement> {
        compact(statements)
    }
}

/// A batch's statements, as few as they can be: time-range upserts folded to
/// one per block, runs of the same insert-or-ignore merged into one insert.
pub fn compact(statements: Vec<Statement>) -> Vec<Statement> {
    coalesce_inserts(time_ranges::fold(statements))
}

pub const READ_MODEL_MIGRATIONS: &[Migration] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS read_models (
        name TEXT PRIMARY KEY,
        schema_version BIGINT NOT NULL,
        rebuilt_at BIGINT NOT NULL
    )",
)];

fn drop_tables(model: &dyn ReadModel, tables: &Tables) -> Vec<Statement> {
    model.tables().iter().map(|t| Statement::new(format!("DROP TABLE IF EXISTS {}", tables.name(t)), vec![])).collect()
}

fn create(templates: &'static [&'static str], tables: &Tables) -> Vec<Statement> {
    templates.iter().map(|t| Statement::new(tables.sql(t), vec![])).collect()
}

fn record_version(model: &dyn ReadModel) -> Statement {
    Statement::new(
        "INSERT INTO read_models (name, schema_version, rebuilt_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET schema_version = excluded.schema_version, rebuilt_at = excluded.rebuilt_at",
        sql_params![model.name(), model.schema_version(), crate::store::now_micros()],
    )
}

/// Creates the read model's tables; a read model whose schema version
/// changed is dropped and starts again from the beginning of the log.
pub async fn prepare(db: &SqlDb, model: &dyn ReadModel) -> Result<(), HandlerError> {
    db.migrate("read_models", READ_MODEL_MIGRATIONS).await?;
    let rows = db.query("SELECT schema_version FROM read_models WHERE name = ?", sql_params![model.name()]).await?;
    let stored = rows.first().map(|r| r.get::<i64>(0)).transpose()?;
    let live = Tables::live();
    if stored == Some(model.schema_version()) {
        // The tables exist (created here or swapped in by a rebuild, whose
        // indexes may carry the shadow set's names): nothing to create.
        return Ok(());
    }
    if stored.is_some() {
        tracing::info!(read_model = model.name(), "schema version changed; rebuilding from the log");
    }
    let checkpoint = claim_checkpoint(db, model.name()).await?;
    let mut statements = move_checkpoint(
        model.name(),
        checkpoint,
        Checkpoint { position: Position::START, generation: checkpoint.generation + 1 },
    );
    statements.extend(drop_tables(model, &live));
    statements.extend(create(model.create_tables(), &live));
    statements.extend(create(model.create_indexes(), &live));
    statements.push(record_version(model));
    db.write(statements).await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RebuildReport {
    pub read_model: String,
    pub events: u64,
    /// The log position the rebuilt tables reflect.
    pub position: u64,
    pub duration_ms: u64,
}

/// Rebuilds `models` from the whole log into shadow tables while the live
/// tables keep answering, then swaps each in with its checkpoint in one
/// transaction; the running handlers notice the moved checkpoints and go on
/// from there. The log is read once: each batch is applied to every model's
/// shadow tables in one transaction, while the next batch is being read.
pub async fn rebuild_many(
    store: &dyn EventStore,
    db: &SqlDb,
    models: &[Arc<dyn ReadModel>],
) -> Result<Vec<RebuildReport>, HandlerError> {
    let started = Instant::now();
    let mut checkpoints = Vec::with_capacity(models.len());
    let mut shadows = Vec::with_capacity(models.len());
    for model in models {
        let checkpoint = claim_checkpoint(db, model.name()).await?;
        let shadow = Tables::shadow(checkpoint.generation + 1);
        let mut statements = drop_tables(model.as_ref(), &shadow);
        statements.extend(create(model.create_tables(), &shadow));
        db.write(statements).await?;
        checkpoints.push(checkpoint);
        shadows.push(shadow);
    }
    let shadows = Arc::new(shadows);

    let mut after = Position::START;
    let mut applied = 0u64;
    let payloads = models.iter().any(|m| m.reads_payloads());
    let mut pending: Option<tokio::task::JoinHandle<Result<(), HandlerError>>> = None;
    loop {
        let events = read_batch(store, after, payloads).await?;
        let Some(last) = events.last() else { break };
        after = last.position;
        applied += events.len() as u64;
        if let Some(previous) = pending.take() {
            previous.await??;
        }
        // Applying is CPU work: it runs on a blocking thread, beside the next read.
        let (models, shadows, db) = (models.to_vec(), shadows.clone(), db.clone());
        pending = Some(tokio::spawn(async move {
            let statements = tokio::task::spawn_blocking(move || apply_to_all(&models, &shadows, &events)).await??;
            db.write(statements).await?;
            Ok(())
        }));
    }
    if let Some(previous) = pending.take() {
        previous.await??;
    }

    let mut reports = Vec::with_capacity(models.len());
    for ((model, checkpoint), shadow) in models.iter().zip(checkpoints).zip(shadows.iter()) {
        let position = swap_in(db, model.as_ref(), checkpoint, shadow, after).await?;
        reports.push(RebuildReport {
            read_model: model.name().to_owned(),
            events: applied,
            position: position.0,
            duration_ms: millis(started.elapsed()),
        });
    }
    Ok(reports)
}

/// The next batch of a rebuild or replay, with payloads only when a model needs them.
async fn read_batch(store: &dyn EventStore, after: Position, payloads: bool) -> Result<Vec<RecordedEvent>, StoreError> {
    if payloads {
        store.read_all(after, REBUILD_BATCH).await
    } else {
        store.read_all_without_payloads(after, REBUILD_BATCH).await
    }
}

/// Each model's statements for `events`, in log order; models write disjoint
/// tables, so one model's statements may run before another's.
fn apply_to_all(
    models: &[Arc<dyn ReadModel>],
    shadows: &[Tables],
    events: &[RecordedEvent],
) -> Result<Vec<Statement>, HandlerError> {
    let mut statements = Vec::with_capacity(events.len() * models.len());
    for (model, shadow) in models.iter().zip(shadows) {
        let mut own = Vec::with_capacity(events.len());
        for event in events {
            own.extend(model.apply(shadow, event)?);
        }
        statements.extend(compact(own));
    }
    Ok(statements)
}

/// Replaces the live tables by the shadow set, with the checkpoint at
/// `position`, in one transaction.
async fn swap_in(
    db: &SqlDb,
    model: &dyn ReadModel,
    checkpoint: Checkpoint,
    shadow: &Tables,
    position: Position,
) -> Result<Position, HandlerError> {
    // The live handler may move its checkpoint meanwhile (the swap then
    // fails its guard and is tried again); a second rebuild or a replay
    // bumps the generation, which ends this one.
    let live = Tables::live();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = claim_checkpoint(db, model.name()).await?;
        if current.generation != checkpoint.generation {
            db.write(drop_tables(model, shadow)).await?;
            return Err(HandlerError::RebuiltConcurrently { read_model: model.name() });
        }
        let mut swap =
            move_checkpoint(model.name(), current, Checkpoint { position, generation: checkpoint.generation + 1 });
        swap.extend(drop_tables(model, &live));
        for table in model.tables() {
            swap.push(Statement::new(
                format!("ALTER TABLE {} RENAME TO {}", shadow.name(table), live.name(table)),
                vec![],
            ));
        }
        swap.extend(create(model.create_indexes(), &live));
        swap.push(record_version(model));
        match db.write(swap).await {
            Ok(_) => return Ok(position),
            Err(e) if is_checkpoint_conflict(&e) && attempts < 20 => continue,
            Err(e) => {
                let _ = db.write(drop_tables(model, shadow)).await;
                return Err(e.into());
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub read_model: String,
    pub events: u64,
    pub position: u64,
}

/// Feeds the log from `from` (inclusive) up to `to` (inclusive; the head
/// when `None`) through `model` again, moving its checkpoint back to just
/// before `from` first. Idempotent projections make the re-applied events
/// harmless; the checkpoint never ends before where it was, so nothing is
/// left out.
pub async fn replay(
    store: &dyn EventStore,
    db: &SqlDb,
    model: &dyn ReadModel,
    from: Position,
    to: Option<Position>,
) -> Result<ReplayReport, HandlerError> {
    let previous = claim_checkpoint(db, model.name()).await?;
    let start = Position(from.0.saturating_sub(1));
    // Never leave the checkpoint behind where it was: events after `to` that
    // were already applied must not be skipped, and must be applied again
    // after the replayed ones so the rows end as they were.
    let end = match to {
        Some(to) => to.max(previous.position),
        None => store.head().await?,
    };
    let mut checkpoint = Checkpoint { position: start, generation: previous.generation + 1 };
    db.write(move_checkpoint(model.name(), previous, checkpoint)).await?;
    let live = Tables::live();
    let mut applied = 0u64;
    while checkpoint.position < end {
        let mut events = read_batch(store, checkpoint.position, model.reads_payloads()).await?;
        events.retain(|e| e.position <= end);
        if events.is_empty() {
            break;
        }
        let Some(last) = events.last() else { break };
        let next = Checkpoint { position: last.position, generation: checkpoint.generation };
        let mut statements = move_checkpoint(model.name(), checkpoint, next);
        for event in &events {
            statements.extend(model.apply(&live, event)?);
        }
        db.write(compact(statements)).await?;
        applied += events.len() as u64;
        checkpoint = next;
    }
    Ok(ReplayReport { read_model: model.name().to_owned(), events: applied, position: checkpoint.position.0 })
}

/// How far each read model's checkpoint is behind the log's head.
pub async fn lag(db: &SqlDb, head: Position, names: &[&'static str]) -> Result<Vec<(&'static str, u64)>, SqlError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let position = checkpoint_of(db, name).await?;
        out.push((*name, head.0.saturating_sub(position.0)));
    }
    Ok(out)
}

/// Elapsed time as whole milliseconds.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
