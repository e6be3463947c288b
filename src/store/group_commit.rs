//! Group commit, the write path of both SQL stores: appends queue up for a
//! single writer, which takes whatever is waiting (at most [`MAX_GROUP`]) and
//! commits it in one transaction, so one sync to disk serves many requests.
//! What differs between engines is only how a group is committed
//! ([`CommitGroup`]). The writer also answers whether the log can be written
//! now ([`Appender::check_writable`], for `/readyz` and `serve`'s start).

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::{AppendRequest, AppendResult, Position, StoreError, MAX_GROUP, QUEUE_DEPTH};

type Reply = oneshot::Sender<Result<AppendResult, StoreError>>;

/// What the writer is sent.
pub(crate) enum WriterMessage {
    Append(AppendRequest, Reply),
    /// Write the probe row and say whether it committed.
    Probe(oneshot::Sender<Result<(), String>>),
    Close(oneshot::Sender<()>),
}

/// A failed group commit keeps the log "not writable" this long even when a
/// probe commits meanwhile: a one-row probe can fit where a delivery does not
/// (a disk nearly full, a file size limit), and readiness must not say ready
/// while deliveries are being refused. Past it, the probe alone decides, so
/// readiness recovers by itself once writes fit again.
const FAILURE_MEMORY: Duration = Duration::from_secs(15);
/// `/readyz` may be asked often: one probe commit per this, at most.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A writer stuck on its disk is not writable either.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the writer last saw of the disk, shared by it and the [`Appender`].
#[derive(Default)]
struct WriteHealth {
    /// When the last group commit failed and why; cleared by one that commits.
    last_failure: Mutex<Option<(Instant, String)>>,
    /// The last probe's time and outcome.
    last_probe: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl WriteHealth {
    fn record_group(&self, outcome: Result<(), String>) {
        let mut last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        *last = outcome.err().map(|e| (Instant::now(), e));
    }

    fn recent_failure(&self) -> Option<String> {
        let last = self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().filter(|(at, _)| at.elapsed() < FAILURE_MEMORY).map(|(_, e)| e.clone())
    }

    fn fresh_probe(&self) -> Option<Result<(), String>> {
        let last = self.last_probe.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().filter(|(at, _)| at.elapsed() < PROBE_INTERVAL).map(|(_, outcome)| outcome.clone())
    }

    fn record_probe(&self, outcome: Result<(), String>) {
        *self.last_probe.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), outcome));
    }
}

/// The receiving side of the writer's queue, for [`run_writer`].
pub(crate) struct WriterInbox {
    messages: mpsc::Receiver<WriterMessage>,
    health: Arc<WriteHealth>,
}

/// The result of each request of a group, in order (a request turned down
/// by its expected version does not fail the others).
pub(crate) type GroupResults = Vec<Result<AppendResult, StoreError>>;

/// Appends one group in one transaction: the part of group commit that is
/// each engine's own.
pub(crate) trait CommitGroup {
    /// Names the backend in metrics and logs.
    const BACKEND: &'static str;
    /// A failure of the whole group: every request of it fails with it.
    type Error: std::fmt::Display;

    /// Commits `requests` in one transaction.
    fn commit_group(
        &mut self,
        requests: &[AppendRequest],
    ) -> impl Future<Output = Result<GroupResults, Self::Error>> + Send;

