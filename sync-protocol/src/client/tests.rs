//! The retry policy and error mapping as plain unit tests, and the transport against a
//! throw-away HTTP/1.1 responder on the loopback interface (the real server is tested
//! end-to-end in the workspace's `tests/`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Change, ChangeHash, ROOT};

use super::*;
use crate::ids::{CaseId, StaffId};
use crate::session::CaseEvent;
use crate::wire::{ApiError, Bytes, DocumentResult, Hash, SyncRequest};

// ---------------------------------------------------------------------------------------------
// Retry policy
// ---------------------------------------------------------------------------------------------

#[test]
fn backoff_doubles_from_the_base_up_to_the_maximum() {
    let policy = RetryPolicy::default();
    let ceilings: Vec<u64> = (1..=11).map(|n| policy.backoff_ceiling(n).as_secs()).collect();
    assert_eq!(ceilings, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    // No overflow, however far.
    assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(300));
    let tiny = RetryPolicy { max_attempts: 100, base_delay: Duration::from_millis(10), max_delay: Duration::MAX };
    assert_eq!(tiny.backoff_ceiling(4), Duration::from_millis(80));
    assert!(tiny.backoff_ceiling(90) > Duration::from_secs(1_000_000));
}

#[test]
fn full_jitter_stays_within_zero_and_the_ceiling() {
    let policy = RetryPolicy { max_attempts: 20, ..RetryPolicy::default() };
    for retry in 1..20 {
        let ceiling = policy.backoff_ceiling(retry);
        assert_eq!(policy.delay(retry, None, 0.0), Some(Duration::ZERO));
        assert_eq!(policy.delay(retry, None, 1.0), Some(ceiling));
        assert_eq!(policy.delay(retry, None, 0.5), Some(ceiling / 2));
        // Out-of-range jitter is clamped, never a panic.
        assert_eq!(policy.delay(retry, None, 7.0), Some(ceiling));
        assert_eq!(policy.delay(retry, None, -1.0), Some(Duration::ZERO));
        assert_eq!(policy.delay(retry, None, f64::NAN), Some(Duration::ZERO));
        for _ in 0..50 {
            let delay = policy.delay(retry, None, retry::random_fraction()).unwrap();
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
        }
    }
    // The random fractions are in [0, 1) and not all alike.
    let draws: Vec<f64> = (0..1000).map(|_| retry::random_fraction()).collect();
    assert!(draws.iter().all(|f| (0.0..1.0).contains(f)));
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    assert!((0.4..0.6).contains(&mean), "mean {mean}");
}

#[test]
fn retry_after_is_a_floor_and_too_long_a_wait_ends_the_retries() {
    let policy = RetryPolicy::default();
    let ten = Duration::from_secs(10);
    for jitter in [0.0, 0.3, 0.99] {
        assert!(policy.delay(1, Some(ten), jitter).unwrap() >= ten);
    }
    // A late retry whose back-off exceeds Retry-After keeps its jitter above the floor.
    let policy_long = RetryPolicy { max_attempts: 10, ..policy };
    assert_eq!(policy_long.delay(8, Some(ten), 1.0), Some(Duration::from_secs(128)));
    assert_eq!(policy.delay(1, Some(Duration::ZERO), 0.0), Some(Duration::ZERO));
    assert_eq!(policy.delay(1, Some(policy.max_delay), 0.0), Some(policy.max_delay));
    assert_eq!(policy.delay(1, Some(policy.max_delay + Duration::from_secs(1)), 0.0), None);
}

#[test]
fn attempts_are_bounded() {
    let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
    assert!(policy.delay(1, None, 0.5).is_some());
    assert!(policy.delay(2, None, 0.5).is_some());
    assert_eq!(policy.delay(3, None, 0.5), None, "the third attempt was the last");
    assert_eq!(policy.delay(0, None, 0.5), None);
    assert_eq!(RetryPolicy::never().delay(1, None, 0.5), None);
    assert_eq!(RetryPolicy { max_attempts: 0, ..policy }.delay(1, None, 0.5), None);
}

