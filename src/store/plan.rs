//! Checks a group of appends against the streams' current state and decides
//! which rows to insert. Pure, so both SQL backends share one implementation
//! of the expected-version and idempotency rules.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::{AppendResult, ExpectedVersion, NewEvent, Position, StoreError};

pub struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedVersion,
    /// Payloads already encoded for storage (see `codec`).
    pub events: Vec<NewEvent>,
    /// The codec of each event's payload, by index; missing means raw.
    pub codecs: Vec<i64>,
}

impl AppendRequest {
    /// Encodes the payloads for storage here, on the caller's task, so the
    /// single writer only writes.
    pub fn encoded(stream: &str, expected: ExpectedVersion, mut events: Vec<NewEvent>) -> Self {
        let codecs = events
            .iter_mut()
            .map(|event| match event.payload.take() {
                Some(payload) => {
                    let (stored, codec) = super::codec::encode(&payload);
                    event.payload = Some(stored);
                    codec
                }
                None => super::codec::RAW,
            })
            .collect();
        AppendRequest { stream: stream.to_owned(), expected, events, codecs }
    }
}

/// An event id already in the log.
#[derive(Debug, Clone)]
pub struct ExistingEvent {
    pub stream: String,
    pub version: u64,
    pub position: Position,
}

/// One row to insert; rows are inserted in order, so positions follow it.
pub struct PlannedRow<'a> {
    pub stream: &'a str,
    pub version: u64,
    pub event: &'a NewEvent,
    pub payload_codec: i64,
}

/// How each request of a group resolves once its rows are inserted.
pub enum PlannedOutcome {
    /// Inserted as rows `first_row..first_row + count` of the plan.
    Insert {
        first_row: usize,
        count: usize,
        stream_version: Option<u64>,
    },
    /// Every event was already stored (by an earlier transaction or earlier in this group).
    AlreadyStored {
        first: AlreadyAt,
        stream_version: Option<u64>,
    },
    Rejected(StoreError),
}

pub enum AlreadyAt {
    Committed(Position),
    Row(usize),
}

pub struct BatchPlan<'a> {
    pub rows: Vec<PlannedRow<'a>>,
    pub outcomes: Vec<PlannedOutcome>,
}

impl BatchPlan<'_> {
    /// Turns the plan into per-request results, given the positions the
    /// backend assigned to `rows` (same order).
    pub fn results(self, row_positions: &[Position]) -> Vec<Result<AppendResult, StoreError>> {
        self.outcomes
            .into_iter()
            .map(|outcome| match outcome {
                PlannedOutcome::Insert { first_row, count, stream_version } => Ok(AppendResult {
                    first_position: (count > 0).then(|| row_positions[first_row]),
                    stream_version,
                    already_stored: false,
                }),
                PlannedOutcome::AlreadyStored { first, stream_version } => Ok(AppendResult {
                    first_position: Some(match first {
                        AlreadyAt::Committed(p) => p,
                        AlreadyAt::Row(i) => row_positions[i],
                    }),
                    stream_version,
                    already_stored: true,
                }),
                PlannedOutcome::Rejected(e) => Err(e),
            })
            .collect()
    }
}

