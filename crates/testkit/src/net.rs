//! Loopback networking for tests: a free port, and a plain HTTP GET.

use std::net::SocketAddr;
use std::time::Duration;

/// A port nothing listens on now (bound then released). Another process may take it before
/// the test binds it; servers that bind it themselves retry on a fresh port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP GET on loopback: (status, body), `None` when nothing answers.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}
