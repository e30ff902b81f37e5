//! End to end: the real binary (`dirsync deliver`, `events --resend-to`, `status`) delivering
//! synthetic commits to webhook receivers on loopback: a Python receiver that checks every
//! signature with the PyPI `standardwebhooks` package, and a Rust receiver that can fail,
//! reject, hang or vanish.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::*;
use dirsync_testkit::webhook::*;
use dirsync_testkit::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A receiver that accepts a request only if `standardwebhooks.Webhook(secret).verify` does,
/// and prints one JSON line per accepted request: path, webhook-id, the payload. Its handler
/// threads write whole lines under one lock (two sinks deliver at once: unlocked `print`s of
/// two threads interleaved into one unparseable line).
const PYTHON_RECEIVER: &str = r#"
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from standardwebhooks import Webhook

hook = Webhook(sys.argv[1])
out = threading.Lock()

def emit(line):
    with out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"])).decode()
        try:
            payload = hook.verify(body, {k: v for k, v in self.headers.items()})
        except Exception as err:
            self.send_response(401)
            self.end_headers()
            self.wfile.write(str(err).encode())
            return
        emit(json.dumps({"path": self.path, "id": self.headers["webhook-id"], "payload": payload}))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
emit(str(server.server_address[1]))
server.serve_forever()
"#;

