//! The HTTP connection layer: accepts TCP connections up to a cap and serves
//! each with hyper (HTTP/1.1 and h2c) in front of the poem endpoint, with the
//! deadlines poem's own server lacks: a request head must arrive within
//! `header_read_timeout`, its body within `body_read_timeout`, a
//! keep-alive connection may sit idle for `idle_timeout`, and an answer the
//! client stops reading may stall for `write_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::Stream;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use poem::http::{header, uri::Scheme, HeaderValue, StatusCode, Version};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt, IntoResponse};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use crate::api::error::ApiError;
use crate::config::ServerLimits;

/// File descriptors kept for everything but client connections (database
/// connections, log files, outbound HTTP), beyond those open at start.
const FD_RESERVE: usize = 64;

/// How long accepting pauses when the process is out of file descriptors or
/// memory: retrying at once would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning about failing accepts per this long.
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Raises the soft open-file limit to the hard one and returns how many
/// connections fit: `requested`, or fewer when the limit cannot hold that many
/// plus what the process needs besides (logged once, here).
pub fn connection_cap(requested: usize) -> usize {
    let Some(fd_limit) = raise_open_file_limit() else { return requested };
    let reserved = open_file_count().unwrap_or(0) + FD_RESERVE;
    let fits = fd_limit.saturating_sub(reserved).max(1);
    if fits < requested {
        tracing::warn!(
            requested,
            cap = fits,
            fd_limit,
            "HOOKWISE_MAX_CONNECTIONS lowered to fit the open-file limit (RLIMIT_NOFILE)"
        );
        return fits;
    }
    requested
}

/// The soft `RLIMIT_NOFILE` after raising it to the hard limit (best effort).
fn raise_open_file_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes the struct it is given, which we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            // SAFETY: setrlimit only reads the struct it is given; raising the
            // soft limit up to the hard one needs no privilege. On failure
            // (some systems refuse an unlimited soft limit) the old one stays.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = raised;
            }
        }
        Some(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
    }
    #[cfg(not(unix))]
    None
}

/// How many files the process has open now (Linux; `None` elsewhere).
fn open_file_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|entries| entries.count())
}