#[test]
fn retry_after_parses_seconds_and_http_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_793_782_800); // 2026-11-04T09:00:00Z
    assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("Wed, 04 Nov 2026 09:00:30 GMT", now), Some(Duration::from_secs(30)));
    assert_eq!(parse_retry_after("Wed, 04 Nov 2026 08:00:00 GMT", now), Some(Duration::ZERO));
    for bad in ["", "-1", "1.5", "soon", "Wed, 32 Nov 2026 09:00:30 GMT"] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------------

fn answer(status: u16, headers: &[(&'static str, &str)], body: &[u8]) -> Answer {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, value.parse().unwrap());
    }
    Answer { status: StatusCode::from_u16(status).unwrap(), headers: map, body: body.to_vec(), truncated: false }
}

fn json_error(code: ApiErrorCode, message: &str) -> Vec<u8> {
    encode_json(&ApiError::new(code, message))
}

#[test]
fn api_errors_map_to_what_the_app_must_do() {
    let now = SystemTime::now();
    let json = [("content-type", "application/json")];
    let e = error_from_answer(&answer(401, &json, &json_error(ApiErrorCode::DeviceRevoked, "gone")), now);
    assert!(matches!(&e, ClientError::DeviceRevoked { message } if message == "gone"), "{e:?}");
    assert!(e.requires_wipe());
    let e = error_from_answer(&answer(401, &json, &json_error(ApiErrorCode::TokenExpired, "old")), now);
    assert!(matches!(e, ClientError::TokenExpired), "{e:?}");
    let e = error_from_answer(&answer(401, &json, &json_error(ApiErrorCode::Unauthenticated, "who?")), now);
    assert!(e.requires_sign_in());
    // A 401 without a usable body, or with a code this version does not know: sign in again.
    let e = error_from_answer(&answer(401, &[], b"<html>nope</html>"), now);
    assert!(matches!(&e, ClientError::Unauthenticated { message } if message == "Unauthorized"), "{e:?}");
    let e = error_from_answer(&answer(401, &json, br#"{"code":"token_revoked","message":"m"}"#), now);
    assert!(matches!(e, ClientError::Unauthenticated { .. }), "{e:?}");

    // The body in CBOR, as a sync answer's would be.
    let cbor = [("content-type", "application/cbor")];
    let body = Format::Cbor.encode(&ApiError::new(ApiErrorCode::Unavailable, "maintenance"));
    let e = error_from_answer(&answer(503, &[cbor[0], ("retry-after", "7")], &body), now);
    match e {
        ClientError::Api { status: 503, code: Some(ApiErrorCode::Unavailable), message, retry_after } => {
            assert_eq!(message, "maintenance");
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
        }
        other => panic!("{other:?}"),
    }
    // Announced as JSON but sent as CBOR: still read.
    let e = error_from_answer(
        &answer(403, &json, &Format::Cbor.encode(&ApiError::new(ApiErrorCode::Forbidden, "no"))),
        now,
    );
    assert!(matches!(e, ClientError::Api { status: 403, code: Some(ApiErrorCode::Forbidden), .. }), "{e:?}");
    // A proxy's page: the status alone.
    let e = error_from_answer(&answer(502, &[("content-type", "text/html")], b"<h1>Bad Gateway</h1>"), now);
    assert!(matches!(&e, ClientError::Api { status: 502, code: None, message, .. } if message == "Bad Gateway"));
    let wrapped = ClientError::RetriesExhausted {
        attempts: 2,
        last: Box::new(ClientError::DeviceRevoked { message: String::new() }),
    };
    assert!(wrapped.requires_wipe());
    assert!(wrapped.to_string().contains("gave up after 2 attempt(s)"));
}

#[test]
fn base_urls_are_checked_and_normalised() {
    assert_eq!(SyncClient::new("https://tsunagi.example.jp/").unwrap().base_url(), "https://tsunagi.example.jp");
    let client = SyncClient::new("http://127.0.0.1:8080/tsunagi/").unwrap();
    assert_eq!(client.url(SYNC_PATH), "http://127.0.0.1:8080/tsunagi/v1/sync");
    for bad in ["", "tsunagi.example.jp", "ftp://example.jp", "https://example.jp/?x=1", "https://example.jp/#f"] {
        assert!(matches!(SyncClient::new(bad), Err(ClientError::Config(_))), "{bad:?}");
    }
    let client = SyncClient::builder("https://example.jp").retry(RetryPolicy::never()).max_rounds(0).build().unwrap();
    assert_eq!(client.retry_policy(), &RetryPolicy::never());
    assert_eq!(client.max_rounds, 1);
}

// ---------------------------------------------------------------------------------------------
// Over HTTP, against a scripted loopback responder
// ---------------------------------------------------------------------------------------------

/// A request as the responder received it.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What the responder does with one connection.
enum Reply {
    /// Answer with this status, these headers and this body.
    Http(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Read the request and close the connection without answering (a lost answer).
    Hang,
}

fn json_reply(status: u16, body: Vec<u8>) -> Reply {
    Reply::Http(status, vec![("Content-Type", "application/json".into())], body)
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received { method, path, headers, body })
}

/// Serves `connections` connections on 127.0.0.1, one request each, answering with
/// `reply(index, request)`; returns the base URL and, when joined, every request received.
/// Gives up after 20 s so that a failing test cannot hang.
fn serve(
    connections: usize,
    mut reply: impl FnMut(usize, &Received) -> Reply + Send + 'static,
) -> (String, JoinHandle<Vec<Received>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut received = Vec::new();
        while received.len() < connections && Instant::now() < deadline {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let Some(request) = read_request(&mut stream) else { continue };
            match reply(received.len(), &request) {
                Reply::Http(status, headers, body) => {
                    let mut out =
                        format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
                    for (name, value) in headers {
                        out.push_str(&format!("{name}: {value}\r\n"));
                    }
                    out.push_str("\r\n");
                    let _ = stream.write_all(out.as_bytes());
                    let _ = stream.write_all(&body);
                }
                Reply::Hang => {}
            }
            let _ = stream.flush();
            drop(stream);
            received.push(request);
        }
        received
    });
    (url, handle)
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, base_delay: Duration::from_millis(5), max_delay: Duration::from_secs(2) }
}