#[test]
fn signatures_verify_with_the_python_standard_webhooks_library() {
    let python = python();
    let mut child = Command::new(&python)
        .args(["-c", PYTHON_RECEIVER, SECRET])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {} ({err}): create it with `python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt` or set DIRSYNC_TEST_PYTHON",
                python.display()
            )
        });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _guard = Running(child);
    let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();

    let env = sink_dir("");
    env.tenant(
        "acme",
        &format!(
            "[[sinks]]\ntype = \"webhook\"\nname = \"single\"\nurl = \"http://127.0.0.1:{port}/single\"\nsecret_file = \"secret\"\n\n\
             [[sinks]]\ntype = \"webhook\"\nname = \"batched\"\nurl = \"http://127.0.0.1:{port}/batched\"\nsecret_file = \"secret\"\nbatch_size = 4\n"
        ),
    );
    let last = env.commit_users("acme", 0..10);
    assert_eq!(last, 10);

    let out = env.output(&["deliver", "acme", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: Vec<Value> = env.events("acme", 0);
    let mut single = Vec::new();
    let mut batched = Vec::new();
    for _ in 0..(10 + 3) {
        let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if line["path"] == "/single" {
            assert_eq!(line["id"], line["payload"]["id"]);
            single.push(line["payload"].clone());
        } else {
            let events = line["payload"].as_array().unwrap().clone();
            let first = events[0]["id"].as_str().unwrap().trim_start_matches("evt_");
            let last = events[events.len() - 1]["id"]
                .as_str()
                .unwrap()
                .trim_start_matches("evt_");
            assert_eq!(line["id"], format!("batch_{first}_{last}"));
            batched.push(events.len());
            for event in events {
                assert!(stored.contains(&event));
            }
        }
    }
    // The single sink got every event, verified, in order, exactly as stored.
    assert_eq!(single, stored);
    assert_eq!(batched, vec![4, 4, 2]);

    // The receiver does verify: a wrong signature is refused.
    let refused = raw_http::post_with_bad_signature(port);
    assert_eq!(refused, 401);
}

/// A plain-HTTP POST without reqwest's blocking feature: one request over a TcpStream.
mod raw_http {
    use std::io::{Read, Write};

    pub fn post_with_bad_signature(port: u16) -> u16 {
        let body = r#"{"id":"evt_x"}"#;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let request = format!(
            "POST /single HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             webhook-id: evt_x\r\nwebhook-timestamp: {now}\r\nwebhook-signature: v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

fn webhook(name: &str, addr: impl std::fmt::Display, extra: &str) -> String {
    format!("[[sinks]]\ntype = \"webhook\"\nname = \"{name}\"\nurl = \"http://{addr}/hook\"\nsecret_file = \"secret\"\nmax_backoff_seconds = 1\n{extra}\n")
}

#[test]
fn a_receiver_that_fails_for_a_while_gets_every_event_in_order() {
    let receiver = Receiver::default();
    receiver.fail_next.store(5, Ordering::SeqCst);
    let addr = receiver.start("127.0.0.1:0");
    let env = sink_dir("");
    env.tenant("acme", &webhook("hook", addr, ""));
    env.commit_users("acme", 0..20);

    let _deliver = Running(env.spawn_deliver(&["acme"]));
    wait_until("every event", WAIT, || receiver.seqs().len() >= 20);
    assert_eq!(receiver.seqs(), (1..=20).collect::<Vec<_>>());
    assert!(receiver.requests.load(Ordering::SeqCst) >= 25);
    wait_until("the cursor at 20", WAIT, || {
        env.sink_status("acme", "hook")["delivered_seq"] == 20
    });
    let status = env.sink_status("acme", "hook");
    assert_eq!(status["lag_events"], 0);
    assert_eq!(status["parked"], false);
    assert!(
        status["last_error"].as_str().unwrap().contains("500"),
        "{status}"
    );
}

#[test]
fn a_receiver_that_is_down_gets_every_event_afterwards() {
    // Held closed (nothing else may take it) until the receiver comes up on it.
    let closed = closed_port();
    let port = closed.port;
    let env = sink_dir("");
    env.tenant("acme", &webhook("hook", format!("127.0.0.1:{port}"), ""));
    env.commit_users("acme", 0..3);
    let _deliver = Running(env.spawn_deliver(&["acme"]));
    env.commit_users("acme", 3..7);
    wait_until("a recorded delivery error", WAIT, || {
        env.sink_status("acme", "hook")["last_error"].is_string()
    });
    env.commit_users("acme", 7..9);
    let status = env.sink_status("acme", "hook");
    assert_eq!(status["delivered_seq"], 0);
    assert_eq!(status["lag_events"], 9);

    let receiver = Receiver::default();
    receiver.start(&format!("127.0.0.1:{}", closed.release()));
    env.commit_users("acme", 9..12);
    wait_until("every event", WAIT, || receiver.seqs().len() >= 12);
    assert_eq!(receiver.seqs(), (1..=12).collect::<Vec<_>>());
}

#[test]
fn kill_9_during_delivery_loses_and_reorders_nothing() {
    let receiver = Receiver::default();
    receiver.delay_ms.store(2, Ordering::SeqCst);
    let addr = receiver.start("127.0.0.1:0");
    let env = sink_dir("");
    let file = env.path().join("events.jsonl");
    env.tenant(
        "acme",
        &format!(
            "{}[[sinks]]\ntype = \"jsonl\"\nname = \"file\"\npath = \"{}\"\nbatch_size = 7\n",
            webhook("hook", addr, ""),
            file.display()
        ),
    );
    let total = env.commit_users("acme", 0..400);

    for stop_at in [60, 200] {
        let mut deliver = env.spawn_deliver(&["acme"]);
        wait_until("deliveries before the kill", WAIT, || {
            receiver.seqs().len() >= stop_at
        });
        deliver.kill().unwrap(); // SIGKILL
        deliver.wait().unwrap();
    }
    let _deliver = Running(env.spawn_deliver(&["acme"]));
    wait_until("every event after the restarts", WAIT, || {
        receiver.seqs().contains(&total)
            && std::fs::read_to_string(&file)
                .unwrap_or_default()
                .contains(&format!("\"seq\":{total},"))
    });

    let received: Vec<(u64, String)> = receiver
        .events()
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_no_loss_no_reorder(&received, total);
    let lines: Vec<(u64, String)> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            (
                e["seq"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_no_loss_no_reorder(&lines, total);
    // Ids are the stored ones.
    let stored: Vec<(u64, String)> = env
        .events("acme", 0)
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for pair in &received {
        assert!(stored.contains(pair));
    }
}

#[test]
fn a_slow_receiver_does_not_slow_syncing_other_sinks_or_other_tenants() {
    let slow = Receiver::default();
    slow.delay_ms.store(3_600_000, Ordering::SeqCst);
    let slow_addr = slow.start("127.0.0.1:0");
    let fast = Receiver::default();
    let fast_addr = fast.start("127.0.0.1:0");
    let env = sink_dir("");
    let file = env.path().join("slow-tenant.jsonl");
    env.tenant(
        "slow",
        &format!(
            "{}[[sinks]]\ntype = \"jsonl\"\nname = \"file\"\npath = \"{}\"\n",
            webhook("hook", slow_addr, "timeout_seconds = 3600"),
            file.display()
        ),
    );
    env.tenant("fast", &webhook("hook", fast_addr, ""));
    env.commit_users("slow", 0..5);
    let _deliver = Running(env.spawn_deliver(&[]));
    wait_until("the slow receiver to hold a request", WAIT, || {
        slow.requests.load(Ordering::SeqCst) >= 1
    });
    // Syncing the slow tenant still commits while its delivery hangs.
    assert_eq!(env.commit_users("slow", 5..10), 10);
    env.commit_users("fast", 0..10);
    env.commit_users("fast", 10..20);
    wait_until("the fast tenant's events", WAIT, || fast.seqs().len() >= 20);
    assert_eq!(fast.seqs(), (1..=20).collect::<Vec<_>>());
    wait_until("the slow tenant's file sink", WAIT, || {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .count()
            == 10
    });
    assert!(slow.seqs().is_empty());
    assert_eq!(slow.requests.load(Ordering::SeqCst), 1);
}

#[test]
fn a_rejected_delivery_parks_the_sink_until_unparked() {
    let receiver = Receiver::default();
    receiver.status.store(400, Ordering::SeqCst);
    let addr = receiver.start("127.0.0.1:0");
    let env = sink_dir("");
    env.tenant("acme", &webhook("hook", addr, "on_reject = \"park\""));
    env.commit_users("acme", 0..4);

    let out = env.output(&["deliver", "acme", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("400") && stderr.contains("--unpark hook"),
        "{stderr}"
    );
    let status = env.sink_status("acme", "hook");
    assert_eq!(status["parked"], true);
    assert_eq!(status["delivered_seq"], 0);
    assert!(status["last_error"].as_str().unwrap().contains("400"));
    let text = String::from_utf8(env.output(&["status", "acme"]).stdout).unwrap();
    assert!(text.contains("PARKED"), "{text}");

    // Fixed receiver, but still parked: nothing is sent.
    receiver.status.store(0, Ordering::SeqCst);
    let requests = receiver.requests.load(Ordering::SeqCst);
    assert_eq!(
        env.output(&["deliver", "acme", "--once"]).status.code(),
        Some(1)
    );
    assert_eq!(receiver.requests.load(Ordering::SeqCst), requests);

    let out = env.output(&["deliver", "acme", "--unpark", "hook"]);
    assert!(out.status.success());
    let out = env.output(&["deliver", "acme", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(receiver.seqs(), vec![1, 2, 3, 4]);
    assert_eq!(env.sink_status("acme", "hook")["parked"], false);
}

#[test]
fn a_rejection_with_on_reject_retry_is_retried_and_reported() {
    let receiver = Receiver::default();
    receiver.status.store(422, Ordering::SeqCst);
    let addr = receiver.start("127.0.0.1:0");
    let env = sink_dir("");
    env.tenant("acme", &webhook("hook", addr, ""));
    env.commit_users("acme", 0..2);
    let _deliver = Running(env.spawn_deliver(&["acme"]));
    wait_until("several rejected attempts", WAIT, || {
        receiver.requests.load(Ordering::SeqCst) >= 3
    });
    let status = env.sink_status("acme", "hook");
    assert_eq!(status["parked"], false);
    assert!(status["last_error"].as_str().unwrap().contains("422"));
    assert!(env.log().contains("rejected"), "{}", env.log());
    receiver.status.store(0, Ordering::SeqCst);
    wait_until("the events once accepted", WAIT, || {
        receiver.seqs().len() == 2
    });
    assert_eq!(receiver.seqs(), vec![1, 2]);
}

#[test]
fn resend_replays_a_range_with_the_original_ids_without_moving_the_cursor() {
    let receiver = Receiver::default();
    let addr = receiver.start("127.0.0.1:0");
    let env = sink_dir("");
    env.tenant("acme", &webhook("hook", addr, "batch_size = 3"));
    env.commit_users("acme", 0..10);
    assert!(env.output(&["deliver", "acme", "--once"]).status.success());
    let first: Vec<Value> = receiver.events();
    assert_eq!(first.len(), 10);

    let out = env.output(&[
        "events",
        "acme",
        "--resend-to",
        "hook",
        "--after",
        "3",
        "--limit",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("resent 4 events (seq 4..=7)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let all = receiver.events();
    assert_eq!(&all[10..], &first[3..7]);
    assert_eq!(env.sink_status("acme", "hook")["delivered_seq"], 10);

    let out = env.output(&["events", "acme", "--resend-to", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hook"));
}
