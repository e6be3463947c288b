//! Several `all` instances on one database: the process manager, read models
//! and forwarders run on one at a time, and another takes over when it dies.

use std::time::Duration;

use hookwise::background::LEASE_POLL;

use crate::forward::{post_delivery, start_server, FORWARD_SECRET};
use crate::helpers::{backend_tests, eventually, run_backend_test, Backend, TestApp, TestDatabase};
use crate::metrics::parse;
use crate::test_sink::TestSink;

backend_tests!(the_background_runs_on_one_instance_and_moves_when_it_dies, a_standby_says_so_and_names_the_holder);

/// `hookwise_background_lease_held` as `/metrics` at `base` shows it (`None` if it does not answer).
async fn lease_held(http: &reqwest::Client, base: &str) -> Option<f64> {
    let text = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    parse(&text).get(&("hookwise_background_lease_held".to_owned(), Default::default())).copied()
}

/// The first sink as `GET /api/v1/sinks` at `base` shows it.
async fn first_sink(http: &reqwest::Client, base: &str) -> serde_json::Value {
    let response = http.get(format!("{base}/api/v1/sinks")).send().await.expect("sinks answers");
    let body: serde_json::Value = response.json().await.expect("JSON");
    body["sinks"][0].clone()
}

async fn the_background_runs_on_one_instance_and_moves_when_it_dies(backend: Backend) {
    let Some(db) = TestDatabase::create(backend).await else { return };
    let sink = TestSink::start(FORWARD_SECRET).await;
    let http = reqwest::Client::new();

    // The first instance is the real binary, so that it can die by SIGKILL.
    let (mut first, first_base) = start_server(&db.url, &sink.url());
    eventually(Duration::from_secs(10), "the first instance takes the lease", || async {
        lease_held(&http, &first_base).await == Some(1.0)
    })
    .await;
    let forward = format!("main={}", sink.url());
    let second = TestApp::spawn_on(db.share(), &["--forward", &forward, "--forward-secret", FORWARD_SECRET]).await;
    let second_base = second.url("");

    // The second stands by through several of its tries while the first holds the lease.
    tokio::time::sleep(LEASE_POLL * 3).await;
    assert_eq!(lease_held(&http, &second_base).await, Some(0.0));
    assert_eq!(first_sink(&http, &second_base).await["state"], "standby");
    assert_eq!(first_sink(&http, &first_base).await["state"], "healthy");

    // Deliveries to either instance are forwarded once, by the first alone.
    for n in 1..=10 {
        post_delivery(&http, if n % 2 == 0 { &first_base } else { &second_base }, n).await;
    }
    eventually(Duration::from_secs(15), "the first forwards all ten", || async { sink.taken_positions().len() == 10 })
        .await;
    let standby = first_sink(&http, &second_base).await;
    assert_eq!(standby["state"], "standby");
    assert!(standby.get("last_success_at").is_none(), "the standby sent nothing: {standby}");
    // Killed only once its checkpoint holds all ten, so that a resend cannot blur what follows.
    eventually(Duration::from_secs(10), "the first's checkpoint reaches ten", || async {
        first_sink(&http, &first_base).await["position"] == 10
    })
    .await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reaping the first instance");

    // Its lease died with it: the second takes over and carries on from the checkpoint.
    eventually(Duration::from_secs(30), "the second takes the lease", || async {
        lease_held(&http, &second_base).await == Some(1.0)
    })
    .await;
    for n in 11..=15 {
        post_delivery(&http, &second_base, n).await;
    }
    eventually(Duration::from_secs(15), "the second forwards the rest", || async {
        sink.taken_positions().len() >= 15
    })
    .await;
    assert_eq!(sink.taken_positions(), (1..=15).collect::<Vec<u64>>(), "each event forwarded once, in order");
    assert_eq!(first_sink(&http, &second_base).await["state"], "healthy");
    second.stop().await;
    drop(db);
}

