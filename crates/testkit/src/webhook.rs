//! A webhook receiver on loopback whose behaviour a test can change (fail the next N requests,
//! answer with a fixed status, delay), what it acknowledged, and the at-least-once ordering
//! check the sink tests apply to it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// A Standard Webhooks secret for tests.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One request the receiver acknowledged.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub path: String,
    pub webhook_id: String,
    pub events: Vec<Value>,
}

impl Delivery {
    pub fn seqs(&self) -> Vec<u64> {
        self.events
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    }
}

/// A webhook receiver on 127.0.0.1 that records what it acknowledged (2xx). Tests steer it:
/// fail the next N requests with 500, answer every request with a fixed status, or delay.
#[derive(Clone, Default)]
pub struct Receiver {
    pub acknowledged: Arc<Mutex<Vec<Delivery>>>,
    pub requests: Arc<AtomicUsize>,
    pub fail_next: Arc<AtomicUsize>,
    /// Non-zero: answer every request with this status.
    pub status: Arc<AtomicU16>,
    pub delay_ms: Arc<AtomicU64>,
    /// Events acknowledged so far (kept even when `discard` is set).
    pub count: Arc<AtomicU64>,
    /// Count events without keeping them (benchmarks with millions of events).
    pub discard: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    /// Serves on `addr` (port 0 for any) on a thread of its own; returns the bound address.
    pub fn start(&self, addr: &str) -> SocketAddr {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let bound = listener.local_addr().unwrap();
        let this = self.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new()
                    .route("/{*path}", post(receive))
                    .with_state(this);
                axum::serve(listener, app).await.unwrap();
            });
        });
        bound
    }

    pub fn seqs(&self) -> Vec<u64> {
        self.acknowledged
            .lock()
            .unwrap()
            .iter()
            .flat_map(Delivery::seqs)
            .collect()
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.acknowledged.lock().unwrap().clone()
    }

    /// Every acknowledged event, in the order received.
    pub fn events(&self) -> Vec<Value> {
        self.acknowledged
            .lock()
            .unwrap()
            .iter()
            .flat_map(|d| d.events.clone())
            .collect()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    receiver.requests.fetch_add(1, Ordering::SeqCst);
    let delay = receiver.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let status = receiver.status.load(Ordering::SeqCst);
    if status != 0 {
        return StatusCode::from_u16(status).unwrap();
    }
    if receiver
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if receiver.discard.load(Ordering::SeqCst) {
        // Counting the top-level objects is enough: bodies are an object or an array of them.
        let events = if body.first() == Some(&b'[') {
            serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&body)
                .unwrap()
                .len()
        } else {
            1
        };
        receiver.count.fetch_add(events as u64, Ordering::SeqCst);
        return StatusCode::NO_CONTENT;
    }
    let value: Value = serde_json::from_slice(&body).unwrap();
    let events = match value {
        Value::Array(events) => events,
        one => vec![one],
    };
    receiver
        .count
        .fetch_add(events.len() as u64, Ordering::SeqCst);
    receiver.acknowledged.lock().unwrap().push(Delivery {
        path: uri.path().to_owned(),
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        events,
    });
    StatusCode::NO_CONTENT
}

/// Checks that every received event appears, that seqs never skip ahead (a redelivery after a
/// crash may go back, never forward past a gap), and that a seq always has the same id.
pub fn assert_no_loss_no_reorder(seqs_and_ids: &[(u64, String)], last_seq: u64) {
    let mut highest = 0u64;
    let mut ids: BTreeMap<u64, String> = BTreeMap::new();
    for (seq, id) in seqs_and_ids {
        assert!(
            *seq <= highest + 1,
            "seq {seq} arrived after {highest}: something was skipped or reordered"
        );
        highest = highest.max(*seq);
        let known = ids.entry(*seq).or_insert_with(|| id.clone());
        assert_eq!(known, id, "seq {seq} was redelivered with another id");
    }
    assert_eq!(
        ids.keys().copied().collect::<Vec<_>>(),
        (1..=last_seq).collect::<Vec<_>>(),
        "not every event arrived"
    );
}
