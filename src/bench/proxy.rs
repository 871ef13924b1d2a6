//! A byte-counting TCP proxy on loopback, between the benchmark's clients and the server.
//!
//! Every client connection is relayed to the server unchanged; the proxy counts the bytes in
//! each direction and cuts the stream into **exchanges**: an exchange starts with the first
//! byte a client sends after the server last answered on that connection, and ends with the
//! last byte of the answer. HTTP/1.1 clients (reqwest, as the sync client uses) send one
//! request at a time per connection and wait for the whole answer, so an exchange is exactly
//! one HTTP request and its response: the proxy gives the number of requests, the bytes each
//! carried up and down (request line, headers and body: what an HTTP stack puts on the wire,
//! without TCP/IP framing), the path from the request line, and the latency from the first
//! byte of the request to the last byte of the answer, as the client's network sees it.
//!
//! The proxy runs on a runtime of its own (one thread), so that the clients' work on the
//! benchmark's runtime does not delay the relaying or skew the timestamps.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// One HTTP request and its response, as seen on the wire.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The path of the request line (`/v1/sync`), or `?` if it could not be read.
    pub path: String,
    /// Bytes from the client to the server.
    pub up: u64,
    /// Bytes from the server to the client.
    pub down: u64,
    /// From the first byte of the request to the last byte of the response.
    pub latency: Duration,
    /// The response's status code, if its status line could be read.
    pub status: Option<u16>,
}

/// The exchange in progress on one connection.
#[derive(Debug)]
struct Open {
    path: String,
    started: Instant,
    up: u64,
    down: u64,
    last_down: Instant,
    status: Option<u16>,
}

impl Open {
    fn finish(self) -> Exchange {
        Exchange {
            path: self.path,
            up: self.up,
            down: self.down,
            latency: self.last_down - self.started,
            status: self.status,
        }
    }
}

/// What the proxy has seen so far.
#[derive(Debug, Default)]
struct Shared {
    finished: Mutex<Vec<Exchange>>,
    connections: Mutex<Vec<Weak<Mutex<Option<Open>>>>>,
}

impl Shared {
    fn push(&self, exchange: Exchange) {
        if let Ok(mut finished) = self.finished.lock() {
            finished.push(exchange);
        }
    }
}

/// The proxy: listening on a loopback port, relaying to the server's port. Stopped when
/// dropped.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:upstream` on a free loopback port.
    pub fn start(upstream: u16) -> anyhow::Result<Proxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-proxy")
            .enable_all()
            .build()
            .context("cannot start the proxy's runtime")?;
        let listener = runtime
            .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .context("the proxy cannot listen on loopback")?;
        let port = listener.local_addr().context("the proxy's address")?.port();
        let shared = Arc::new(Shared::default());
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream));
        runtime.spawn(accept(listener, upstream, shared.clone()));
        Ok(Proxy { port, shared, runtime: Some(runtime) })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every exchange finished since the last call, in the order they finished. Call it only
    /// when no request is in flight: an exchange still open on a connection is closed here.
    pub fn take(&self) -> Vec<Exchange> {
        if let Ok(mut connections) = self.shared.connections.lock() {
            connections.retain(|weak| {
                let Some(connection) = weak.upgrade() else { return false };
                if let Ok(mut open) = connection.lock() {
                    if open.as_ref().is_some_and(|o| o.down > 0) {
                        if let Some(open) = open.take() {
                            self.shared.push(open.finish());
                        }
                    }
                }
                true
            });
        }
        self.shared.finished.lock().map(|mut f| std::mem::take(&mut *f)).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let state = Arc::new(Mutex::new(None));
            if let Ok(mut connections) = shared.connections.lock() {
                connections.push(Arc::downgrade(&state));
            }
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = tokio::spawn(pump(client_read, server_write, Direction::Up, state.clone(), shared.clone()));
            let down = tokio::spawn(pump(server_read, client_write, Direction::Down, state.clone(), shared.clone()));
            let _ = up.await;
            let _ = down.await;
            let open = state.lock().ok().and_then(|mut s| s.take());
            if let Some(open) = open.filter(|o| o.down > 0) {
                shared.push(open.finish());
            }
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// The path of an HTTP request line at the start of `chunk`.
fn request_path(chunk: &[u8]) -> String {
    let line = chunk.split(|b| *b == b'\r' || *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let _method = parts.next();
    parts.next().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_else(|| "?".into())
}

/// The status code of an HTTP status line at the start of `chunk` (`HTTP/1.1 200 OK`).
fn response_status(chunk: &[u8]) -> Option<u16> {
    let line = chunk.split(|b| *b == b'\r' || *b == b'\n').next()?;
    let code = line.split(|b| *b == b' ').nth(1)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Copies one direction of a connection, counting and timestamping (before forwarding, so
/// that what a client has received is always counted).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    state: Arc<Mutex<Option<Open>>>,
    shared: Arc<Shared>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        if let Ok(mut open) = state.lock() {
            match direction {
                Direction::Up => {
                    // A client speaking after an answer starts the next exchange.
                    if open.as_ref().is_some_and(|o| o.down > 0) {
                        if let Some(done) = open.take() {
                            shared.push(done.finish());
                        }
                    }
                    let current = open.get_or_insert_with(|| Open {
                        path: request_path(&buffer[..n]),
                        started: now,
                        up: 0,
                        down: 0,
                        last_down: now,
                        status: None,
                    });
                    current.up += n as u64;
                }
                Direction::Down => {
                    if let Some(current) = open.as_mut() {
                        if current.down == 0 {
                            current.status = response_status(&buffer[..n]);
                        }
                        current.down += n as u64;
                        current.last_down = now;
                    }
                }
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_path_of_a_request_line() {
        assert_eq!(request_path(b"POST /v1/sync HTTP/1.1\r\nhost: x\r\n"), "/v1/sync");
        assert_eq!(request_path(b""), "?");
        assert_eq!(response_status(b"HTTP/1.1 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(response_status(b"garbage"), None);
    }

    #[test]
    fn counts_exchanges_and_bytes() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            // An "HTTP server" that answers each request line with a fixed answer.
            let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            let upstream = server.local_addr().unwrap().port();
            tokio::spawn(async move {
                let (mut socket, _) = server.accept().await.unwrap();
                let mut buffer = [0u8; 1024];
                for _ in 0..2 {
                    let n = socket.read(&mut buffer).await.unwrap();
                    assert!(n > 0);
                    socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.unwrap();
                }
            });
            let proxy = tokio::task::spawn_blocking(move || Proxy::start(upstream).unwrap()).await.unwrap();
            let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.port())).await.unwrap();
            let mut answer = [0u8; 40];
            for _ in 0..2 {
                client.write_all(b"POST /v1/sync HTTP/1.1\r\n\r\n").await.unwrap();
                client.read_exact(&mut answer).await.unwrap();
            }
            let exchanges = proxy.take();
            assert_eq!(exchanges.len(), 2);
            assert!(exchanges
                .iter()
                .all(|e| e.path == "/v1/sync" && e.up == 26 && e.down == 40 && e.status == Some(200)));
            assert!(proxy.take().is_empty());
            tokio::task::spawn_blocking(move || drop(proxy)).await.unwrap();
        });
    }
}