/// The backend process holding the background lease's advisory lock in `db`,
/// if any: that key alone (appends take advisory locks of their own, for the
/// length of their transaction).
async fn lease_holder_pid(client: &tokio_postgres::Client) -> Option<i32> {
    let key = hookwise::sql::BACKGROUND_LEASE_LOCK;
    let row = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND classid::bigint = $1 AND objid::bigint = $2",
            &[&(key >> 32), &(key & 0xffff_ffff)],
        )
        .await
        .expect("reading pg_locks");
    row.map(|r| r.get(0))
}

/// PostgreSQL alone: only there can a holder lose its lease while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_session_ends_stands_by_and_takes_the_lease_again() {
    run_backend_test(async {
        let Some(db) = TestDatabase::create(Backend::Postgres).await else { return };
        let sink = TestSink::start(FORWARD_SECRET).await;
        let forward = format!("relay={}", sink.url());
        let app = TestApp::spawn_on(db, &["--forward", &forward, "--forward-secret", FORWARD_SECRET]).await;
        let (client, connection) = tokio_postgres::connect(&app.db.url, tokio_postgres::NoTls).await.expect("connects");
        tokio::spawn(connection);
        let http = reqwest::Client::new();
        let base = app.url("");

        eventually(Duration::from_secs(10), "the instance takes the lease", || async {
            lease_holder_pid(&client).await.is_some()
        })
        .await;
        // The server ends the lease's session, as it would after losing sight of the host.
        let first_session = lease_holder_pid(&client).await.expect("a holder");
        client.execute("SELECT pg_terminate_backend($1)", &[&first_session]).await.expect("terminating");

        // The instance notices, stops its work and takes the lease again on a new session.
        eventually(Duration::from_secs(15), "the lease is taken again", || async {
            lease_holder_pid(&client).await.is_some_and(|pid| pid != first_session)
        })
        .await;
        eventually(Duration::from_secs(5), "it leads again", || async { lease_held(&http, &base).await == Some(1.0) })
            .await;
        // And the work runs again: a delivery is forwarded.
        post_delivery(&http, &base, 1).await;
        eventually(Duration::from_secs(15), "the delivery is forwarded", || async {
            sink.taken_positions() == vec![1]
        })
        .await;
        app.stop().await;
    })
    .await;
}

/// A second instance that finds the lease taken says, once, that it stands
/// by, and who holds the lease (here: the first binary's pid).
async fn a_standby_says_so_and_names_the_holder(backend: Backend) {
    use std::io::BufRead;
    let Some(db) = TestDatabase::create(backend).await else { return };
    // PostgreSQL's advisory locks are cluster-wide: another deployment on
    // another database of the same server holds the same lock key, and must
    // not be taken for this one's holder.
    let _neighbour = match backend {
        Backend::Postgres => {
            let other = TestDatabase::create(Backend::Postgres).await.expect("a second database");
            let (client, connection) =
                tokio_postgres::connect(&other.url, tokio_postgres::NoTls).await.expect("connects");
            tokio::spawn(connection);
            client
                .execute("SELECT pg_advisory_lock($1)", &[&0x686f_6f6b_6267_6e64_i64])
                .await
                .expect("the neighbour's lease");
            Some((other, client))
        }
        _ => None,
    };
    let sink = TestSink::start(FORWARD_SECRET).await;
    let http = reqwest::Client::new();
    let (first, first_base) = start_server(&db.url, &sink.url());
    let first = crate::helpers::KillOnDrop(first);
    eventually(Duration::from_secs(10), "the first instance takes the lease", || async {
        lease_held(&http, &first_base).await == Some(1.0)
    })
    .await;

    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_hookwise"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env("GITHUB_APP_WEBHOOK_SECRET", crate::helpers::TEST_SECRET)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting the second instance");
    let stderr = second.stderr.take().expect("piped stderr");
    let _second = crate::helpers::KillOnDrop(second);
    let (lines, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let standing_by = loop {
        match said.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("standing by") => break line,
            Ok(_) => continue,
            Err(e) => panic!("the second instance never said it stands by: {e}"),
        }
    };
    assert!(standing_by.contains(&format!("pid {}", first.0.id())), "the holder is named: {standing_by}");
}
