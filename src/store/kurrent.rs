//! KurrentDB / EventStoreDB as the event log (cargo feature `kurrentdb`,
//! selected by `EVENTSTORE_URL=esdb://…`). Read models, checkpoints and the
//! outbox stay in the SQL database. The decisions and their limits are in
//! `docs/decisions/kurrentdb.md`; in short:
//!
//! **Positions.** A `$all` position is a pair (commit, prepare) of log byte
//! offsets, ordered by commit then prepare. Events written by a current server
//! are self-committed: commit = prepare = the event's own log position, also
//! within a multi-event append (older servers report the append's first
//! position as every event's prepare). Events of a legacy explicit transaction
//! share the commit position of their commit record and differ by prepare
//! position. The trait's single `u64` is
//! `commit * 2^16 + rank + 1`, where `rank` is the event's index among the
//! (filtered) events sharing its commit position, so:
//! - order is kept exactly: commit first, then the order within the group;
//! - `Position(0)` stays "before the start" (the `+ 1`);
//! - the cursor is resumable: `after = (c, r)` reads `$all` from `(c, 0)`
//!   (inclusive, the start of the group), skips ranks `0..=r`, and ranks every
//!   later group from its first event;
//! - an event with commit = prepare is always rank 0 (it is the first event of
//!   its group in every server format), so the common case needs no look-up.
//!
//! Limits: commit positions must stay below 2^48 (256 TiB of log) and a group
//! below 65 535 events, else reads fail with [`StoreError::Corrupt`] rather than
//! misorder. Positions are sparse: `head - checkpoint` is not an event count.
//!
//! **Encoding.** Event data is the event's JSON (content type
//! `application/json`, so KurrentDB's UI and projections read it natively);
//! custom metadata is a small JSON envelope `{"schema_version":N,
//! "payload_base64":"…"}` that keeps the raw payload bytes exactly.
//!
//! **Idempotency.** KurrentDB's own duplicate check is best-effort (a cache of
//! recent writes), so every append first reads the stream and decides from its
//! event ids like the SQL planner; the write itself then states the version it
//! saw, so nothing can slip in between. `NoStream` and `Exact` go to the server
//! as `NoStream`/`StreamRevision`; `Any` and `StreamExists` are checked
//! against the version read and written as that exact revision (retried on a
//! race), never as `Any`. Event ids are *not* checked across streams.
//!
//! **Live updates.** A background subscription to `$all` (filtered like the
//! reads) feeds [`EventStore::head_hint`]; it resubscribes after a dropped
//! connection from the last position it saw.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, ReadAllOptions, ReadStreamOptions, StreamPosition, StreamState,
    SubscribeToAllOptions, SubscriptionEvent, SubscriptionFilter,
};
use tokio::sync::watch;
use uuid::Uuid;

use super::{AppendResult, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError};

/// Bits of the trait position that hold the rank within a commit group.
const RANK_BITS: u32 = 16;
/// Largest rank that fits (one value is spent on the `+ 1`).
const MAX_RANK: u64 = (1 << RANK_BITS) - 2;
/// Largest commit position that fits.
const MAX_COMMIT: u64 = (u64::MAX >> RANK_BITS) - 1;
/// How long opening waits for the server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause before resubscribing after the live subscription dropped.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);
/// Attempts of an `Any`/`StreamExists` append that keeps losing races.
const MAX_APPEND_ATTEMPTS: usize = 64;

/// A `$all` position: (commit, prepare) byte offsets in the transaction log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub commit: u64,
    pub prepare: u64,
}

impl From<kurrentdb::Position> for LogPosition {
    fn from(p: kurrentdb::Position) -> Self {
        LogPosition { commit: p.commit, prepare: p.prepare }
    }
}

/// The trait position of the event at `commit` that is `rank`-th among the
/// events sharing that commit position.
pub fn encode_position(commit: u64, rank: u64) -> Result<Position, StoreError> {
    if commit > MAX_COMMIT || rank > MAX_RANK {
        return Err(StoreError::Corrupt(format!(
            "KurrentDB position (commit {commit}, rank {rank}) does not fit hookwise's 48+16-bit position"
        )));
    }
    Ok(Position((commit << RANK_BITS) + rank + 1))
}