fn client(url: &str, max_attempts: u32) -> SyncClient {
    SyncClient::builder(url).retry(fast_retries(max_attempts)).timeout(Duration::from_secs(10)).build().unwrap()
}

/// A store with one case holding one change, never synced.
fn store_with_a_case(dir: &std::path::Path) -> (ReplicaStore, CaseId, AutoCommit) {
    let mut store = ReplicaStore::open(dir).unwrap();
    let case = CaseId::new_random();
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "status", "intake").unwrap();
    doc.commit();
    store.save_doc(&case, &mut doc).unwrap();
    (store, case, doc)
}

/// The `ok` a server holding nothing else would give: its heads are the uploaded changes'
/// (for cases of one change each), or the client's `since` when nothing went up.
fn ok_answer(request: &Received, more: bool) -> Reply {
    let request = SyncRequest::decode(Format::Cbor, &request.body).unwrap();
    let mut response = SyncResponse::new();
    for upload in &request.documents {
        let changes: Vec<Change> =
            upload.changes.iter().map(|b| Change::from_bytes(b.as_slice().to_vec()).unwrap()).collect();
        let heads = if changes.is_empty() {
            upload.since.clone()
        } else {
            let mut server = AutoCommit::new();
            server.apply_changes(changes).unwrap();
            server.get_heads().into_iter().map(Hash::from).collect()
        };
        response.documents.push(DocumentResult::ok(upload.case_id, heads, vec![]));
    }
    response.more = more;
    response.cursor = Some(Bytes(vec![1, 2, 3]));
    Reply::Http(200, vec![("Content-Type", "application/cbor".into())], Format::Cbor.encode(&response))
}

