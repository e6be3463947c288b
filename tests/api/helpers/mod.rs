//! Shared test support: a fresh database per test for each backend, and the
//! [`backend_tests!`] macro that runs one test body against both.

pub mod agent_server;
mod app;
pub mod app_server;
mod database;
pub mod kurrent;
mod raw_post;

pub use app::{corpus_files, payload_examples, read_whole_log, sign, TestApp, TEST_SECRET};
pub use database::{Backend, TestDatabase};
pub use raw_post::{answer_before_the_body, post_raw};

/// Polls `check` until it holds, or fails after `limit`.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    limit: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let started = std::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A child process (the real binary) killed when the test ends, passing or not:
/// a failed assertion must not leave a server running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long one backend test may run before it fails instead of hanging.
pub const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// For every `async fn name(backend: Backend)` named, generates
/// `mod name { sqlite, postgres }`: two multi-threaded tokio tests that run the
/// body against each backend (so `cargo test postgres` or `cargo test name`
/// select them). Each run fails after [`TEST_TIMEOUT`] rather than hanging.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::helpers::run_backend_test(
                        super::$name($crate::helpers::Backend::Sqlite),
                    )
                    .await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::helpers::run_backend_test(
                        super::$name($crate::helpers::Backend::Postgres),
                    )
                    .await;
                }
            }
        )+
    };
}
pub(crate) use backend_tests;

/// Like [`backend_tests!`], plus a third run against KurrentDB (`kurrentdb`),
/// for tests of the event store alone. That run skips, with a message, unless
/// the `kurrentdb` feature is built and `EVENTSTORE_URL` is set:
/// `EVENTSTORE_URL='esdb://localhost:2113?tls=false' cargo test --features kurrentdb --test api kurrentdb`.
macro_rules! store_backend_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::helpers::run_backend_test(
                        super::$name($crate::helpers::Backend::Sqlite),
                    )
                    .await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::helpers::run_backend_test(
                        super::$name($crate::helpers::Backend::Postgres),
                    )
                    .await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn kurrentdb() {
                    $crate::helpers::run_kurrent_test(
                        super::$name($crate::helpers::Backend::KurrentDb),
                    )
                    .await;
                }
            }
        )+
    };
}
pub(crate) use store_backend_tests;

/// A remote server is slower than a local database: twice the time.
pub async fn run_kurrent_test(body: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_TIMEOUT * 2, body).await.is_err() {
        panic!("test timed out after {:?}", TEST_TIMEOUT * 2);
    }
}

/// Runs a backend test body, failing it when it takes longer than [`TEST_TIMEOUT`].
pub async fn run_backend_test(body: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_TIMEOUT, body).await.is_err() {
        panic!("test timed out after {TEST_TIMEOUT:?}");
    }
}