/// The (commit, rank) a trait position stands for; `None` for `Position(0)`.
pub fn decode_position(position: Position) -> Option<(u64, u64)> {
    let value = position.0.checked_sub(1)?;
    Some((value >> RANK_BITS, value & ((1 << RANK_BITS) - 1)))
}

/// The client's stream state for an expected version, as sent to the server
/// for `NoStream` and `Exact` appends.
pub fn stream_state(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::NoStream => StreamState::NoStream,
        ExpectedVersion::StreamExists => StreamState::StreamExists,
        ExpectedVersion::Exact(v) => StreamState::StreamRevision(v),
    }
}

/// The custom metadata hookwise writes with each event.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Envelope {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

/// Custom metadata for `event`: its schema version and its payload, base64.
pub fn encode_metadata(event: &NewEvent) -> Vec<u8> {
    let envelope = Envelope {
        schema_version: event.schema_version,
        payload_base64: event.payload.as_ref().map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
    };
    // Serialising a struct of a number and a string cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// (schema version, payload) from custom metadata. Events not written by
/// hookwise (no envelope) read as schema version 1 without a payload.
pub fn decode_metadata(metadata: &[u8]) -> Result<(u32, Option<Bytes>), StoreError> {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(metadata) else {
        return Ok((1, None));
    };
    let payload = match envelope.payload_base64 {
        Some(text) => Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| StoreError::Corrupt(format!("payload is not valid base64: {e}")))?,
        )),
        None => None,
    };
    Ok((envelope.schema_version, payload))
}

/// Microseconds since the Unix epoch from KurrentDB's `created` metadata
/// (100-nanosecond ticks since the Unix epoch). The client's own `created`
/// field is truncated to whole seconds.
pub fn created_micros(metadata: &HashMap<String, String>) -> i64 {
    metadata.get("created").and_then(|ticks| ticks.parse::<i64>().ok()).map_or(0, |ticks| ticks / 10)
}

/// The event log in KurrentDB.
pub struct KurrentStore {
    client: Client,
    /// Prepended to every stream name; reads of `$all` see only these streams.
    /// Empty in production; tests use it to share one server.
    scope: String,
    closed: AtomicBool,
    hint: watch::Receiver<Position>,
    stop_live: watch::Sender<bool>,
}

