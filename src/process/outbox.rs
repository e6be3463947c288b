//! The outbox: the process manager's commands, each a row keyed by its
//! derived command id, claimed by executors with a lease. The process manager
//! inserts rows in the same transaction as its checkpoint; the executor
//! claims and marks them. Every statement on the table is here.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::Notify;
use uuid::Uuid;

use super::repository_settings::{RepositorySettingsRef, READ_REPOSITORY_SETTINGS};
use super::{command_id, enrichment_command_id, PullRequestRef, ENRICH_PULL_REQUEST};
use crate::sql::{Dialect, SqlDb, SqlError, SqlValue, Statement};
use crate::sql_params;
use crate::store::now_micros;
use crate::triggers::Step;

/// Longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    /// Due at `due_at` (again, after a failed attempt or a "not yet").
    Pending,
    Done,
    /// Failed its last attempt; an admin retry enqueues a new command.
    Abandoned,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Done => "done",
            OutboxStatus::Abandoned => "abandoned",
        }
    }
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// One step of a trigger.
    Trigger { trigger_id: Uuid, step: Step },
    /// A closed pull request's figures (no trigger's step).
    Enrichment { subject_id: Uuid, pull_request: PullRequestRef },
    /// Reading a repository's `.github/hookwise.yml` (no trigger's step).
    RepositorySettings { subject_id: Uuid, repository: RepositorySettingsRef },
}

impl Command {
    /// The step's name, as stored and in metrics.
    pub fn step_name(&self) -> &'static str {
        match self {
            Command::Trigger { step, .. } => step.as_str(),
            Command::Enrichment { .. } => ENRICH_PULL_REQUEST,
            Command::RepositorySettings { .. } => READ_REPOSITORY_SETTINGS,
        }
    }

    /// The trigger, or the enrichment's subject.
    pub fn subject(&self) -> Uuid {
        match self {
            Command::Trigger { trigger_id, .. } => *trigger_id,
            Command::Enrichment { subject_id, .. } | Command::RepositorySettings { subject_id, .. } => *subject_id,
        }
    }
}

/// A command an executor holds for the length of its lease.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub command_id: Uuid,
    /// This attempt's number (1 for the first).
    pub attempts: u32,
    pub command: Command,
}

/// The row of a trigger's step; a second insert of the same command is a no-op.
pub fn enqueue(trigger_id: Uuid, step: Step, retry: u32) -> Statement {
    let now = now_micros();
    Statement::new(
        "INSERT INTO outbox (command_id, trigger_id, step, status, attempts, due_at, created_at, updated_at)
         VALUES (?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT (command_id) DO NOTHING",
        sql_params![
            command_id(trigger_id, step, retry).to_string(),
            trigger_id.to_string(),
            step.as_str(),
            now,
            now,
            now
        ],
    )
}

/// Enqueues the enrichment of a PR that just closed, only if the agent has
/// acted in its repository (see `agent_repositories`). Decided in SQL
/// because the rows of the same batch are not visible to the handler; as
/// `agent_repositories` is derived from the log in log order, a replay
/// decides the same for every closing.
pub fn enqueue_enrichment(subject: Uuid, pr: &PullRequestRef) -> Result<Statement, serde_json::Error> {
    let arguments = serde_json::to_string(pr)?;
    let now = now_micros();
    Ok(Statement::new(
        "INSERT INTO outbox (command_id, subject_id, step, status, attempts, due_at, created_at, updated_at, arguments)
         SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), 'pending', 0, CAST(? AS BIGINT),
            CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT)
         WHERE EXISTS (SELECT 1 FROM agent_repositories WHERE repository_id = ?)
         ON CONFLICT (command_id) DO NOTHING",
        sql_params![
            enrichment_command_id(subject, 0).to_string(),
            subject.to_string(),
            ENRICH_PULL_REQUEST,
            now,
            now,
            now,
            arguments,
            pr.repository_id
        ],
    ))
}

/// Enqueues a reading of a repository's settings file; its command id is
/// its subject's, so the same cause enqueues it once.
pub fn enqueue_settings_read(
    subject: Uuid,
    repository: &RepositorySettingsRef,
) -> Result<Statement, serde_json::Error> {
    let arguments = serde_json::to_string(repository)?;
    let now = now_micros();
    Ok(Statement::new(
        "INSERT INTO outbox (command_id, subject_id, step, status, attempts, due_at, created_at, updated_at, arguments)
         VALUES (?, ?, ?, 'pending', 0, ?, ?, ?, ?) ON CONFLICT (command_id) DO NOTHING",
        sql_params![
            super::derive_command_id(subject, READ_REPOSITORY_SETTINGS, 0).to_string(),
            subject.to_string(),
            READ_REPOSITORY_SETTINGS,
            now,
            now,
            now,
            arguments
        ],
    ))
}

