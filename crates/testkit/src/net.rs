//! Loopback networking for tests: a free port, a port that refuses connections, and a plain
//! HTTP GET.

use std::net::SocketAddr;
use std::time::Duration;

/// A port nothing listens on now (bound then released), for a server the test starts next
/// (a daemon's `http_listen`).
///
/// Taken below the kernel's ephemeral range: every outgoing connection, and every bind to port
/// 0, gets its port from that range, so a port released there may be taken by any connection
/// of a concurrent test before the server binds it (the likely reason a daemon of
/// `push_cluster` once failed to start in CI). Below it, only another test's pick could
/// collide, and picks are random.
pub fn free_port() -> u16 {
    use rand::Rng as _;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .filter(|low| *low >= 4096)
        .unwrap_or(32768);
    let low = 20_000.min(ephemeral_low / 2);
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(low..ephemeral_low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{ephemeral_low}")
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