impl KurrentStore {
    /// Connects to the server `url` names (`esdb://HOST:PORT?tls=false`,
    /// `esdb+discover://…`) and checks that it answers.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_scoped(url, "").await
    }

    /// Like [`open`](Self::open), but every stream name gets `scope` in front
    /// and `$all` reads see only those streams: one server can hold several
    /// independent logs (the conformance tests use this).
    pub async fn open_scoped(url: &str, scope: &str) -> Result<Self, StoreError> {
        let settings: ClientSettings = url.parse().map_err(|e: kurrentdb::ClientSettingsParseError| {
            // The parser's message may quote the URL, credentials included: keep only its kind.
            let detail = e.error().map(|kind| format!(" ({kind})")).unwrap_or_default();
            StoreError::InvalidUrl(format!(
                "EVENTSTORE_URL must look like esdb://HOST:2113?tls=false or esdb+discover://HOSTS{detail}"
            ))
        })?;
        let client = Client::new(settings)
            .map_err(|e| StoreError::Unavailable(format!("creating the KurrentDB client: {e}")))?;
        let (hint_tx, hint) = watch::channel(Position::START);
        let (stop_live, stopped) = watch::channel(false);
        let store = KurrentStore { client, scope: scope.to_owned(), closed: AtomicBool::new(false), hint, stop_live };
        match tokio::time::timeout(CONNECT_TIMEOUT, store.ping()).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(StoreError::Unavailable(format!("KurrentDB did not answer within {CONNECT_TIMEOUT:?}")))
            }
        }
        let head = store.head().await?;
        hint_tx.send_replace(head);
        tokio::spawn(follow_live(store.client.clone(), store.filter(), head, hint_tx, stopped));
        Ok(store)
    }

    fn stream_name(&self, stream: &str) -> String {
        format!("{}{stream}", self.scope)
    }

    /// What `$all` reads keep: this scope's streams, else every non-system event.
    fn filter(&self) -> SubscriptionFilter {
        if self.scope.is_empty() {
            SubscriptionFilter::on_event_type().exclude_system_events()
        } else {
            SubscriptionFilter::on_stream_name().add_prefix(&self.scope)
        }
    }

    /// Whether a `$all` event belongs to this log (the server filter, checked
    /// again: a system event can live in a scoped stream).
    fn keeps(&self, event: &kurrentdb::RecordedEvent) -> bool {
        !event.event_type.starts_with('$') && event.stream_id().starts_with(&self.scope)
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn to_recorded(&self, event: &kurrentdb::RecordedEvent, position: Position) -> Result<RecordedEvent, StoreError> {
        let (schema_version, payload) = decode_metadata(&event.custom_metadata)?;
        let stream = event.stream_id();
        Ok(RecordedEvent {
            position,
            stream: stream.strip_prefix(self.scope.as_str()).unwrap_or(stream).to_owned(),
            version: event.revision,
            event_id: event.id,
            event_type: event.event_type.clone(),
            schema_version,
            data: event.data.to_vec(),
            payload,
            recorded_at_micros: created_micros(&event.metadata),
        })
    }

    /// Opens a forward read of this log's `$all` events from `from` (inclusive).
    async fn read_all_from(
        &self,
        from: Option<LogPosition>,
        count: usize,
    ) -> Result<kurrentdb::ReadStream, StoreError> {
        let position = match from {
            None => StreamPosition::Start,
            Some(p) => StreamPosition::Position(kurrentdb::Position { commit: p.commit, prepare: p.prepare }),
        };
        let options = ReadAllOptions::default().forwards().position(position).filter(self.filter()).max_count(count);
        self.client.read_all(&options).await.map_err(store_error)
    }

    /// The rank of the event at `at` among this log's events sharing its commit position.
    async fn rank_of(&self, at: LogPosition) -> Result<u64, StoreError> {
        if at.commit == at.prepare {
            return Ok(0);
        }
        let mut read = self.read_all_from(Some(LogPosition { commit: at.commit, prepare: 0 }), usize::MAX).await?;
        let mut rank = 0;
        while let Some(resolved) = read.next().await.map_err(store_error)? {
            let Some(event) = resolved.event.as_ref() else { continue };
            if !self.keeps(event) {
                continue;
            }
            let position = LogPosition::from(event.position);
            if position == at {
                return Ok(rank);
            }
            if position.commit != at.commit {
                break;
            }
            rank += 1;
        }
        Err(StoreError::Corrupt(format!(
            "event at commit {} / prepare {} is not in $all where its position says",
            at.commit, at.prepare
        )))
    }

    async fn position_of(&self, event: &kurrentdb::RecordedEvent) -> Result<Position, StoreError> {
        let at = LogPosition::from(event.position);
        if at.commit == u64::MAX {
            // The server's "no position": a stream read of an event from a
            // legacy explicit transaction, whose commit it does not know.
            return Err(StoreError::Corrupt(format!(
                "event {} of {} has no known $all position (legacy explicit transaction)",
                event.id,
                event.stream_id()
            )));
        }
        encode_position(at.commit, self.rank_of(at).await?)
    }

    /// Every event of `stream` (scoped name): (event id → (version, log event)), and its last version.
    async fn scan_stream(
        &self,
        stream: &str,
    ) -> Result<(HashMap<Uuid, kurrentdb::RecordedEvent>, Option<u64>), StoreError> {
        let options = ReadStreamOptions::default().forwards().position(StreamPosition::Start);
        let mut read = self.client.read_stream(stream, &options).await.map_err(store_error)?;
        let mut by_id = HashMap::new();
        let mut last = None;
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(event) = resolved.event {
                        last = Some(event.revision);
                        by_id.insert(event.id, event);
                    }
                }
                Ok(None) => break,
                Err(kurrentdb::Error::ResourceNotFound) => return Ok((HashMap::new(), None)),
                Err(e) => return Err(store_error(e)),
            }
        }
        Ok((by_id, last))
    }

    /// The trait's answer for `events` given the stream's contents, when the
    /// ids decide it on their own: all stored → already stored; some → duplicate.
    async fn decide_by_ids(
        &self,
        events: &[NewEvent],
        by_id: &HashMap<Uuid, kurrentdb::RecordedEvent>,
        current: Option<u64>,
    ) -> Result<Option<AppendResult>, StoreError> {
        let found: Vec<Option<&kurrentdb::RecordedEvent>> = events.iter().map(|e| by_id.get(&e.event_id)).collect();
        match found.first() {
            Some(Some(first)) if found.iter().all(Option::is_some) => Ok(Some(AppendResult {
                first_position: Some(self.position_of(first).await?),
                stream_version: current,
                already_stored: true,
            })),
            _ => match found.iter().position(Option::is_some) {
                Some(i) => Err(StoreError::DuplicateEventId { event_id: events[i].event_id }),
                None => Ok(None),
            },
        }
    }

    /// The position of event `event_id`, just written at `version` of `stream`.
    async fn position_at_version(&self, stream: &str, version: u64, event_id: Uuid) -> Result<Position, StoreError> {
        let options = ReadStreamOptions::default().position(StreamPosition::Position(version)).max_count(1);
        let mut read = self.client.read_stream(stream, &options).await.map_err(store_error)?;
        let resolved = read.next().await.map_err(store_error)?;
        match resolved.as_ref().and_then(|r| r.event.as_ref()) {
            Some(event) if event.id == event_id => self.position_of(event).await,
            _ => {
                Err(StoreError::Corrupt(format!("event {event_id}: written at version {version}, but not found there")))
            }
        }
    }
}

