//! Group commit, the write path of both SQL stores: appends queue up for a
//! single writer, which takes whatever is waiting (at most [`MAX_GROUP`]) and
//! commits it in one transaction, so one sync to disk serves many requests.
//! What differs between engines is only how a group is committed
//! ([`CommitGroup`]).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};

use tokio::sync::{mpsc, oneshot, watch};

use super::{AppendRequest, AppendResult, Position, StoreError, MAX_GROUP, QUEUE_DEPTH};

type Reply = oneshot::Sender<Result<AppendResult, StoreError>>;

/// What the writer is sent.
pub(crate) enum WriterMessage {
    Append(AppendRequest, Reply),
    Close(oneshot::Sender<()>),
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
}

/// The sending side of the writer's queue, which a store's `append` and
/// `close` use.
pub(crate) struct Appender {
    queue: mpsc::Sender<WriterMessage>,
}

impl Appender {
    /// A queue of [`QUEUE_DEPTH`] appends and its receiving end, for [`run_writer`].
    pub(crate) fn new() -> (Self, mpsc::Receiver<WriterMessage>) {
        let (queue, inbox) = mpsc::channel(QUEUE_DEPTH);
        (Appender { queue }, inbox)
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
pub(crate) async fn run_writer<C: CommitGroup>(
    mut committer: C,
    mut inbox: mpsc::Receiver<WriterMessage>,
    head: watch::Sender<Position>,
) {
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