/// Enqueues an admin's retry of an abandoned enrichment: a new command with
/// the first one's pull request (its outbox row is derived from the log, so a
/// replay finds it there too).
pub fn enqueue_enrichment_retry(subject: Uuid, retry: u32) -> Statement {
    let now = now_micros();
    Statement::new(
        "INSERT INTO outbox (command_id, subject_id, step, status, attempts, due_at, created_at, updated_at, arguments)
         SELECT CAST(? AS TEXT), subject_id, step, 'pending', 0, CAST(? AS BIGINT), CAST(? AS BIGINT),
            CAST(? AS BIGINT), arguments
         FROM outbox WHERE command_id = ?
         ON CONFLICT (command_id) DO NOTHING",
        sql_params![
            enrichment_command_id(subject, retry).to_string(),
            now,
            now,
            now,
            enrichment_command_id(subject, 0).to_string()
        ],
    )
}

/// The pull request of an enrichment, for the admin retry: found through its
/// first command (only to locate the PR's stream).
pub async fn enrichment_pull_request(db: &SqlDb, subject: Uuid) -> Result<Option<PullRequestRef>, SqlError> {
    let rows = db
        .query(
            "SELECT arguments FROM outbox WHERE command_id = ?",
            sql_params![enrichment_command_id(subject, 0).to_string()],
        )
        .await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let arguments: Option<String> = row.get(0)?;
    Ok(arguments.as_deref().and_then(|a| serde_json::from_str(a).ok()))
}

/// Wakes this instance's executor once enqueued commands are committed, so
/// it need not poll for them. One permit is kept when nobody waits: a wake
/// between the executor's last claim and its wait is not lost.
#[derive(Clone, Default)]
pub struct ExecutorWake(Arc<Notify>);

impl ExecutorWake {
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next wake (at once if one came since the last).
    pub async fn woken(&self) {
        self.0.notified().await
    }
}

/// The PostgreSQL channel on which a commit that enqueued commands wakes
/// every instance's executor (a hint: executors also poll).
pub const WAKE_CHANNEL: &str = "hookwise_outbox";

/// The advisory lock that makes claims on PostgreSQL take turns (each takes
/// a millisecond), so two instances never claim two commands of the same
/// subject at once: the second claim sees the first one committed.
const CLAIM_LOCK: i64 = 0x686f_6f6b_6f75_7462;

/// The statement that, inside a transaction that enqueued commands, wakes
/// the executors of every instance when it commits (PostgreSQL delivers a
/// `NOTIFY` at commit, once per transaction however often it is sent).
pub fn wake_executors(dialect: Dialect) -> Option<Statement> {
    match dialect {
        Dialect::Postgres => Some(Statement::new(format!("SELECT pg_notify('{WAKE_CHANNEL}', '')"), Vec::new())),
        Dialect::Sqlite => None,
    }
}