/// Maps a client error; connection trouble is `Unavailable` (callers retry).
fn store_error(e: kurrentdb::Error) -> StoreError {
    match e {
        kurrentdb::Error::ResourceDeleted => StoreError::Corrupt("the stream was deleted in KurrentDB".to_owned()),
        kurrentdb::Error::InternalParsingError(m) => StoreError::Corrupt(format!("KurrentDB sent {m}")),
        // gRPC INVALID_ARGUMENT (3): the request itself is refused, typically an
        // append over the server's `MaxAppendSize`. Retrying cannot help.
        kurrentdb::Error::Grpc { code, message } if i32::from(code) == 3 => StoreError::Corrupt(format!(
            "KurrentDB refused the request: {message} (appends larger than the server's MaxAppendSize are refused)"
        )),
        kurrentdb::Error::AccessDenied => {
            StoreError::Unavailable("KurrentDB denied access: check the credentials in EVENTSTORE_URL".to_owned())
        }
        other => StoreError::Unavailable(format!("KurrentDB: {other}")),
    }
}

/// The event as sent: JSON data marked as JSON when it is exactly a JSON
/// value (so it reads back byte for byte), else binary.
fn event_data(event: &NewEvent) -> kurrentdb::EventData {
    let json = serde_json::from_slice::<&serde_json::value::RawValue>(&event.data)
        .ok()
        .filter(|raw| raw.get().as_bytes() == event.data.as_slice())
        .and_then(|raw| kurrentdb::EventData::json(&event.event_type, &raw).ok());
    json.unwrap_or_else(|| kurrentdb::EventData::binary(&event.event_type, Bytes::from(event.data.clone())))
        .id(event.event_id)
        .metadata(Bytes::from(encode_metadata(event)))
}

