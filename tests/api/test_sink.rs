//! A real HTTP sink for the forwarder's tests: records every batch it is
//! sent, and can answer 500, vanish (closed port), or answer too slowly.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use poem::listener::TcpListener;
use poem::web::Data;
use poem::{handler, post, EndpointExt, Request, Response, Route, Server};
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// Answers 500: the batch was not taken.
    Fail,
    /// Takes the batch, then answers after this delay (past the forwarder's timeout).
    SlowAccept(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub batch_id: String,
    pub body: Bytes,
    pub at: Instant,
    pub wall: time::OffsetDateTime,
    /// The sink took the batch (it would keep it even if its answer is lost).
    pub taken: bool,
    pub signature_valid: bool,
}

struct SinkState {
    secret: Vec<u8>,
    mode: Mutex<Mode>,
    received: Mutex<Vec<Received>>,
}

pub struct TestSink {
    pub addr: SocketAddr,
    state: Arc<SinkState>,
    server: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl TestSink {
    pub async fn start(secret: &str) -> TestSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the sink");
        let addr = listener.local_addr().expect("sink address");
        drop(listener);
        let state = Arc::new(SinkState {
            secret: secret.as_bytes().to_vec(),
            mode: Mutex::new(Mode::Accept),
            received: Mutex::new(Vec::new()),
        });
        let mut sink = TestSink { addr, state, server: None };
        sink.restart().await;
        sink
    }

    pub fn url(&self) -> String {
        format!("http://{}/batches", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("lock") = mode;
    }

    /// Closes the port: connections are refused until [`TestSink::restart`].
    pub async fn stop(&mut self) {
        if let Some((shutdown, task)) = self.server.take() {
            let _ = shutdown.send(());
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = Route::new().at("/batches", post(receive)).data(self.state.clone());
        let listener = TcpListener::bind(self.addr);
        let task = tokio::spawn(async move {
            let _ = Server::new(listener)
                .run_with_graceful_shutdown(
                    app,
                    async {
                        let _ = stopped.await;
                    },
                    Some(Duration::from_millis(100)),
                )
                .await;
        });
        // Wait until the port answers.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.server = Some((shutdown, task));
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }

    /// The batches the sink took, each batch id once, in arrival order.
    pub fn taken_batches(&self) -> Vec<Received> {
        let mut seen = std::collections::HashMap::<String, Bytes>::new();
        let mut batches = Vec::new();
        for r in self.received().into_iter().filter(|r| r.taken) {
            match seen.get(&r.batch_id) {
                Some(body) => assert_eq!(body, &r.body, "a resent batch carries the same bytes"),
                None => {
                    seen.insert(r.batch_id.clone(), r.body.clone());
                    batches.push(r);
                }
            }
        }
        batches
    }

    /// Every event taken, after de-duplication by batch id, in order.
    pub fn taken_events(&self) -> Vec<serde_json::Value> {
        self.taken_batches()
            .iter()
            .flat_map(|b| {
                let events: Vec<serde_json::Value> = serde_json::from_slice(&b.body).expect("a batch is a JSON array");
                events
            })
            .collect()
    }

    pub fn taken_positions(&self) -> Vec<u64> {
        self.taken_events().iter().map(|e| e["position"].as_u64().expect("position")).collect()
    }
}

#[handler]
async fn receive(req: &Request, body: Bytes, state: Data<&Arc<SinkState>>) -> Response {
    let mode = *state.mode.lock().expect("lock");
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut mac = Hmac::<Sha256>::new_from_slice(&state.secret).expect("hmac key");
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let received = Received {
        batch_id: header("x-hookwise-batch"),
        signature_valid: header("x-hookwise-signature-256") == expected,
        body,
        at: Instant::now(),
        wall: time::OffsetDateTime::now_utc(),
        taken: mode != Mode::Fail,
    };
    state.received.lock().expect("lock").push(received);
    match mode {
        Mode::Accept => Response::builder().status(poem::http::StatusCode::OK).finish(),
        Mode::Fail => Response::builder().status(poem::http::StatusCode::INTERNAL_SERVER_ERROR).body("boom"),
        Mode::SlowAccept(delay) => {
            tokio::time::sleep(delay).await;
            Response::builder().status(poem::http::StatusCode::OK).finish()
        }
    }
}
