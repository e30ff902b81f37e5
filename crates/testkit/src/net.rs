//! Loopback networking for tests: a free port, a port that refuses connections, and a plain
//! HTTP GET.

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

/// A loopback port that refuses connections for as long as this value lives: its socket is
/// bound (so neither the OS nor another test can hand the port out) but not listening. A port
/// that was merely bound and released may be taken at once by another test of the same binary.
pub struct ClosedPort {
    pub port: u16,
    _socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    /// Frees the port (to listen on it next).
    pub fn release(self) -> u16 {
        self.port
    }
}

/// See [`ClosedPort`].
pub fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let port = socket.local_addr().unwrap().port();
    ClosedPort {
        port,
        _socket: socket,
    }
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