#[async_trait]
impl EventStore for KurrentStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.check_open()?;
        // The same up-front refusals as the SQL planner.
        if let Some(event) = events.iter().find(|e| std::str::from_utf8(&e.data).is_err()) {
            return Err(StoreError::InvalidEvent { event_id: event.event_id, problem: "data is not UTF-8" });
        }
        let mut seen = std::collections::HashSet::with_capacity(events.len());
        if let Some(twice) = events.iter().find(|e| !seen.insert(e.event_id)) {
            return Err(StoreError::DuplicateEventId { event_id: twice.event_id });
        }
        let name = self.stream_name(stream);
        let wrong =
            |actual: Option<u64>| StoreError::WrongExpectedVersion { stream: stream.to_owned(), expected, actual };
        for _attempt in 0..MAX_APPEND_ATTEMPTS {
            let (by_id, current) = self.scan_stream(&name).await?;
            if let Some(result) = self.decide_by_ids(&events, &by_id, current).await? {
                return Ok(result);
            }
            let matches = match expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => current.is_none(),
                ExpectedVersion::StreamExists => current.is_some(),
                ExpectedVersion::Exact(v) => current == Some(v),
            };
            if !matches {
                return Err(wrong(current));
            }
            if events.is_empty() {
                return Ok(AppendResult { first_position: None, stream_version: current, already_stored: false });
            }
            // What the server checks: the caller's own expectation where it is
            // exact, else the version just read (never `Any`).
            let state = match expected {
                ExpectedVersion::NoStream | ExpectedVersion::Exact(_) => stream_state(expected),
                ExpectedVersion::Any | ExpectedVersion::StreamExists => {
                    current.map_or(StreamState::NoStream, StreamState::StreamRevision)
                }
            };
            let options = AppendToStreamOptions::default().stream_state(state);
            let data: Vec<kurrentdb::EventData> = events.iter().map(event_data).collect();
            match self.client.append_to_stream(name.as_str(), &options, data).await {
                Ok(written) => {
                    let last = written.next_expected_version;
                    let first_version = (last + 1).checked_sub(events.len() as u64).ok_or_else(|| {
                        StoreError::Corrupt(format!("{stream}: {} events written up to version {last}", events.len()))
                    })?;
                    // The reported position is the write's, not necessarily
                    // its first event's: read that event back.
                    let first_position = self.position_at_version(&name, first_version, events[0].event_id).await?;
                    return Ok(AppendResult {
                        first_position: Some(first_position),
                        stream_version: Some(last),
                        already_stored: false,
                    });
                }
                Err(kurrentdb::Error::WrongExpectedVersion { current: actual, .. }) => {
                    let actual = match actual {
                        kurrentdb::CurrentRevision::Current(v) => Some(v),
                        kurrentdb::CurrentRevision::NoStream => None,
                    };
                    // Someone wrote in between: maybe a retry of these very
                    // events. Read again and decide from the ids first.
                    if matches!(expected, ExpectedVersion::NoStream | ExpectedVersion::Exact(_)) {
                        let (by_id, current) = self.scan_stream(&name).await?;
                        if let Some(result) = self.decide_by_ids(&events, &by_id, current).await? {
                            return Ok(result);
                        }
                        return Err(wrong(current.or(actual)));
                    }
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "{stream}: gave up after {MAX_APPEND_ATTEMPTS} appends lost a race with other writers"
        )))
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.check_open()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let options =
            ReadStreamOptions::default().forwards().position(StreamPosition::Position(from_version)).max_count(limit);
        let mut read = self.client.read_stream(self.stream_name(stream), &options).await.map_err(store_error)?;
        let mut events = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(event) = resolved.event.as_ref() {
                        let position = self.position_of(event).await?;
                        events.push(self.to_recorded(event, position)?);
                    }
                }
                Ok(None) => return Ok(events),
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.check_open()?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Start at the first event of `after`'s commit group and skip through its rank.
        let (from, skip_through) = match decode_position(after) {
            None => (None, None),
            Some((commit, rank)) => (Some(LogPosition { commit, prepare: 0 }), Some((commit, rank))),
        };
        let extra = skip_through.map_or(0, |(_, rank)| rank as usize + 1);
        let mut read = self.read_all_from(from, limit.saturating_add(extra)).await?;
        let mut events = Vec::with_capacity(limit.min(1024));
        let mut group: Option<(u64, u64)> = None; // (commit, rank of the last event seen)
        while events.len() < limit {
            let Some(resolved) = read.next().await.map_err(store_error)? else { break };
            let Some(event) = resolved.event.as_ref() else { continue };
            if !self.keeps(event) {
                continue;
            }
            let at = LogPosition::from(event.position);
            // Reads start at a group's first event (the log's start, or
            // `(commit, 0)`), so every group is seen whole: count within it.
            let rank = match group {
                Some((commit, rank)) if commit == at.commit => rank + 1,
                _ => 0,
            };
            group = Some((at.commit, rank));
            if skip_through
                .is_some_and(|(commit, through)| at.commit < commit || (at.commit == commit && rank <= through))
            {
                continue;
            }
            let position = encode_position(at.commit, rank)?;
            if position <= after {
                continue;
            }
            events.push(self.to_recorded(event, position)?);
        }
        Ok(events)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.check_open()?;
        let options = ReadAllOptions::default().position(StreamPosition::End).filter(self.filter()).max_count(16);
        let mut read = self.client.read_all(&options).await.map_err(store_error)?;
        while let Some(resolved) = read.next().await.map_err(store_error)? {
            if let Some(event) = resolved.event.as_ref().filter(|e| self.keeps(e)) {
                return self.position_of(event).await;
            }
        }
        Ok(Position::START)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check_open()?;
        let options = ReadAllOptions::default().position(StreamPosition::End).max_count(1);
        let mut read = self.client.read_all(&options).await.map_err(store_error)?;
        read.next().await.map_err(store_error)?;
        Ok(())
    }

    fn head_hint(&self) -> watch::Receiver<Position> {
        self.hint.clone()
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.stop_live.send(true);
    }
}

