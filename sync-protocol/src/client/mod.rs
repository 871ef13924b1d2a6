//! The HTTP sync client (cargo feature `client`): sign-in, token renewal, sign-out, and
//! `POST /v1/sync` with retries, over a [`SyncSession`] and a [`ReplicaStore`].
//!
//! [`SyncClient::sync`] runs whole sync rounds (protocol.md, section 7): it builds a request
//! from the store, sends it as CBOR, applies the answer durably, and goes round again while
//! the server has more (or changes were held back, or a fallback exchange is under way), up to
//! a bound. Transient failures — no connection, a timeout, a lost answer, `429`, `500`, `502`,
//! `503`, `504` — are retried with exponential back-off and full jitter, honouring
//! `Retry-After` ([`RetryPolicy`]). **Retrying a sync is always safe**: changes are
//! content-addressed, the server skips those it already holds, and the server acknowledges
//! only what is durable; a request whose answer was lost is simply sent again (protocol.md,
//! section 9). Other client errors (`4xx`) are never retried: they are returned as a
//! [`ClientError`] that says what the app must do — refresh the token, sign in again, or, for
//! a revoked device, [wipe the store](ReplicaStore::wipe).
//!
//! The client is async on [Tokio](https://tokio.rs): call it from a Tokio runtime with the
//! time driver enabled (`enable_all()`), which it uses to wait between retries.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tsunagi_sync::client::{ClientError, SyncClient};
//! use tsunagi_sync::ids::DeviceId;
//! use tsunagi_sync::session::SyncSession;
//! use tsunagi_sync::store::ReplicaStore;
//!
//! let client = SyncClient::new("https://tsunagi.example.jp")?;
//! let device = DeviceId::parse("5b7e2c1a-93d4-4f0e-8a61-0c2f9d3b7e45")?;
//! let mut tokens = client.login("sato", "correct horse battery staple", device).await?;
//! let mut store = ReplicaStore::open("/data/tsunagi/replica")?;
//! let mut session = SyncSession::new();
//!
//! let report = match client.sync(&tokens.access_token, &mut session, &mut store).await {
//!     Err(ClientError::TokenExpired) => {
//!         tokens = client.refresh(&tokens.refresh_token).await?;
//!         client.sync(&tokens.access_token, &mut session, &mut store).await?
//!     }
//!     Err(ClientError::DeviceRevoked { .. }) => {
//!         store.wipe()?;
//!         return Ok(());
//!     }
//!     other => other?,
//! };
//! for (case, refusal) in report.refusals() {
//!     println!("{case}: {}", refusal.message);
//! }
//! # Ok(()) }
//! ```

mod retry;

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

/// The HTTP method of [`SyncClient::send_json`].
pub use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use retry::{parse_retry_after, RetryPolicy};

use crate::ids::DeviceId;
use crate::session::{SessionError, SyncReport, SyncSession};
use crate::store::{ReplicaStore, StoreError};
use crate::wire::{
    encode_json, ApiErrorCode, Format, LoginRequest, LogoutRequest, RefreshRequest, SyncResponse, TokenResponse,
    BEARER_TOKEN_TYPE, CBOR_CONTENT_TYPE, JSON_CONTENT_TYPE, LOGIN_PATH, LOGOUT_PATH, REFRESH_PATH, SYNC_PATH,
};

/// The default time limit of one HTTP exchange (connect, send, receive the whole answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default time limit for establishing a connection (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default bound on request/response exchanges in one [`SyncClient::sync`].
pub const DEFAULT_MAX_ROUNDS: usize = 1000;