#[tokio::test]
async fn sync_survives_an_outage_and_a_lost_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, case, mut doc) = store_with_a_case(tmp.path());
    let (url, server) = serve(3, |i, request| match i {
        0 => Reply::Http(
            503,
            vec![("Content-Type", "application/cbor".into()), ("Retry-After", "0".into())],
            Format::Cbor.encode(&ApiError::new(ApiErrorCode::Unavailable, "maintenance")),
        ),
        1 => Reply::Hang,
        _ => ok_answer(request, false),
    });
    let mut session = SyncSession::new();
    let report = client(&url, 5).sync("token-1", &mut session, &mut store).await.unwrap();
    let requests = server.join().unwrap();

    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/sync"));
        assert_eq!(request.header("content-type"), Some("application/cbor"));
        assert_eq!(request.header("accept"), Some("application/cbor"));
        assert_eq!(request.header("authorization"), Some("Bearer token-1"));
        assert_eq!(request.body, requests[0].body, "a retry sends the same request");
    }
    let sent = SyncRequest::decode(Format::Cbor, &requests[0].body).unwrap();
    assert_eq!(sent.documents[0].case_id, case);
    assert_eq!(sent.documents[0].changes.len(), 1);

    assert_eq!(report.rounds, 1);
    assert_eq!(report.uploaded(), 1);
    assert!(matches!(report.events[0].event, CaseEvent::Synced { uploaded: 1, .. }));
    assert_eq!(store.since(&case).unwrap(), doc.get_heads());
    assert_eq!(store.cursor(), Some("AQID"));
}

#[tokio::test]
async fn more_makes_the_client_sync_again_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _, _) = store_with_a_case(tmp.path());
    let (url, server) = serve(2, |i, request| ok_answer(request, i == 0));
    let report = client(&url, 1).sync("t", &mut SyncSession::new(), &mut store).await.unwrap();
    let requests = server.join().unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(report.rounds, 2);
    assert!(!report.sync_again());
    // The second request carried the first answer's cursor, and nothing left to upload.
    let second = SyncRequest::decode(Format::Cbor, &requests[1].body).unwrap();
    assert_eq!(second.cursor, Some(Bytes(vec![1, 2, 3])));
    assert!(second.documents.is_empty());
}

#[tokio::test]
async fn payload_too_large_splits_the_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _, _) = store_with_a_case(tmp.path());
    let other = CaseId::new_random();
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "status", "support").unwrap();
    doc.commit();
    store.save_doc(&other, &mut doc).unwrap();
    let (url, server) = serve(3, |_, request| {
        let decoded = SyncRequest::decode(Format::Cbor, &request.body).unwrap();
        if decoded.documents.iter().map(|d| d.changes.len()).sum::<usize>() > 1 {
            json_reply(413, json_error(ApiErrorCode::PayloadTooLarge, "too big"))
        } else {
            ok_answer(request, false)
        }
    });
    let mut session = SyncSession::new();
    let report = client(&url, 1).sync("t", &mut session, &mut store).await.unwrap();
    let requests = server.join().unwrap();
    assert_eq!(requests.len(), 3, "one refused, then one change per request");
    assert_eq!(report.uploaded(), 2);
    assert!(session.upload_byte_limit().is_some());
    let (request, _) = session.build_request(&store).unwrap();
    assert!(request.documents.iter().all(|d| d.changes.is_empty()), "{request:?}");
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, case, _) = store_with_a_case(tmp.path());
    let cases = [
        (401, ApiErrorCode::DeviceRevoked),
        (401, ApiErrorCode::TokenExpired),
        (401, ApiErrorCode::Unauthenticated),
        (400, ApiErrorCode::MalformedBody),
        (403, ApiErrorCode::Forbidden),
    ];
    for (status, code) in cases {
        let (url, server) = serve(1, move |_, _| json_reply(status, json_error(code, "no")));
        let error = client(&url, 5).sync("t", &mut SyncSession::new(), &mut store).await.unwrap_err();
        assert_eq!(server.join().unwrap().len(), 1, "{code}: sent once");
        match (code, &error) {
            (ApiErrorCode::DeviceRevoked, ClientError::DeviceRevoked { .. })
            | (ApiErrorCode::TokenExpired, ClientError::TokenExpired)
            | (ApiErrorCode::Unauthenticated, ClientError::Unauthenticated { .. }) => {}
            (_, ClientError::Api { status: s, code: Some(c), .. }) if *s == status && *c == code => {}
            _ => panic!("{code}: {error:?}"),
        }
    }
    // Nothing was applied.
    assert!(store.since(&case).unwrap().is_empty());
    assert_eq!(store.cursor(), None);
}