/// Decides a group of appends, in order, as if each ran alone after the ones
/// before it. `versions` holds each named stream's current last version and
/// `existing` every already-stored event among the requests' event ids.
pub fn plan_batch<'a>(
    requests: &'a [AppendRequest],
    mut versions: HashMap<String, Option<u64>>,
    existing: &HashMap<Uuid, ExistingEvent>,
) -> BatchPlan<'a> {
    let mut rows: Vec<PlannedRow<'a>> = Vec::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    // Event ids planned earlier in this group: (stream, row index).
    let mut planned: HashMap<Uuid, (&'a str, usize)> = HashMap::new();

    for request in requests {
        let stream = request.stream.as_str();
        let current = versions.get(stream).copied().flatten();

        // Refused here rather than by the database, which would fail the
        // whole group (every other append committed with this one).
        if let Some(event) = request.events.iter().find(|e| std::str::from_utf8(&e.data).is_err()) {
            outcomes.push(PlannedOutcome::Rejected(StoreError::InvalidEvent {
                event_id: event.event_id,
                problem: "data is not UTF-8",
            }));
            continue;
        }
        let mut seen = HashSet::with_capacity(request.events.len());
        if let Some(event) = request.events.iter().find(|e| !seen.insert(e.event_id)) {
            outcomes.push(PlannedOutcome::Rejected(StoreError::DuplicateEventId { event_id: event.event_id }));
            continue;
        }

        // Where each event id is already stored: (in this stream?, where).
        let found: Vec<Option<(bool, AlreadyAt)>> = request
            .events
            .iter()
            .map(|event| {
                if let Some(e) = existing.get(&event.event_id) {
                    Some((e.stream == stream, AlreadyAt::Committed(e.position)))
                } else {
                    planned.get(&event.event_id).map(|(s, row)| (*s == stream, AlreadyAt::Row(*row)))
                }
            })
            .collect();
        if !found.is_empty() && found.iter().all(|f| matches!(f, Some((true, _)))) {
            if let Some(Some((_, first))) = found.into_iter().next() {
                outcomes.push(PlannedOutcome::AlreadyStored { first, stream_version: current });
                continue;
            }
        } else if let Some(i) = found.iter().position(Option::is_some) {
            let event_id = request.events[i].event_id;
            outcomes.push(PlannedOutcome::Rejected(StoreError::DuplicateEventId { event_id }));
            continue;
        }

        let matches = match request.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(v) => current == Some(v),
        };
        if !matches {
            outcomes.push(PlannedOutcome::Rejected(StoreError::WrongExpectedVersion {
                stream: request.stream.clone(),
                expected: request.expected,
                actual: current,
            }));
            continue;
        }

        let first_row = rows.len();
        let mut version = current.map_or(0, |v| v + 1);
        for (i, event) in request.events.iter().enumerate() {
            planned.insert(event.event_id, (stream, rows.len()));
            let payload_codec = request.codecs.get(i).copied().unwrap_or(super::codec::RAW);
            rows.push(PlannedRow { stream, version, event, payload_codec });
            version += 1;
        }
        let count = request.events.len();
        let stream_version = if count > 0 { Some(version - 1) } else { current };
        versions.insert(request.stream.clone(), stream_version);
        outcomes.push(PlannedOutcome::Insert { first_row, count, stream_version });
    }
    BatchPlan { rows, outcomes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u128) -> NewEvent {
        NewEvent {
            event_id: Uuid::from_u128(id),
            event_type: "Test".into(),
            schema_version: 1,
            data: b"{}".to_vec(),
            payload: None,
        }
    }

    fn request(stream: &str, expected: ExpectedVersion, ids: &[u128]) -> AppendRequest {
        AppendRequest {
            stream: stream.into(),
            expected,
            events: ids.iter().map(|&i| event(i)).collect(),
            codecs: vec![],
        }
    }

    #[test]
    fn the_same_append_twice_in_one_group_is_stored_once() {
        let requests =
            vec![request("s", ExpectedVersion::NoStream, &[1]), request("s", ExpectedVersion::NoStream, &[1])];
        let plan = plan_batch(&requests, HashMap::new(), &HashMap::new());
        assert_eq!(plan.rows.len(), 1);
        let results = plan.results(&[Position(7)]);
        let first = results[0].as_ref().expect("first append");
        let second = results[1].as_ref().expect("second append is idempotent");
        assert!(!first.already_stored);
        assert!(second.already_stored);
        assert_eq!(second.first_position, Some(Position(7)));
    }

    #[test]
    fn a_later_append_sees_the_version_an_earlier_one_planned() {
        let requests = vec![
            request("s", ExpectedVersion::NoStream, &[1, 2]),
            request("s", ExpectedVersion::Exact(1), &[3]),
            request("s", ExpectedVersion::Exact(1), &[4]),
        ];
        let plan = plan_batch(&requests, HashMap::new(), &HashMap::new());
        let versions: Vec<u64> = plan.rows.iter().map(|r| r.version).collect();
        assert_eq!(versions, vec![0, 1, 2]);
        let results = plan.results(&[Position(1), Position(2), Position(3)]);
        assert!(results[1].is_ok());
        assert!(matches!(results[2], Err(StoreError::WrongExpectedVersion { actual: Some(2), .. })));
    }

    #[test]
    fn a_bad_append_is_rejected_alone() {
        let mut not_utf8 = request("c", ExpectedVersion::Any, &[5]);
        not_utf8.events[0].data = vec![0xff];
        let requests = vec![
            request("a", ExpectedVersion::Any, &[1]),
            request("b", ExpectedVersion::Any, &[2, 3, 2]),
            not_utf8,
            request("d", ExpectedVersion::Any, &[4]),
        ];
        let plan = plan_batch(&requests, HashMap::new(), &HashMap::new());
        let streams: Vec<&str> = plan.rows.iter().map(|r| r.stream).collect();
        assert_eq!(streams, vec!["a", "d"]);
        let results = plan.results(&[Position(1), Position(2)]);
        assert!(results[0].is_ok());
        assert!(matches!(
            results[1],
            Err(StoreError::DuplicateEventId { event_id }) if event_id == Uuid::from_u128(2)
        ));
        assert!(matches!(results[2], Err(StoreError::InvalidEvent { .. })));
        assert!(results[3].is_ok());
    }

    #[test]
    fn an_event_id_stored_in_another_stream_is_rejected() {
        let requests = vec![request("b", ExpectedVersion::Any, &[1])];
        let existing = HashMap::from([(
            Uuid::from_u128(1),
            ExistingEvent { stream: "a".into(), version: 0, position: Position(1) },
        )]);
        let plan = plan_batch(&requests, HashMap::new(), &existing);
        assert!(plan.rows.is_empty());
        assert!(matches!(plan.results(&[])[0], Err(StoreError::DuplicateEventId { .. })));
    }
}