/// The default bound on the size of one answer's body (a rogue or broken server cannot make
/// the phone run out of memory).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Why a request to the server did not succeed.
///
/// The variants say what the app does next: [`TokenExpired`](Self::TokenExpired) → refresh the
/// token and call again; [`Unauthenticated`](Self::Unauthenticated) → sign in again;
/// [`DeviceRevoked`](Self::DeviceRevoked) → wipe the store and stop syncing;
/// [`Network`](Self::Network) and [`RetriesExhausted`](Self::RetriesExhausted) → try later.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// `401 device_revoked`: this device was revoked (lost or stolen phone, retired tablet).
    /// The app MUST wipe every replica, the index, the cursor and all tokens
    /// ([`ReplicaStore::wipe`]) and stop syncing; this is not "sign in again".
    #[error("this device has been revoked: wipe its replica store and stop syncing ({message})")]
    DeviceRevoked {
        /// The server's message.
        message: String,
    },
    /// `401 token_expired`: refresh the access token ([`SyncClient::refresh`]) and send the
    /// same request again.
    #[error("the access token has expired: refresh it and try again")]
    TokenExpired,
    /// `401 unauthenticated` (or a `401` without a usable body): no token, a bad one, or wrong
    /// credentials at sign-in. Sign in again; retrying with the same token does not help.
    #[error("not signed in: {message}")]
    Unauthenticated {
        /// The server's message.
        message: String,
    },
    /// Any other answer that is not a success, with the server's [`ApiError`] body when it
    /// sent one.
    ///
    /// [`ApiError`]: crate::wire::ApiError
    #[error("the server answered {status}{}: {message}", code.map(|c| format!(" {c}")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: u16,
        /// The `code` of the body, if it had one this version knows.
        code: Option<ApiErrorCode>,
        /// The `message` of the body (for people), or a description of the answer.
        message: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The request could not be sent or its answer not received (no connection, DNS, TLS,
    /// timeout, connection dropped).
    #[error("network: {0}")]
    Network(#[source] reqwest::Error),
    /// A successful answer that does not decode (a server or proxy of another kind, a bug).
    #[error("the server's answer does not decode: {0}")]
    Decode(String),
    /// The replica store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The sync session failed otherwise.
    #[error(transparent)]
    Session(SessionError),
    /// The client is misconfigured (a base URL that is not `http(s)://…`, a TLS back-end
    /// that does not initialise).
    #[error("sync client configuration: {0}")]
    Config(String),
    /// A retryable failure happened on every attempt the [`RetryPolicy`] allows (or the
    /// server's `Retry-After` was longer than its `max_delay`). `last` is the last failure.
    #[error("gave up after {attempts} attempt(s): {last}")]
    RetriesExhausted {
        /// How many times the request was sent.
        attempts: u32,
        /// The last failure.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// Whether the app must wipe the replica store and stop syncing (a revoked device),
    /// whether directly or as the last failure of a retried request.
    pub fn requires_wipe(&self) -> bool {
        match self {
            Self::DeviceRevoked { .. } => true,
            Self::RetriesExhausted { last, .. } => last.requires_wipe(),
            _ => false,
        }
    }

    /// Whether the user must sign in again.
    pub fn requires_sign_in(&self) -> bool {
        matches!(self, Self::Unauthenticated { .. })
    }
}

impl From<SessionError> for ClientError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Store(e) => Self::Store(e),
            #[allow(unreachable_patterns)]
            other => Self::Session(other),
        }
    }
}

impl From<StoreError> for ClientError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// Which failures a request may be retried after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Idempotent (sync, login, logout): any transport failure, 429, 500, 502, 503, 504.
    Idempotent,
    /// Not safe to repeat once the server may have processed it (a refresh rotates the
    /// refresh token): only failures where it surely did not — no connection, 429, 503.
    Unprocessed,
}

impl Retry {
    fn status(self, status: StatusCode) -> bool {
        match self {
            Retry::Idempotent => matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504),
            Retry::Unprocessed => matches!(status.as_u16(), 429 | 503),
        }
    }

    fn transport(self, error: &reqwest::Error) -> bool {
        if error.is_builder() || error.is_redirect() {
            return false;
        }
        match self {
            Retry::Idempotent => true,
            Retry::Unprocessed => error.is_connect(),
        }
    }
}

/// A complete HTTP answer.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The body was longer than the client accepts and was cut.
    truncated: bool,
}

