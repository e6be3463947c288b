//! The reading loop: shared readings, laggards catching up on their own,
//! retries from the last checkpoints.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::checkpoint::{checkpoint_of, claim_checkpoint, is_checkpoint_conflict, move_checkpoint, Checkpoint};
use super::{EventHandler, HandlerError};
use crate::sql::SqlDb;
use crate::store::{subscribe_all, subscribe_all_without_payloads, EventStore, Position};

/// Events handled per transaction at most.
const BATCH: usize = 100;

/// A handler further behind the furthest of its group than this (a read
/// model reset by a schema change at start, say) catches up on a reading of
/// its own before it rejoins: in the shared reading it would hold the others'
/// live updates back until it reached the head.
const CATCH_UP_ALONE_BEYOND: u64 = 10 * BATCH as u64;

/// Follows the log with `handlers` until `stop` turns true. They share one
/// reading of the log and one transaction per batch (each with its own
/// checkpoint), except that one far behind the others catches up on a
/// reading of its own first; failures are logged and retried from the last
/// checkpoints; nothing is skipped.
pub async fn run_handlers(
    store: Arc<dyn EventStore>,
    db: SqlDb,
    handlers: Vec<Arc<dyn EventHandler>>,
    stop: watch::Receiver<bool>,
) {
    if handlers.is_empty() {
        return;
    }
    let (rejoin, mut rejoining) = mpsc::unbounded_channel();
    let mut group = handlers;
    let mut catching_up = Vec::new();
    loop {
        let (laggards, target) = split_off_laggards(&db, &mut group).await;
        if !laggards.is_empty() {
            let catch_up = catch_up_alone(store.clone(), db.clone(), laggards, target, rejoin.clone(), stop.clone());
            catching_up.push(tokio::spawn(catch_up));
        }
        tokio::select! {
            ended = follow_with_retries(&store, &db, &group, Until::Stopped, stop.clone()) => {
                if ended == Ended::Stopped {
                    break;
                }
                // A rebuild or a replay moved a checkpoint: see who is behind now.
            }
            // The group's reading restarts from the earliest checkpoint, theirs.
            Some(caught_up) = rejoining.recv() => group.extend(caught_up),
        }
    }
    // Those still catching up saw the same stop: let them finish their batch.
    for task in catching_up {
        let _ = task.await;
    }
}

/// The handlers' names, for log lines.
fn joined_names(handlers: &[Arc<dyn EventHandler>]) -> String {
    handlers.iter().map(|h| h.name()).collect::<Vec<_>>().join(",")
}

/// Moves the handlers far behind the furthest one out of `group`; returns
/// them and the furthest one's position. A checkpoint that cannot be read
/// leaves the group whole (its reading will meet the same error and retry).
async fn split_off_laggards(
    db: &SqlDb,
    group: &mut Vec<Arc<dyn EventHandler>>,
) -> (Vec<Arc<dyn EventHandler>>, Position) {
    let mut positions = Vec::with_capacity(group.len());
    for handler in group.iter() {
        match checkpoint_of(db, handler.name()).await {
            Ok(position) => positions.push(position),
            Err(_) => return (Vec::new(), Position::START),
        }
    }
    let furthest = positions.iter().copied().max().unwrap_or_default();
    let (mut kept, mut laggards) = (Vec::new(), Vec::new());
    for (handler, position) in group.drain(..).zip(positions) {
        if position.0.saturating_add(CATCH_UP_ALONE_BEYOND) < furthest.0 {
            laggards.push(handler);
        } else {
            kept.push(handler);
        }
    }
    *group = kept;
    (laggards, furthest)
}