#[tokio::test]
async fn retries_end_and_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _, _) = store_with_a_case(tmp.path());
    let (url, server) = serve(3, |_, _| json_reply(500, json_error(ApiErrorCode::Internal, "oops")));
    let error = client(&url, 3).sync("t", &mut SyncSession::new(), &mut store).await.unwrap_err();
    assert_eq!(server.join().unwrap().len(), 3);
    match error {
        ClientError::RetriesExhausted { attempts: 3, last } => {
            assert!(matches!(*last, ClientError::Api { status: 500, code: Some(ApiErrorCode::Internal), .. }))
        }
        other => panic!("{other:?}"),
    }

    // A Retry-After longer than the policy waits ends the retries at once, and is reported.
    let (url, server) = serve(1, |_, _| {
        Reply::Http(
            429,
            vec![("Content-Type", "application/json".into()), ("Retry-After", "3600".into())],
            json_error(ApiErrorCode::TooManyRequests, "slow down"),
        )
    });
    let error = client(&url, 5).sync("t", &mut SyncSession::new(), &mut store).await.unwrap_err();
    assert_eq!(server.join().unwrap().len(), 1);
    match error {
        ClientError::RetriesExhausted { attempts: 1, last } => assert!(matches!(
            *last,
            ClientError::Api { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(3600)
        )),
        other => panic!("{other:?}"),
    }

    // Nobody listening: network errors, retried, then reported.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = client(&format!("http://127.0.0.1:{port}"), 2).sync("t", &mut SyncSession::new(), &mut store).await;
    match error {
        Err(ClientError::RetriesExhausted { attempts: 2, last }) => assert!(matches!(*last, ClientError::Network(_))),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_answer_that_does_not_decode_is_a_decode_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut store, _, _) = store_with_a_case(tmp.path());
    let (url, server) =
        serve(1, |_, _| Reply::Http(200, vec![("Content-Type", "application/cbor".into())], b"\xff\x00".to_vec()));
    let error = client(&url, 3).sync("t", &mut SyncSession::new(), &mut store).await.unwrap_err();
    assert_eq!(server.join().unwrap().len(), 1);
    assert!(matches!(error, ClientError::Decode(_)), "{error:?}");

    // Nor does one larger than the client accepts.
    let (url, server) = serve(1, |_, request| ok_answer(request, false));
    let small = SyncClient::builder(&url).max_response_bytes(8).build().unwrap();
    let error = small.sync("t", &mut SyncSession::new(), &mut store).await.unwrap_err();
    server.join().unwrap();
    assert!(matches!(&error, ClientError::Decode(m) if m.contains("larger")), "{error:?}");
}