impl Answer {
    /// Decodes a successful answer's body.
    fn decode<T>(
        &self,
        format: Format,
        decode: impl FnOnce(Format, &[u8]) -> Result<T, crate::wire::WireError>,
    ) -> Result<T, ClientError> {
        if self.truncated {
            return Err(ClientError::Decode(format!(
                "the answer is larger than the {} bytes this client accepts",
                self.body.len()
            )));
        }
        decode(format, &self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// Everything but the body of a non-success answer, loosely: an unknown `code` still gives
/// the message.
#[derive(Deserialize)]
struct LooseApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The format of an answer, from its `Content-Type` (`default` when absent or unknown).
fn answer_format(headers: &HeaderMap, default: Format) -> Format {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(Format::from_content_type).unwrap_or(default)
}

/// The [`ClientError`] of a non-success answer (protocol.md, section 10.1).
fn error_from_answer(answer: &Answer, now: SystemTime) -> ClientError {
    let status = answer.status.as_u16();
    let retry_after =
        answer.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| parse_retry_after(v, now));
    // The body follows the request's format, or is JSON when the server could not tell;
    // try the announced format first, then the other.
    let first = answer_format(&answer.headers, Format::Json);
    let other = if first == Format::Json { Format::Cbor } else { Format::Json };
    let body: Option<LooseApiError> = first.decode(&answer.body).ok().or_else(|| other.decode(&answer.body).ok());
    let code = body.as_ref().and_then(|b| ApiErrorCode::ALL.iter().copied().find(|c| c.as_str() == b.code));
    let message = match body {
        Some(body) if !body.message.is_empty() => body.message,
        _ => answer.status.canonical_reason().unwrap_or("unexpected status").to_owned(),
    };
    match code {
        Some(ApiErrorCode::DeviceRevoked) => ClientError::DeviceRevoked { message },
        Some(ApiErrorCode::TokenExpired) => ClientError::TokenExpired,
        Some(ApiErrorCode::Unauthenticated) => ClientError::Unauthenticated { message },
        // A code this version does not know: fall back on the status (protocol.md, 13).
        None if status == 401 => ClientError::Unauthenticated { message },
        code => ClientError::Api { status, code, message, retry_after },
    }
}

/// Decodes the JSON body of a successful authentication answer.
fn decode_auth<T: DeserializeOwned>(answer: &Answer) -> Result<T, ClientError> {
    answer.decode(Format::Json, |format, body| format.decode(body))
}

/// Builds a [`SyncClient`] with settings other than the defaults.
#[derive(Debug, Clone)]
pub struct SyncClientBuilder {
    base_url: String,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    max_rounds: usize,
    max_response_bytes: usize,
    user_agent: String,
}

impl SyncClientBuilder {
    /// The time limit of one HTTP exchange, from connecting to the end of the answer
    /// (default [`DEFAULT_TIMEOUT`], 30 s). A timeout is retried like a lost connection.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The time limit for connecting (default [`DEFAULT_CONNECT_TIMEOUT`], 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How failed requests are retried (default [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The bound on exchanges in one [`SyncClient::sync`] (default [`DEFAULT_MAX_ROUNDS`]);
    /// at least 1.
    pub fn max_rounds(mut self, rounds: usize) -> Self {
        self.max_rounds = rounds.max(1);
        self
    }

    /// The bound on the size of one answer's body (default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// The `User-Agent` sent (default `tsunagi-sync/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Builds the client (which ignores proxy settings for a server on a loopback address).
    /// Fails with [`ClientError::Config`] for a base URL that is not an
    /// absolute `http` or `https` URL (without query or fragment), or a TLS back-end that
    /// does not initialise.
    pub fn build(self) -> Result<SyncClient, ClientError> {
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| ClientError::Config(format!("base URL {:?}: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
            return Err(ClientError::Config(format!(
                "base URL {:?}: expected http(s)://host[:port][/prefix]",
                self.base_url
            )));
        }
        let mut http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent)
            // An idle connection is not reused once the server may be closing it (tsunagi
            // serve keeps idle connections for 5 s): a request written into a connection the
            // server has just closed fails as a network error, with no answer to go by.
            .pool_idle_timeout(Duration::from_secs(3))
            // A redirected POST turns into a GET without its body (and could carry the token
            // elsewhere): an API client follows none.
            .redirect(reqwest::redirect::Policy::none());
        if is_loopback(&url) {
            // A server on this machine is never reached through a proxy from the environment.
            http = http.no_proxy();
        }
        let http = http.build().map_err(|e| ClientError::Config(format!("HTTP client: {e}")))?;
        Ok(SyncClient {
            base_url: url.as_str().trim_end_matches('/').to_owned(),
            http,
            retry: self.retry,
            max_rounds: self.max_rounds,
            max_response_bytes: self.max_response_bytes,
        })
    }
}

/// The HTTP client of one tsunagi server. Cheap to clone (the connection pool is shared).
/// See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct SyncClient {
    /// Without a trailing slash; endpoint paths are appended to it.
    base_url: String,
    http: reqwest::Client,
    retry: RetryPolicy,
    max_rounds: usize,
    max_response_bytes: usize,
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl SyncClient {
    /// A client of the server at `base_url` (e.g. `https://tsunagi.example.jp`, or with a
    /// path prefix, `https://example.jp/tsunagi`), with the default settings.
    pub fn new(base_url: &str) -> Result<SyncClient, ClientError> {
        Self::builder(base_url).build()
    }

    /// A builder for a client of the server at `base_url`.
    pub fn builder(base_url: &str) -> SyncClientBuilder {
        SyncClientBuilder {
            base_url: base_url.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryPolicy::default(),
            max_rounds: DEFAULT_MAX_ROUNDS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            user_agent: concat!("tsunagi-sync/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// How failed requests are retried.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Signs `login` in on the registered device `device_id` (`POST /v1/auth/login`): the
    /// tokens come back bound to the device. Wrong credentials are
    /// [`ClientError::Unauthenticated`]; a revoked device is [`ClientError::DeviceRevoked`].
    pub async fn login(&self, login: &str, password: &str, device_id: DeviceId) -> Result<TokenResponse, ClientError> {
        let body = LoginRequest { login: login.to_owned(), password: password.to_owned(), device_id };
        self.auth(LOGIN_PATH, encode_json(&body), Retry::Idempotent).await
    }

    /// Exchanges the refresh token for new tokens (`POST /v1/auth/refresh`). The server may
    /// rotate the refresh token: store the new one. Retried only where the server surely did
    /// not process the request (no connection, `429`, `503`), since a refresh token may be
    /// good for one use only.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, ClientError> {
        let body = RefreshRequest { refresh_token: refresh_token.to_owned() };
        self.auth(REFRESH_PATH, encode_json(&body), Retry::Unprocessed).await
    }

    /// `GET` an endpoint of the supervisors' API (`docs/api.md`), e.g. `/v1/attention`, and
    /// decode its JSON answer. Retried like a sync (the request changes nothing).
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, access_token: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let answer = self
            .send(|| self.http.get(&url).bearer_auth(access_token).header(ACCEPT, JSON_CONTENT_TYPE), Retry::Idempotent)
            .await?;
        answer.decode(Format::Json, |_, body| crate::wire::decode_json(body))
    }

    /// Sends a JSON body to an endpoint of the supervisors' API (`method` is `POST`, `PUT` or
    /// `DELETE`) and decodes its JSON answer (`null` for an empty one). Retried only where the
    /// server surely did not process it.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        access_token: &str,
        body: &serde_json::Value,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let bytes = body.to_string().into_bytes();
        let answer = self
            .send(
                || {
                    self.http
                        .request(method.clone(), &url)
                        .bearer_auth(access_token)
                        .header(CONTENT_TYPE, JSON_CONTENT_TYPE)
                        .header(ACCEPT, JSON_CONTENT_TYPE)
                        .body(bytes.clone())
                },
                Retry::Unprocessed,
            )
            .await?;
        if answer.body.is_empty() {
            return answer.decode(Format::Json, |_, _| crate::wire::decode_json(b"null"));
        }
        answer.decode(Format::Json, |_, body| crate::wire::decode_json(body))
    }

    /// Revokes the refresh token (`POST /v1/auth/logout`). Signing out twice is harmless.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), ClientError> {
        let body = encode_json(&LogoutRequest { refresh_token: refresh_token.to_owned() });
        let url = self.url(LOGOUT_PATH);
        self.send(
            || {
                self.http
                    .post(&url)
                    .header(CONTENT_TYPE, JSON_CONTENT_TYPE)
                    .header(ACCEPT, JSON_CONTENT_TYPE)
                    .body(body.clone())
            },
            Retry::Idempotent,
        )
        .await?;
        Ok(())
    }

    async fn auth(&self, path: &str, body: Vec<u8>, retry: Retry) -> Result<TokenResponse, ClientError> {
        let url = self.url(path);
        let answer = self
            .send(
                || {
                    self.http
                        .post(&url)
                        .header(CONTENT_TYPE, JSON_CONTENT_TYPE)
                        .header(ACCEPT, JSON_CONTENT_TYPE)
                        .body(body.clone())
                },
                retry,
            )
            .await?;
        let tokens: TokenResponse = decode_auth(&answer)?;
        if !tokens.token_type.eq_ignore_ascii_case(BEARER_TOKEN_TYPE) {
            return Err(ClientError::Decode(format!("unsupported token type {:?}", tokens.token_type)));
        }
        Ok(tokens)
    }

    /// Syncs the store with the server: sync rounds (build a request from the store, `POST
    /// /v1/sync` in CBOR, apply the answer durably) until nothing is left to do now, at most
    /// the client's `max_rounds` (default 1000). Returns what happened, all rounds together.
    ///
    /// Each request is retried on transient failures as the [`RetryPolicy`] says. This is
    /// safe: the request is idempotent (changes are content-addressed; the server skips those
    /// it holds and acknowledges only what is durable), so a request whose answer was lost
    /// is simply sent again. A `413 payload_too_large` answer makes the session send smaller
    /// portions ([`SyncSession::limit_upload_bytes`]) and the round is tried again at once.
    ///
    /// On an error, the rounds before it are durable in the store; call `sync` again after
    /// dealing with the error: [`ClientError::TokenExpired`] → [`refresh`](Self::refresh)
    /// then sync again; [`ClientError::DeviceRevoked`] → [`ReplicaStore::wipe`]. If the bound
    /// is reached, the report's [`SyncReport::sync_again`] is still `true`.
    pub async fn sync(
        &self,
        access_token: &str,
        session: &mut SyncSession,
        store: &mut ReplicaStore,
    ) -> Result<SyncReport, ClientError> {
        self.sync_with_progress(access_token, session, store, |_| {}).await
    }

    /// [`SyncClient::sync`], calling `progress` after every round with that round's report
    /// (for instance to show how many cases of a large first sync have arrived:
    /// [`SyncReport::pending_assigned`] more are to come).
    pub async fn sync_with_progress(
        &self,
        access_token: &str,
        session: &mut SyncSession,
        store: &mut ReplicaStore,
        mut progress: impl FnMut(&SyncReport),
    ) -> Result<SyncReport, ClientError> {
        let url = self.url(SYNC_PATH);
        let mut report = SyncReport::default();
        for _ in 0..self.max_rounds {
            let (request, sent) = session.build_request(store)?;
            let body = Format::Cbor.encode(&request);
            let answer = self
                .send(
                    || {
                        self.http
                            .post(&url)
                            .bearer_auth(access_token)
                            .header(CONTENT_TYPE, CBOR_CONTENT_TYPE)
                            .header(ACCEPT, CBOR_CONTENT_TYPE)
                            .body(body.clone())
                    },
                    Retry::Idempotent,
                )
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(ClientError::Api { status: 413, .. }) if sent.change_count() > 1 => {
                    // Too big for the server: half the changes, the rest in later rounds.
                    session.limit_upload_bytes(Some(sent.change_bytes() / 2));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let response = answer.decode(answer_format(&answer.headers, Format::Cbor), SyncResponse::decode)?;
            let round = session.apply_response(store, &sent, response, chrono::Utc::now())?;
            progress(&round);
            report.absorb(round);
            if !report.sync_again() {
                break;
            }
        }
        Ok(report)
    }

    /// Sends the request `make` builds until it succeeds, fails in a way not to retry, or the
    /// retry policy gives up.
    async fn send(&self, make: impl Fn() -> reqwest::RequestBuilder, retry: Retry) -> Result<Answer, ClientError> {
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (error, retry_after) = match self.send_once(make()).await {
                Ok(answer) if answer.status.is_success() => return Ok(answer),
                Ok(answer) => {
                    let error = error_from_answer(&answer, SystemTime::now());
                    if !retry.status(answer.status) {
                        return Err(error);
                    }
                    let retry_after = match &error {
                        ClientError::Api { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    (error, retry_after)
                }
                Err(e) if retry.transport(&e) => (ClientError::Network(e), None),
                Err(e) => return Err(ClientError::Network(e)),
            };
            match self.retry.delay(attempts, retry_after, retry::random_fraction()) {
                Some(delay) => tokio::time::sleep(delay).await,
                None if self.retry.max_attempts <= 1 && retry_after.is_none() => return Err(error),
                None => return Err(ClientError::RetriesExhausted { attempts, last: Box::new(error) }),
            }
        }
    }

    /// One exchange: the status, the headers and the whole body (at most
    /// `max_response_bytes`).
    async fn send_once(&self, request: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
        let mut response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let limit = self.max_response_bytes;
        let expected = response.content_length().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
        let mut body = Vec::with_capacity(expected.min(limit));
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await? {
            if chunk.len() > limit - body.len() {
                // Stop reading; the caller reports the answer as too large.
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, headers, body, truncated })
    }
}

#[cfg(test)]
mod tests;