/// Serves `endpoint` on `listener` until `shutdown` resolves; then stops
/// accepting, lets open requests finish for up to `grace` and returns.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint + 'static,
{
    let endpoint = Arc::new(endpoint.map_to_response());
    let local_addr = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept_warnings = RateLimitedWarning::default();
    tokio::pin!(shutdown);
    tracing::info!(addr = %local_addr, max_connections = limits.max_connections, "listening");
    loop {
        // A free slot before accepting: at the cap, new connections wait in
        // the kernel's backlog instead of being accepted and starved.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote_addr) = match accepted {
            Ok(connection) => connection,
            Err(error) if is_resource_exhaustion(&error) => {
                accept_warnings.warn(&error);
                drop(permit);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
            // One connection's trouble (reset before accept, …): skip it.
            Err(error) => {
                tracing::debug!(%error, "accepting a connection failed");
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let connection = Connection {
            endpoint: endpoint.clone(),
            local_addr,
            remote_addr,
            limits,
            stopping: stopping.clone(),
            _slot: permit,
        };
        connections.spawn(connection.serve(stream));
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "closing connections still busy after the shutdown grace period");
        connections.shutdown().await;
    }
    Ok(())
}

/// Errors after which accepting again at once would fail the same way.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

#[derive(Default)]
struct RateLimitedWarning {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarning {
    fn warn(&mut self, error: &io::Error) {
        if self.last.is_some_and(|last| last.elapsed() < ACCEPT_WARNING_INTERVAL) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(%error, suppressed = self.suppressed, "accepting connections failed; backing off");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// One accepted connection; holds its slot until it ends.
struct Connection<E> {
    endpoint: Arc<E>,
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
    limits: ServerLimits,
    stopping: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
}

impl<E: Endpoint<Output = poem::Response> + 'static> Connection<E> {
    async fn serve(mut self, stream: TcpStream) {
        let clock = Arc::new(ConnectionClock::new(self.limits));
        let (endpoint, clock_for_requests) = (self.endpoint.clone(), clock.clone());
        let (local_addr, remote_addr, body_timeout) =
            (self.local_addr, self.remote_addr, self.limits.body_read_timeout);
        let service = hyper::service::service_fn(move |request| {
            let (endpoint, in_flight) = (endpoint.clone(), clock_for_requests.request_started());
            async move {
                let response = respond(endpoint.as_ref(), request, local_addr, remote_addr, body_timeout).await;
                Ok::<_, Infallible>(response.map(|body| InFlightBody { body, _in_flight: in_flight }))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // A client may shut down its sending side once its request is out
        // (RFC 9112 §9.6) and still be answered.
        builder.http1().half_close(true);
        builder.http2().max_concurrent_streams(self.limits.http2_max_streams);
        let io = TokioIo::new(DeadlineIo::new(stream, clock, self.limits.write_timeout));
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, remote = %self.remote_addr, "connection ended");
                }
                return;
            }
            _ = self.stopping.wait_for(|stopping| *stopping) => {}
        }
        // Shutting down: idle HTTP/1 connections close now, HTTP/2 ones get
        // GOAWAY; requests under way finish.
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}

/// Runs one request through the endpoint, its body under the body deadline.
async fn respond<E: Endpoint<Output = poem::Response>>(
    endpoint: &E,
    request: poem::http::Request<Incoming>,
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
    body_timeout: Duration,
) -> poem::http::Response<impl HttpBody<Data = bytes::Bytes, Error = io::Error> + Unpin> {
    let has_body = !request.body().is_end_stream();
    let http1 = request.version() < Version::HTTP_2;
    let mut request: poem::Request =
        (request, LocalAddr(local_addr.into()), RemoteAddr(remote_addr.into()), Scheme::HTTP).into();
    let body_timed_out = Arc::new(AtomicBool::new(false));
    if has_body {
        let body = request.take_body();
        request.set_body(with_deadline(body, body_timeout, body_timed_out.clone()));
    }
    let mut response = endpoint.get_response(request).await;
    // Whatever the route made of its unreadable body, the client hears why.
    if body_timed_out.load(Ordering::Acquire) {
        let message = format!("the request body did not arrive within {}", humantime::format_duration(body_timeout));
        response = ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message).into_response();
        if http1 {
            // The rest of the body may still come; the connection cannot be reused.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    response.into()
}

/// `body`, failing with `TimedOut` (and setting `timed_out`) if it is not
/// complete `limit` after now (the request head has just been parsed).
fn with_deadline(body: poem::Body, limit: Duration, timed_out: Arc<AtomicBool>) -> poem::Body {
    let mut chunks = Box::pin(body.into_bytes_stream());
    let mut deadline = Box::pin(tokio::time::sleep(limit));
    let mut finished = false;
    poem::Body::from_bytes_stream(futures_util::stream::poll_fn(move |cx| {
        if finished {
            return Poll::Ready(None);
        }
        if let Poll::Ready(chunk) = chunks.as_mut().poll_next(cx) {
            finished = chunk.is_none();
            return Poll::Ready(chunk);
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                timed_out.store(true, Ordering::Release);
                finished = true;
                Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::TimedOut, "the request body arrived too slowly"))))
            }
            Poll::Pending => Poll::Pending,
        }
    }))
}

/// A response body that counts its request as in flight until hyper is done
/// with it (sent, or the connection gone).
struct InFlightBody<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: HttpBody + Unpin> HttpBody for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What a connection is waiting for, which decides how long it may wait.
#[derive(Debug, Clone, Copy)]
enum Waiting {
    /// A request head, since accept or the first byte after an idle spell.
    Head { since: Instant },
    /// Anything at all, since the last response was sent.
    Idle { since: Instant },
}

