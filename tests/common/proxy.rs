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

/// What a pump does with a chunk it read.
enum Step {
    /// Forward it.
    Pass,
    /// Forward its first `n` bytes, then hold the connection (and tell whoever armed it).
    Hold(usize),
}

/// One proxied connection: both sockets, and whether it is held.
struct Link {
    client: TcpStream,
    server: TcpStream,
    armed: Armed,
    held: Arc<Mutex<Vec<TcpStream>>>,
    stopped: AtomicBool,
}

/// Pumps one connection both ways: requests may be held at [`Moment::Uploading`], answers
/// to a sync at [`Moment::Answered`].
fn connect(client: TcpStream, server: TcpStream, armed: Armed, held: Arc<Mutex<Vec<TcpStream>>>) {
    let link = Arc::new(Link { client, server, armed, held, stopped: AtomicBool::new(false) });
    // Set when this connection carried a `POST /v1/sync`.
    let syncing = Arc::new(AtomicBool::new(false));
    let request_syncing = syncing.clone();
    pump(link.clone(), true, move |chunk, moment| {
        let Some(start) = find(chunk, b"POST /v1/sync ") else { return Step::Pass };
        request_syncing.store(true, Ordering::SeqCst);
        match moment {
            // Forward the headers (when they are whole in this chunk), hold the body.
            Some(Moment::Uploading) => {
                Step::Hold(find(&chunk[start..], b"\r\n\r\n").map(|i| start + i + 4).unwrap_or(start))
            }
            _ => Step::Pass,
        }
    });
    pump(link, false, move |_, moment| match moment {
        // The server answered the sync: hold the answer.
        Some(Moment::Answered) if syncing.load(Ordering::SeqCst) => Step::Hold(0),
        _ => Step::Pass,
    });
}

/// Copies bytes one way (client to server when `upstream`), asking `step` about each chunk.
fn pump(link: Arc<Link>, upstream: bool, step: impl Fn(&[u8], Option<Moment>) -> Step + Send + 'static) {
    let (from, to) = if upstream { (&link.client, &link.server) } else { (&link.server, &link.client) };
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if link.stopped.load(Ordering::SeqCst) {
                continue; // held: swallow the rest
            }
            let chunk = &buf[..n];
            let mut armed = link.armed.lock().unwrap();
            match step(chunk, armed.as_ref().map(|(moment, _)| *moment)) {
                Step::Hold(forward) => {
                    let _ = to.write_all(&chunk[..forward]);
                    link.stopped.store(true, Ordering::SeqCst);
                    link.held
                        .lock()
                        .unwrap()
                        .extend([link.client.try_clone().unwrap(), link.server.try_clone().unwrap()]);
                    if let Some((_, tx)) = armed.take() {
                        let _ = tx.send(());
                    }
                }
                Step::Pass => {
                    drop(armed);
                    if to.write_all(chunk).is_err() {
                        break;
                    }
                }
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