    /// Commits a write that does not grow the log (one probe row, replaced),
    /// durably as an append would be.
    fn commit_probe(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The sending side of the writer's queue, which a store's `append` and
/// `close` use.
pub(crate) struct Appender {
    queue: mpsc::Sender<WriterMessage>,
    health: Arc<WriteHealth>,
}

impl Appender {
    /// A queue of [`QUEUE_DEPTH`] appends and its receiving end, for [`run_writer`].
    pub(crate) fn new() -> (Self, WriterInbox) {
        let (queue, messages) = mpsc::channel(QUEUE_DEPTH);
        let health = Arc::new(WriteHealth::default());
        (Appender { queue, health: health.clone() }, WriterInbox { messages, health })
    }

    /// Whether the log can be written now: no group commit failed in the last
    /// [`FAILURE_MEMORY`], and a probe row commits (probed at most once per
    /// [`PROBE_INTERVAL`]; queued behind the appends already waiting).
    pub(crate) async fn check_writable(&self) -> Result<(), StoreError> {
        if let Some(failure) = self.health.recent_failure() {
            return Err(StoreError::Unavailable(format!("the last append failed: {failure}")));
        }
        let outcome = match self.health.fresh_probe() {
            Some(outcome) => outcome,
            None => {
                let (reply, answer) = oneshot::channel();
                self.queue.send(WriterMessage::Probe(reply)).await.map_err(|_| StoreError::Closed)?;
                let outcome = match tokio::time::timeout(PROBE_TIMEOUT, answer).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => return Err(StoreError::Closed),
                    Err(_) => Err(format!("the writer did not answer within {PROBE_TIMEOUT:?}")),
                };
                self.health.record_probe(outcome.clone());
                outcome
            }
        };
        outcome.map_err(|e| StoreError::Unavailable(format!("a write to the log failed: {e}")))
    }

    /// Queues `request` (waiting for room when the queue is full) and waits for its group to commit.
    pub(crate) async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(WriterMessage::Append(request, reply)).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Whether the writer has stopped.
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Waits for the appends queued so far to commit and stops the writer.
    pub(crate) async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.queue.send(WriterMessage::Close(done)).await.is_ok() {
            let _ = finished.await;
        }
    }
}

/// The writer: until it is closed (or every sender is gone), commits what is
/// waiting as one group with `committer`, answers each request, and moves
/// `head` to the furthest new position.
pub(crate) async fn run_writer<C: CommitGroup>(mut committer: C, inbox: WriterInbox, head: watch::Sender<Position>) {
    let WriterInbox { messages: mut inbox, health } = inbox;
    let mut requests = Vec::with_capacity(MAX_GROUP);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_GROUP);
    let mut closing = None;
    while closing.is_none() {
        let Some(first) = inbox.recv().await else {
            break;
        };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                WriterMessage::Append(request, reply) => {
                    requests.push(request);
                    replies.push(reply);
                }
                WriterMessage::Probe(reply) => {
                    let outcome = committer.commit_probe().await.map_err(|e| e.to_string());
                    let _ = reply.send(outcome);
                }
                WriterMessage::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if requests.len() < MAX_GROUP {
                next = inbox.try_recv().ok();
            }
        }
        if requests.is_empty() {
            continue;
        }
        let started = std::time::Instant::now();
        let result = committer.commit_group(&requests).await;
        record_group_commit(C::BACKEND, started, requests.len());
        health.record_group(result.as_ref().map(drop).map_err(|e| e.to_string()));
        match result {
            Ok(results) => {
                let last = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok())
                    .filter(|r| !r.already_stored)
                    .filter_map(|r| r.first_position)
                    .max();
                if let Some(last) = last {
                    head.send_modify(|h| *h = (*h).max(last));
                }
                for (reply, result) in replies.drain(..).zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, appends = requests.len(), "{} group commit failed", C::BACKEND);
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
        requests.clear();
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

fn record_group_commit(backend: &'static str, started: std::time::Instant, appends: usize) {
    metrics::histogram!(crate::metrics::APPEND_DURATION, "backend" => backend).record(started.elapsed().as_secs_f64());
    metrics::histogram!(crate::metrics::APPEND_GROUP_SIZE, "backend" => backend).record(appends as f64);
}

/// Runs `future` to completion on the calling thread, parking it while the
/// future waits: how a writer with a thread of its own (SQLite's, whose
/// commits block) runs [`run_writer`]. Like `blocking_recv`, with no runtime.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut future = pin!(future);
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut context = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
