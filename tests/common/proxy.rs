//! A TCP proxy between a field client and the server that can stop a sync request at a chosen
//! moment and say so, so that a test kills the client while a request is provably in flight:
//!
//! - [`Moment::Uploading`]: the server has the request's headers but not all of its body;
//! - [`Moment::Answered`]: the server has answered (it has stored the batch), and the client
//!   has not heard the answer.
//!
//! Armed once ([`Proxy::arm`]); afterwards, and before, it passes bytes through unchanged.
//! It can also make the server unreachable ([`Proxy::set_down`]).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The moment armed, and whom to tell when it comes.
type Armed = Arc<Mutex<Option<(Moment, Sender<()>)>>>;

/// Where to stop a `POST /v1/sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// After forwarding the request's headers, before the rest of it.
    Uploading,
    /// After the server's answer began to arrive, before forwarding any of it.
    Answered,
}

/// A running proxy on `127.0.0.1:port` to `127.0.0.1:upstream`.
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    armed: Armed,
    /// Connections held at their moment: closed by [`Proxy::release`].
    held: Arc<Mutex<Vec<TcpStream>>>,
    /// While set, the proxy's port refuses connections: the server looks stopped.
    down: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts the proxy; it runs until the test process ends.
    pub fn start(upstream: u16) -> Proxy {
        let first = TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        let port = first.local_addr().unwrap().port();
        let armed: Armed = Arc::new(Mutex::new(None));
        let held = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let (armed_, held_, down_) = (armed.clone(), held.clone(), down.clone());
        std::thread::spawn(move || {
            // While down, the port is closed (connections are refused, as by a stopped
            // server); it is bound again when the server comes back.
            let mut listener = Some(first);
            loop {
                if down_.load(Ordering::SeqCst) {
                    listener = None;
                } else if listener.is_none() {
                    listener = TcpListener::bind(("127.0.0.1", port)).ok();
                }
                let Some(open) = &listener else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = open.set_nonblocking(true);
                let client = match open.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                connect(client, server, armed_.clone(), held_.clone());
            }
        });
        Proxy { port, armed, held, down }
    }

    /// Makes the server unreachable through the proxy (its port refuses connections, as when
    /// the server is stopped), or reachable again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the next `POST /v1/sync` at `moment`; the receiver hears when it has.
    pub fn arm(&self, moment: Moment) -> Receiver<()> {
        let (tx, rx) = channel();
        *self.armed.lock().unwrap() = Some((moment, tx));
        rx
    }

    /// Closes the connections held at their moment (both sides), and disarms.
    pub fn release(&self) {
        self.armed.lock().unwrap().take();
        for stream in self.held.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Pumps one connection both ways.
fn connect(client: TcpStream, server: TcpStream, armed: Armed, held: Arc<Mutex<Vec<TcpStream>>>) {
    // Set when this connection carried a `POST /v1/sync` that the arming applies to.
    let syncing = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    {
        let (mut from, mut to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (armed, held, syncing, stopped) = (armed.clone(), held.clone(), syncing.clone(), stopped.clone());
        let (client, server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if stopped.load(Ordering::SeqCst) {
                    continue; // held: swallow the rest
                }
                let chunk = &buf[..n];
                let is_sync = find(chunk, b"POST /v1/sync ").is_some();
                if is_sync {
                    syncing.store(true, Ordering::SeqCst);
                }
                let mut guard = armed.lock().unwrap();
                if is_sync && matches!(guard.as_ref(), Some((Moment::Uploading, _))) {
                    // Forward the headers (when they are whole in this chunk), hold the body.
                    let start = find(chunk, b"POST /v1/sync ").unwrap_or(0);
                    let cut = find(&chunk[start..], b"\r\n\r\n").map(|i| start + i + 4).unwrap_or(start);
                    let _ = to.write_all(&chunk[..cut]);
                    stopped.store(true, Ordering::SeqCst);
                    held.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                    if let Some((_, tx)) = guard.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                drop(guard);
                if to.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
    }
    let (mut from, mut to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if stopped.load(Ordering::SeqCst) {
                continue;
            }
            let mut guard = armed.lock().unwrap();
            if syncing.load(Ordering::SeqCst) && matches!(guard.as_ref(), Some((Moment::Answered, _))) {
                // The server answered the sync: hold the answer, say so.
                stopped.store(true, Ordering::SeqCst);
                held.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                if let Some((_, tx)) = guard.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            drop(guard);
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits up to `secs` seconds for the proxy to report its moment.
pub fn wait(rx: &Receiver<()>, secs: u64) -> bool {
    rx.recv_timeout(Duration::from_secs(secs)).is_ok()
}
