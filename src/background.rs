//! Which instance runs the work that follows the log. Several `all`
//! instances may share one database; the process manager, the read models,
//! the forwarders and reconciliation run on one of them at a time, under the
//! database's background lease, and another takes over when that one stops or
//! dies (DESIGN.md, "Growing past one machine"). The executor is not under the
//! lease: its claims on outbox commands already let every instance run one.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sql::SqlDb;

/// How often a standby instance tries for the lease, and its holder checks it.
pub const LEASE_POLL: Duration = Duration::from_secs(1);
/// A holder whose check takes longer than this treats the lease as lost.
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the tasks `start` spawns while this instance holds the background
/// lease, and only then. When the lease is lost (the database stopped
/// answering its holder) the tasks are stopped and awaited before it stands by
/// again. Returns once `stop` turns true and the tasks have ended; the lease is
/// released after them, so a successor never starts beside them.
/// `leading_changed` hears when this instance starts leading (`true`) and when
/// it loses the lease and stands by again (`false`); not at shutdown.
pub async fn run_while_leading(
    db: SqlDb,
    start: impl Fn(watch::Receiver<bool>) -> Vec<JoinHandle<()>>,
    leading_changed: impl Fn(bool),
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let mut announced = false;
        let lease = loop {
            if *stop.borrow() {
                return;
            }
            match db.try_take_background_lease().await {
                Ok(Some(lease)) => break lease,
                Ok(None) if !announced => {
                    announced = true;
                    let holder = db.background_lease_holder().await;
                    tracing::info!(
                        holder = holder.as_deref().unwrap_or("unknown"),
                        "standing by: another instance holds the background lease and runs the process manager, \
                         read models and forwarders; this one takes over when it stops"
                    );
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not try for the background lease; retrying"),
            }
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(LEASE_POLL) => {}
            }
        };
        tracing::info!(
            "this instance holds the background lease: running the process manager, read models and forwarders"
        );
        leading_changed(true);
        let (stop_term, term_stopped) = watch::channel(false);
        let tasks = start(term_stopped);
        let lost = loop {
            tokio::select! {
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break false;
                    }
                }
                _ = tokio::time::sleep(LEASE_POLL) => {
                    let problem = match tokio::time::timeout(LEASE_CHECK_TIMEOUT, lease.check()).await {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {LEASE_CHECK_TIMEOUT:?}"),
                    };
                    tracing::error!(error = %problem, "lost the background lease; stopping the background work");
                    break true;
                }
            }
        };
        let _ = stop_term.send(true);
        for task in tasks {
            let _ = task.await;
        }
        drop(lease);
        if !lost {
            return;
        }
        leading_changed(false);
    }
}