/// Claims the most overdue pending command for `lease`, counting an attempt,
/// unless another command of its trigger (or enrichment subject) is claimed
/// now: a subject's steps run one at a time, in due order, on every instance.
/// Nor one of `in_flight`, the subjects the caller is performing a step of
/// whatever their claims say: a step that outlasts its lease may be taken over
/// by another instance (that is what the lease is for), never run twice at
/// once by the one performing it.
pub async fn claim(db: &SqlDb, lease: Duration, in_flight: &[Uuid]) -> Result<Option<Claimed>, SqlError> {
    let now = now_micros();
    let (lock, take_turn) = match db.dialect() {
        Dialect::Postgres => {
            ("FOR UPDATE SKIP LOCKED", vec![Statement::new("SELECT pg_advisory_xact_lock(?)", sql_params![CLAIM_LOCK])])
        }
        Dialect::Sqlite => ("", Vec::new()),
    };
    let mine = if in_flight.is_empty() {
        String::new()
    } else {
        let marks = vec!["?"; in_flight.len()].join(", ");
        format!("\n               AND COALESCE(due.trigger_id, due.subject_id) NOT IN ({marks})")
    };
    let sql = format!(
        "UPDATE outbox SET claimed_until = ?, attempts = attempts + 1, updated_at = ?
         WHERE command_id = (
             SELECT command_id FROM outbox AS due
             WHERE status = 'pending' AND due_at <= ? AND (claimed_until IS NULL OR claimed_until < ?)
               AND NOT EXISTS (
                 SELECT 1 FROM outbox AS busy
                 WHERE busy.status = 'pending' AND busy.claimed_until >= ?
                   AND ((due.trigger_id IS NOT NULL AND busy.trigger_id = due.trigger_id)
                     OR (due.subject_id IS NOT NULL AND busy.subject_id = due.subject_id))){mine}
             ORDER BY due_at LIMIT 1 {lock})
         RETURNING command_id, trigger_id, subject_id, step, attempts, arguments"
    );
    let until = now + lease.as_micros() as i64;
    let mut statements = take_turn;
    let mut params = sql_params![until, now, now, now, now];
    params.extend(in_flight.iter().map(|subject| SqlValue::Text(subject.to_string())));
    statements.push(Statement::new(sql, params));
    let rows = db.write_returning(statements).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    let command_id: String = row.get(0)?;
    let step: String = row.get(3)?;
    let invalid = |what: String| SqlError::Database(format!("outbox command {command_id}: {what}"));
    let uuid = |text: Option<String>| -> Result<Uuid, SqlError> {
        let text = text.ok_or_else(|| invalid("no subject".into()))?;
        Uuid::parse_str(&text).map_err(|e| invalid(e.to_string()))
    };
    let command = if step == ENRICH_PULL_REQUEST {
        let arguments: Option<String> = row.get(5)?;
        let pull_request = arguments
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
            .ok_or_else(|| invalid("an enrichment without its pull request".into()))?;
        Command::Enrichment { subject_id: uuid(row.get(2)?)?, pull_request }
    } else if step == READ_REPOSITORY_SETTINGS {
        let arguments: Option<String> = row.get(5)?;
        let repository = arguments
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok())
            .ok_or_else(|| invalid("a settings reading without its repository".into()))?;
        Command::RepositorySettings { subject_id: uuid(row.get(2)?)?, repository }
    } else {
        let step = Step::parse(&step).ok_or_else(|| invalid(format!("unknown step {step}")))?;
        Command::Trigger { trigger_id: uuid(row.get(1)?)?, step }
    };
    Ok(Some(Claimed {
        command_id: Uuid::parse_str(&command_id).map_err(|e| invalid(e.to_string()))?,
        attempts: row.get::<u64>(4)? as u32,
        command,
    }))
}

/// When the next pending command falls due or its claim runs out, whichever
/// is later (`None`: nothing pending). What an idle executor sleeps until,
/// besides wake-ups.
pub async fn next_due(db: &SqlDb) -> Result<Option<i64>, SqlError> {
    let rows = db
        .query(
            "SELECT CAST(MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > due_at
                 THEN claimed_until ELSE due_at END) AS BIGINT)
             FROM outbox WHERE status = 'pending'",
            Vec::new(),
        )
        .await?;
    match rows.first() {
        Some(row) => row.get::<Option<i64>>(0),
        None => Ok(None),
    }
}

/// Releases a claimed command with its new status (and, when pending, when it is due).
pub async fn mark(
    db: &SqlDb,
    command_id: Uuid,
    status: OutboxStatus,
    due_at: Option<i64>,
    error: Option<&str>,
) -> Result<(), SqlError> {
    let now = now_micros();
    db.write(vec![Statement::new(
        "UPDATE outbox SET status = ?, due_at = COALESCE(?, due_at), claimed_until = NULL,
             last_error = ?, updated_at = ? WHERE command_id = ?",
        sql_params![status.as_str(), due_at, error, now, command_id.to_string()],
    )])
    .await?;
    Ok(())
}

/// Puts a command back for later without counting the attempt (a step that
/// only waits, such as following a conversation, never runs out of attempts).
pub async fn defer(db: &SqlDb, command_id: Uuid, due_at: i64) -> Result<(), SqlError> {
    let now = now_micros();
    db.write(vec![Statement::new(
        "UPDATE outbox SET status = 'pending', due_at = ?, claimed_until = NULL, attempts = attempts - 1,
             updated_at = ? WHERE command_id = ?",
        sql_params![due_at, now, command_id.to_string()],
    )])
    .await?;
    Ok(())
}

/// The delay before attempt `attempt + 1`: exponential from `base`, with jitter.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(base)
        .with_max_delay(MAX_RETRY_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(MAX_RETRY_DELAY)
}