struct ClockState {
    /// Requests being answered; while any is, reads have no deadline here
    /// (bodies have their own).
    in_flight: usize,
    waiting: Waiting,
    /// The task blocked reading, woken when the deadline changes.
    reader: Option<Waker>,
}

/// Per connection: which deadline applies to reading from the socket now.
struct ConnectionClock {
    header_timeout: Duration,
    idle_timeout: Duration,
    state: Mutex<ClockState>,
}

impl ConnectionClock {
    fn new(limits: ServerLimits) -> Self {
        ConnectionClock {
            header_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            state: Mutex::new(ClockState {
                in_flight: 0,
                waiting: Waiting::Head { since: Instant::now() },
                reader: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // The state stays consistent whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.lock().in_flight += 1;
        InFlight { clock: self.clone() }
    }

    fn bytes_arrived(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 {
            if let Waiting::Idle { .. } = state.waiting {
                state.waiting = Waiting::Head { since: Instant::now() };
            }
        }
    }

    /// The deadline of a read that would block now, remembering who to wake
    /// when it changes.
    fn read_deadline(&self, reader: &Waker) -> Option<Instant> {
        let mut state = self.lock();
        if !state.reader.as_ref().is_some_and(|known| known.will_wake(reader)) {
            state.reader = Some(reader.clone());
        }
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.waiting {
            Waiting::Head { since } => since + self.header_timeout,
            Waiting::Idle { since } => since + self.idle_timeout,
        })
    }
}

/// A request being answered; dropping it may start the idle deadline.
struct InFlight {
    clock: Arc<ConnectionClock>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.clock.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.waiting = Waiting::Idle { since: Instant::now() };
            // A read may be blocked with no deadline armed; let it arm one.
            if let Some(reader) = state.reader.take() {
                reader.wake();
            }
        }
    }
}

/// The socket, whose reads fail with `TimedOut` once the connection's current
/// deadline (head or idle) has passed; hyper then closes the connection.
/// Writes fail the same way once the client has taken nothing for the write
/// timeout: a reader that stops reading must not hold its slot for ever.
struct DeadlineIo {
    socket: TcpStream,
    clock: Arc<ConnectionClock>,
    timer: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
    write_timeout: Duration,
    write_timer: Pin<Box<Sleep>>,
    /// Since when writes have been blocked (`None` while they go through).
    write_blocked_since: Option<Instant>,
}

impl DeadlineIo {
    fn new(socket: TcpStream, clock: Arc<ConnectionClock>, write_timeout: Duration) -> Self {
        DeadlineIo {
            socket,
            clock,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
            write_timeout,
            write_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            write_blocked_since: None,
        }
    }

    /// After a write attempt: progress clears the stall; a block starts or
    /// continues it, and past the write timeout fails the write.
    fn write_deadline<T>(&mut self, cx: &mut Context<'_>, attempt: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if attempt.is_ready() {
            self.write_blocked_since = None;
            return attempt;
        }
        let since = *self.write_blocked_since.get_or_insert_with(|| {
            let now = Instant::now();
            self.write_timer.as_mut().reset(now + self.write_timeout);
            now
        });
        match self.write_timer.as_mut().poll(cx) {
            Poll::Ready(()) if since.elapsed() >= self.write_timeout => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading the answer")))
            }
            _ => Poll::Pending,
        }
    }
}

impl AsyncRead for DeadlineIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.socket).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.clock.bytes_arrived();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => {}
        }
        let Some(deadline) = self.clock.read_deadline(cx.waker()) else { return Poll::Pending };
        if self.armed_for != Some(deadline) {
            self.timer.as_mut().reset(deadline);
            self.armed_for = Some(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client sent nothing in time")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for DeadlineIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let attempt = Pin::new(&mut self.socket).poll_write(cx, buf);
        self.write_deadline(cx, attempt)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let attempt = Pin::new(&mut self.socket).poll_write_vectored(cx, bufs);
        self.write_deadline(cx, attempt)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let attempt = Pin::new(&mut self.socket).poll_flush(cx);
        self.write_deadline(cx, attempt)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}