/// Brings `handlers` up to `target` on a reading of their own, then hands
/// them back through `rejoin`.
async fn catch_up_alone(
    store: Arc<dyn EventStore>,
    db: SqlDb,
    handlers: Vec<Arc<dyn EventHandler>>,
    target: Position,
    rejoin: mpsc::UnboundedSender<Vec<Arc<dyn EventHandler>>>,
    stop: watch::Receiver<bool>,
) {
    let names = joined_names(&handlers);
    tracing::info!(handlers = %names, target = target.0, "far behind the others: catching up on a reading of their own");
    loop {
        match follow_with_retries(&store, &db, &handlers, Until::Reached(target), stop.clone()).await {
            Ended::Reached => break,
            Ended::CheckpointMoved => continue,
            Ended::Stopped => return,
        }
    }
    tracing::info!(handlers = %names, "caught up: following the log with the others again");
    let _ = rejoin.send(handlers);
}

/// When a reading is to end (besides an error, which it retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    Stopped,
    /// Every handler has applied the log up to here.
    Reached(Position),
}

/// How a reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Reached,
    /// A rebuild, a replay or another runner moved a checkpoint.
    CheckpointMoved,
    Stopped,
}

/// Runs [`follow`] until `until`, retrying failures from the last
/// checkpoints with a growing pause.
async fn follow_with_retries(
    store: &Arc<dyn EventStore>,
    db: &SqlDb,
    handlers: &[Arc<dyn EventHandler>],
    until: Until,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    let names = joined_names(handlers);
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        let result = tokio::select! {
            result = follow(store, db, handlers, until) => result,
            _ = stop.changed() => return Ended::Stopped,
        };
        match result {
            Ok(()) => return Ended::Reached,
            Err(HandlerError::CheckpointMoved) => {
                tracing::info!(handlers = %names, "checkpoint moved (rebuild or replay); following from the new one");
                return Ended::CheckpointMoved;
            }
            Err(e) => {
                tracing::warn!(handlers = %names, error = %e, retry_in_ms = backoff.as_millis() as u64, "event handler failed; retrying from its checkpoint");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return Ended::Stopped,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    Ended::Stopped
}

/// Applies the log to `handlers` from their checkpoints; returns `Ok` only
/// once they have all reached `until`'s position.
async fn follow(
    store: &Arc<dyn EventStore>,
    db: &SqlDb,
    handlers: &[Arc<dyn EventHandler>],
    until: Until,
) -> Result<(), HandlerError> {
    let mut checkpoints = Vec::with_capacity(handlers.len());
    for handler in handlers {
        checkpoints.push(claim_checkpoint(db, handler.name()).await?);
    }
    let reached = |checkpoints: &[Checkpoint]| match until {
        Until::Reached(target) => checkpoints.iter().all(|c| c.position >= target),
        Until::Stopped => false,
    };
    if reached(&checkpoints) {
        return Ok(());
    }
    let start = checkpoints.iter().map(|c| c.position).min().unwrap_or_default();
    let mut subscription = if handlers.iter().any(|h| h.reads_payloads()) {
        subscribe_all(store.clone(), start)
    } else {
        subscribe_all_without_payloads(store.clone(), start)
    };
    loop {
        let batch = subscription.next_batch(BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            continue;
        };
        let mut statements = Vec::new();
        let mut moved = checkpoints.clone();
        let mut applied = Vec::with_capacity(handlers.len());
        for ((handler, from), to) in handlers.iter().zip(&checkpoints).zip(&mut moved) {
            // A handler a little behind the others catches up within the
            // same reading; one ahead skips what it has applied.
            let unapplied = &batch[batch.partition_point(|e| e.position <= from.position)..];
            if unapplied.is_empty() {
                continue;
            }
            *to = Checkpoint { position: last, generation: from.generation };
            statements.extend(move_checkpoint(handler.name(), *from, *to));
            let mut own = Vec::new();
            for event in unapplied {
                own.extend(handler.handle(event).await?);
            }
            statements.extend(handler.compact(own));
            applied.push(handler);
        }
        if !statements.is_empty() {
            match db.write(statements).await {
                Ok(_) => {
                    checkpoints = moved;
                    applied.iter().for_each(|handler| handler.committed());
                }
                Err(e) if is_checkpoint_conflict(&e) => return Err(HandlerError::CheckpointMoved),
                Err(e) => return Err(e.into()),
            }
        }
        if reached(&checkpoints) {
            return Ok(());
        }
    }
}