/// Follows `$all` live to wake subscribers, resubscribing after a drop from
/// the last position seen (exclusive) until `stop` turns true.
async fn follow_live(
    client: Client,
    filter: SubscriptionFilter,
    head: Position,
    hint: watch::Sender<Position>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_seen: Option<kurrentdb::Position> = None;
    // The hint only has to grow when the log does; ranks within a group are
    // approximated by counting what this subscription saw.
    let mut group: Option<(u64, u64)> = decode_position(head);
    loop {
        let start = last_seen.map_or(StreamPosition::End, StreamPosition::Position);
        let options = SubscribeToAllOptions::default().position(start).filter(filter.clone());
        let mut subscription = client.subscribe_to_all(&options).await;
        loop {
            let event = tokio::select! {
                event = subscription.next_subscription_event() => event,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            match event {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    let Some(event) = resolved.event.as_ref() else { continue };
                    last_seen = Some(event.position);
                    let commit = event.position.commit;
                    let rank = match group {
                        Some((c, r)) if c == commit => r + 1,
                        _ => 0,
                    };
                    group = Some((commit, rank));
                    if let Ok(position) = encode_position(commit, rank.min(MAX_RANK)) {
                        hint.send_if_modified(|current| {
                            let newer = position > *current;
                            if newer {
                                *current = position;
                            }
                            newer
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "KurrentDB live subscription dropped; resubscribing");
                    break;
                }
            }
        }
        // Wake subscribers anyway: events may have landed while disconnected.
        hint.send_modify(|_| {});
        tokio::select! {
            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_keep_the_order_of_commit_then_rank() {
        let pairs =
            [(0, 0), (0, 1), (1, 0), (127, 0), (127, 5), (128, 0), (1 << 40, 0), (1 << 40, MAX_RANK), (MAX_COMMIT, 0)];
        let encoded: Vec<Position> = pairs.iter().map(|&(c, r)| encode_position(c, r).expect("fits")).collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "{encoded:?}");
        assert!(encoded.iter().all(|p| *p > Position::START));
        for (&(c, r), p) in pairs.iter().zip(&encoded) {
            assert_eq!(decode_position(*p), Some((c, r)));
        }
        assert_eq!(decode_position(Position::START), None);
    }

    #[test]
    fn positions_that_do_not_fit_are_refused_not_wrapped() {
        assert!(matches!(encode_position(MAX_COMMIT + 1, 0), Err(StoreError::Corrupt(_))));
        assert!(matches!(encode_position(0, MAX_RANK + 1), Err(StoreError::Corrupt(_))));
        assert!(matches!(encode_position(u64::MAX, 0), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn expected_versions_map_to_stream_states() {
        assert_eq!(stream_state(ExpectedVersion::Any), StreamState::Any);
        assert_eq!(stream_state(ExpectedVersion::NoStream), StreamState::NoStream);
        assert_eq!(stream_state(ExpectedVersion::StreamExists), StreamState::StreamExists);
        assert_eq!(stream_state(ExpectedVersion::Exact(7)), StreamState::StreamRevision(7));
    }

    #[test]
    fn metadata_keeps_schema_version_and_payload_bytes_exactly() {
        let raw = Bytes::from_static(b"\x00\xffraw body\xc3\x28{\"a\":1}\n");
        let event = NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "WebhookReceived".to_owned(),
            schema_version: 3,
            data: b"{}".to_vec(),
            payload: Some(raw.clone()),
        };
        assert_eq!(decode_metadata(&encode_metadata(&event)).expect("decodes"), (3, Some(raw)));
        let without = NewEvent { payload: None, schema_version: 1, ..event };
        let metadata = encode_metadata(&without);
        assert_eq!(metadata, br#"{"schema_version":1}"#);
        assert_eq!(decode_metadata(&metadata).expect("decodes"), (1, None));
        // An empty payload is still a payload.
        let empty = NewEvent { payload: Some(Bytes::new()), ..without };
        assert_eq!(decode_metadata(&encode_metadata(&empty)).expect("decodes"), (1, Some(Bytes::new())));
    }

    #[test]
    fn foreign_metadata_reads_as_version_one_and_bad_base64_is_corrupt() {
        assert_eq!(decode_metadata(b"").expect("empty"), (1, None));
        assert_eq!(decode_metadata(br#"{"$correlationId":"x"}"#).expect("foreign"), (1, None));
        assert!(matches!(
            decode_metadata(br#"{"schema_version":2,"payload_base64":"not base64!"}"#),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn exact_json_is_sent_as_json_and_anything_else_as_binary() {
        let with_data = |data: &str| NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "T".to_owned(),
            schema_version: 1,
            data: data.as_bytes().to_vec(),
            payload: None,
        };
        // The client's EventData has no public accessors; its Debug output shows the content type.
        let content_type = |data: &str| {
            let debug = format!("{:?}", event_data(&with_data(data)));
            if debug.contains("application/json") {
                "json"
            } else if debug.contains("application/octet-stream") {
                "binary"
            } else {
                panic!("no content type in {debug}")
            }
        };
        assert_eq!(content_type(r#"{"a": [1, 2.50]}"#), "json");
        assert_eq!(content_type("null"), "json");
        // Whitespace around the value would be lost as JSON: kept as bytes.
        assert_eq!(content_type("  [ ]  "), "binary");
        assert_eq!(content_type("not json"), "binary");
        // Sent as JSON, the data is still the caller's bytes, unchanged.
        let data = "{ \"emoji\": \"🦀\",\n \"n\": [1, 2.50, -3e2], \"e\": \"a\\u0000b\" }";
        let debug = format!("{:?}", event_data(&with_data(data)));
        assert!(debug.contains(&format!("{:?}", Bytes::from(data.as_bytes().to_vec()))), "{debug}");
    }

    #[test]
    fn created_ticks_become_microseconds() {
        let metadata = HashMap::from([("created".to_owned(), "17642100001234567".to_owned())]);
        assert_eq!(created_micros(&metadata), 1_764_210_000_123_456);
        assert_eq!(created_micros(&HashMap::new()), 0);
    }
}