#[tokio::test]
async fn login_refresh_and_logout_speak_json() {
    let staff = StaffId::new_random();
    let device = DeviceId::new_random();
    let tokens = move |n: u32| {
        format!(
            r#"{{"access_token":"a{n}","token_type":"Bearer","expires_in":900,"refresh_token":"r{n}",
            "staff_id":"{staff}","role":"supervisor"}}"#
        )
        .into_bytes()
    };
    let (url, server) = serve(4, move |i, _| match i {
        0 => json_reply(200, tokens(1)),
        1 => json_reply(200, tokens(2)),
        2 => Reply::Http(204, vec![], vec![]),
        _ => json_reply(401, json_error(ApiErrorCode::Unauthenticated, "wrong login or password")),
    });
    let client = client(&url, 3);
    let first = client.login("sato", "pw", device).await.unwrap();
    assert_eq!((first.access_token.as_str(), first.refresh_token.as_str()), ("a1", "r1"));
    assert_eq!(first.staff_id, staff);
    assert_eq!(first.role, crate::domain::Role::Supervisor);
    let second = client.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(second.access_token, "a2");
    client.logout(&second.refresh_token).await.unwrap();
    let error = client.login("sato", "bad", device).await.unwrap_err();
    assert!(error.requires_sign_in(), "{error:?}");

    let requests = server.join().unwrap();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec![LOGIN_PATH, REFRESH_PATH, LOGOUT_PATH, LOGIN_PATH]);
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), None);
    }
    let login: LoginRequest = Format::Json.decode(&requests[0].body).unwrap();
    assert_eq!(login, LoginRequest { login: "sato".into(), password: "pw".into(), device_id: device });
    let refresh: RefreshRequest = Format::Json.decode(&requests[1].body).unwrap();
    assert_eq!(refresh.refresh_token, "r1");
    let logout: LogoutRequest = Format::Json.decode(&requests[2].body).unwrap();
    assert_eq!(logout.refresh_token, "r2");
}

#[tokio::test]
async fn a_refresh_is_not_repeated_once_the_server_may_have_used_the_token() {
    let (url, server) = serve(1, |_, _| json_reply(500, json_error(ApiErrorCode::Internal, "oops")));
    let error = client(&url, 5).refresh("r1").await.unwrap_err();
    assert_eq!(server.join().unwrap().len(), 1);
    assert!(matches!(error, ClientError::Api { status: 500, .. }), "{error:?}");

    // 503 means nothing was processed: retried.
    let (url, server) = serve(2, |i, _| {
        if i == 0 {
            json_reply(503, json_error(ApiErrorCode::Unavailable, "later"))
        } else {
            json_reply(
                200,
                format!(
                    r#"{{"access_token":"a","token_type":"bearer","expires_in":1,"refresh_token":"r",
                    "staff_id":"{}","role":"counsellor"}}"#,
                    StaffId::new_random()
                )
                .into_bytes(),
            )
        }
    });
    assert_eq!(client(&url, 5).refresh("r1").await.unwrap().access_token, "a");
    assert_eq!(server.join().unwrap().len(), 2);
}

#[test]
fn change_hashes_of_the_session_are_those_uploaded() {
    // The session's PendingUpload records exactly the hashes that went on the wire.
    let tmp = tempfile::tempdir().unwrap();
    let (store, case, mut doc) = store_with_a_case(tmp.path());
    let (request, sent) = SyncSession::new().build_request(&store).unwrap();
    let on_wire: Vec<ChangeHash> = request.documents[0]
        .changes
        .iter()
        .map(|b| Change::from_bytes(b.as_slice().to_vec()).unwrap().hash())
        .collect();
    assert_eq!(sent.case(&case).unwrap().changes, on_wire);
    assert_eq!(on_wire, doc.get_heads());
}

#[test]
fn servers_on_this_machine_are_recognised_as_loopback() {
    let loopback = |u: &str| super::is_loopback(&reqwest::Url::parse(u).unwrap());
    for local in ["http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:1", "http://[::1]:8080/"] {
        assert!(loopback(local), "{local}");
    }
    for remote in
        ["https://tsunagi.example.lg.jp", "http://10.0.0.5", "http://[2001:db8::1]/", "http://localhost.example"]
    {
        assert!(!loopback(remote), "{remote}");
    }
}
