//! The request and response of `POST /v1/sync`, in CBOR (`application/cbor`) or JSON
//! (`application/json`, for debugging), protocol version [`PROTOCOL_VERSION`].
//!
//! A phone sends one [`SyncRequest`] listing, per case it holds, `since` — the server heads
//! it last received for that case — and the raw Automerge changes it made after them
//! (`get_changes(since)` on its replica). The server checks and applies them and answers with
//! one [`SyncResponse`]: per case, a [`DocumentResult`] carrying the changes the phone lacks
//! (what the server has after `since`, less what the phone just sent) and the server's new
//! heads, which the phone stores as its next `since`. Both sides then hold the same heads:
//! one round trip. The response also brings cases newly visible to the device whole
//! ([`AssignedDocument`], paged by a byte budget with [`SyncResponse::more`]) and cases the
//! device must delete ([`PurgeNotice`]). Where the server cannot use `since` it answers
//! [`DocumentStatus::Resync`] and that case falls back to the standard Automerge sync protocol
//! inside the same envelope. An opaque [`SyncResponse::cursor`], sent back on the next request,
//! lets the server leave out cases that did not change. Errors that concern the whole request
//! are an HTTP status with an [`ApiError`] body; errors that concern one case are a
//! [`DocumentError`] inside its result.
//!
//! The contract, precise enough to write a client in another language from it alone, is
//! `docs/protocol.md` in the repository. This module is its Rust form: every type and field
//! here is described there, with the same names.
//!
//! Byte fields ([`Bytes`], [`Hash`](struct@Hash)) are CBOR byte strings in CBOR and standard base64 strings
//! (RFC 4648 §4, with padding) in JSON. Optional and empty fields may be omitted, and unknown
//! fields are ignored, so that adding a field does not break an older peer.
//!
//! ```
//! use tsunagi_sync::ids::CaseId;
//! use tsunagi_sync::wire::{DocumentUpload, Format, SyncRequest, PROTOCOL_VERSION};
//!
//! let case = DocumentUpload::new(CaseId::new_random(), vec![], vec![]);
//! let request = SyncRequest::new(None, vec![case]);
//! let body = Format::Cbor.encode(&request);
//! let back = SyncRequest::decode(Format::Cbor, &body).unwrap();
//! assert_eq!(back, request);
//! assert_eq!(back.protocol, PROTOCOL_VERSION);
//! ```

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::domain::Role;
use crate::ids::{CaseId, CaseNumber, DeviceId, StaffId};
use crate::validation::Violation;

/// The protocol version this module speaks, sent as `protocol` in every request; a server
/// answers each request in the request's version.
pub const PROTOCOL_VERSION: u32 = 2;

/// Every protocol version this implementation accepts. Version 2 is version 1 with one more
/// per-case status, [`DocumentStatus::Unavailable`] (from [`UNAVAILABLE_SINCE`]).
pub const SUPPORTED_PROTOCOLS: &[u32] = &[1, PROTOCOL_VERSION];

/// The first protocol version whose responses may answer a case `unavailable`; a server
/// answers an older client's request that meets such a case with `500 internal` instead.
pub const UNAVAILABLE_SINCE: u32 = 2;

/// The supported versions, for people: "1, 2".
fn supported_protocols() -> String {
    SUPPORTED_PROTOCOLS.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// The path of the sync endpoint (method `POST`).
pub const SYNC_PATH: &str = "/v1/sync";

/// The media type of a CBOR body (RFC 8949), the normal format.
pub const CBOR_CONTENT_TYPE: &str = "application/cbor";

/// The media type of a JSON body, accepted for debugging.
pub const JSON_CONTENT_TYPE: &str = "application/json";

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a body could not be decoded (or a value could not be turned into a wire value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is not CBOR, or not CBOR of the expected shape.
    #[error("malformed CBOR body: {0}")]
    Cbor(String),
    /// A complete CBOR item was followed by more bytes.
    #[error("malformed CBOR body: {0} unexpected byte(s) after the end of the message")]
    TrailingBytes(usize),
    /// The body is not JSON, or not JSON of the expected shape.
    #[error("malformed JSON body: {0}")]
    Json(String),
    /// The body is well formed but announces a protocol version this side does not speak.
    #[error("unsupported protocol version {got}: this implementation speaks versions {}", supported_protocols())]
    UnsupportedProtocol {
        /// The version the peer announced.
        got: u32,
    },
    /// A change hash must be exactly 32 bytes.
    #[error("a change hash has exactly 32 bytes, got {0}")]
    HashLength(usize),
}

impl WireError {
    /// The HTTP-level error code a server answers this decoding error with.
    pub fn api_error_code(&self) -> ApiErrorCode {
        match self {
            Self::UnsupportedProtocol { .. } => ApiErrorCode::UnsupportedProtocol,
            Self::Cbor(_) | Self::TrailingBytes(_) | Self::Json(_) | Self::HashLength(_) => ApiErrorCode::MalformedBody,
        }
    }
}

fn cbor_error(err: ciborium::de::Error<std::io::Error>) -> WireError {
    use ciborium::de::Error;
    WireError::Cbor(match err {
        // Reading from a slice only fails when the slice ends.
        Error::Io(_) => "unexpected end of input (truncated body?)".to_owned(),
        Error::Syntax(offset) => format!("invalid CBOR at byte {offset}"),
        Error::Semantic(Some(offset), msg) => format!("{msg} (at byte {offset})"),
        Error::Semantic(None, msg) => msg,
        Error::RecursionLimitExceeded => "nesting too deep".to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Encodes a value as CBOR: structs as maps with text keys, [`Bytes`] and [`Hash`](struct@Hash) as byte
/// strings, omitted optional fields absent.
///
/// # Panics
///
/// Only if `value`'s own `Serialize` implementation fails; never for the types of this module.
pub fn encode_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(err) = ciborium::into_writer(value, &mut out) {
        // Writing to a Vec cannot fail; only a failing Serialize impl gets here.
        panic!("a value could not be encoded as CBOR: {err}");
    }
    out
}

/// Decodes one CBOR item that must fill `bytes` exactly. Never panics on untrusted input.
pub fn decode_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let mut rest = bytes;
    let value = ciborium::from_reader(&mut rest).map_err(cbor_error)?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// Encodes a value as JSON, with [`Bytes`] and [`Hash`](struct@Hash) as base64 strings.
///
/// # Panics
///
/// Only if `value`'s own `Serialize` implementation fails or it holds a map with non-string
/// keys; never for the types of this module.
pub fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    match serde_json::to_vec(value) {
        Ok(out) => out,
        Err(err) => panic!("a value could not be encoded as JSON: {err}"),
    }
}

/// Decodes a JSON document (surrounding whitespace allowed, nothing else). Never panics on
/// untrusted input.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(bytes).map_err(|err| WireError::Json(err.to_string()))
}

/// The two body formats of the protocol. A response uses the format of its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// CBOR (RFC 8949), `application/cbor`: the normal format.
    Cbor,
    /// JSON, `application/json`: for debugging; bytes are base64 strings.
    Json,
}

impl Format {
    /// The format of a `Content-Type` (or `Accept`) value: the media type is compared without
    /// regard to case, and parameters such as `; charset=utf-8` are ignored. `None` for any
    /// other media type.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case(CBOR_CONTENT_TYPE) {
            Some(Format::Cbor)
        } else if media_type.eq_ignore_ascii_case(JSON_CONTENT_TYPE) {
            Some(Format::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Cbor => CBOR_CONTENT_TYPE,
            Format::Json => JSON_CONTENT_TYPE,
        }
    }

    /// Encodes a value in this format ([`encode_cbor`] or [`encode_json`]).
    pub fn encode<T: Serialize>(self, value: &T) -> Vec<u8> {
        match self {
            Format::Cbor => encode_cbor(value),
            Format::Json => encode_json(value),
        }
    }

    /// Decodes a value in this format ([`decode_cbor`] or [`decode_json`]).
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, WireError> {
        match self {
            Format::Cbor => decode_cbor(bytes),
            Format::Json => decode_json(bytes),
        }
    }
}

/// Just the `protocol` field of a request or response, read when the whole body does not
/// decode, to tell "another protocol version" from "malformed".
#[derive(Deserialize)]
struct ProtocolProbe {
    protocol: u32,
}

/// Decodes a request or response and checks its protocol version.
fn decode_versioned<T: DeserializeOwned>(
    format: Format,
    body: &[u8],
    protocol_of: impl Fn(&T) -> u32,
) -> Result<T, WireError> {
    match format.decode::<T>(body) {
        Ok(value) if SUPPORTED_PROTOCOLS.contains(&protocol_of(&value)) => Ok(value),
        Ok(value) => Err(WireError::UnsupportedProtocol { got: protocol_of(&value) }),
        Err(err) => match format.decode::<ProtocolProbe>(body) {
            // Another version may well have another shape: say so rather than "malformed".
            Ok(probe) if !SUPPORTED_PROTOCOLS.contains(&probe.protocol) => {
                Err(WireError::UnsupportedProtocol { got: probe.protocol })
            }
            _ => Err(err),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Bytes and hashes
// ---------------------------------------------------------------------------------------------

/// Opaque bytes: a CBOR byte string (major type 2) in CBOR, a standard base64 string with
/// padding (RFC 4648 §4) in JSON.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }

    /// The number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads can be large: show the length and a prefix.
        const SHOWN: usize = 16;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        let more = if self.0.len() > SHOWN { "…" } else { "" };
        write!(f, "Bytes({} B: {}{more})", self.0.len(), hex::encode(shown))
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for Bytes {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(bytes: Bytes) -> Self {
        bytes.0
    }
}

impl From<&automerge::Change> for Bytes {
    /// The change in Automerge's binary change format (`Change::raw_bytes`).
    fn from(change: &automerge::Change) -> Self {
        Self(change.raw_bytes().to_vec())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_bytes(deserializer).map(Bytes)
    }
}

fn serialize_bytes<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&BASE64.encode(bytes))
    } else {
        serializer.serialize_bytes(bytes)
    }
}

fn deserialize_bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(Base64Visitor)
    } else {
        deserializer.deserialize_byte_buf(ByteStringVisitor)
    }
}

/// Accepts a byte string only (no array of integers, no text).
struct ByteStringVisitor;

impl Visitor<'_> for ByteStringVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
}

/// Accepts a standard base64 string with padding only.
struct Base64Visitor;

impl Visitor<'_> for Base64Visitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a standard base64 string with padding (RFC 4648 §4)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        BASE64.decode(v).map_err(|err| E::custom(format_args!("invalid base64 ({err})")))
    }
}

/// An Automerge change hash (32 bytes), encoded like [`Bytes`] but always exactly 32 bytes.
/// `Display` and `Debug` show it in lowercase hex, as Automerge does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash in lowercase hex (64 characters), the form `@automerge/automerge` uses.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl TryFrom<&[u8]> for Hash {
    type Error = WireError;

    fn try_from(bytes: &[u8]) -> Result<Self, WireError> {
        <[u8; 32]>::try_from(bytes).map(Hash).map_err(|_| WireError::HashLength(bytes.len()))
    }
}

impl From<automerge::ChangeHash> for Hash {
    fn from(hash: automerge::ChangeHash) -> Self {
        Self(hash.0)
    }
}

impl From<&automerge::ChangeHash> for Hash {
    fn from(hash: &automerge::ChangeHash) -> Self {
        Self(hash.0)
    }
}

impl From<Hash> for automerge::ChangeHash {
    fn from(hash: Hash) -> Self {
        automerge::ChangeHash(hash.0)
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = deserialize_bytes(deserializer)?;
        Hash::try_from(bytes.as_slice())
            .map_err(|_| de::Error::invalid_length(bytes.len(), &"a change hash of exactly 32 bytes"))
    }
}

// ---------------------------------------------------------------------------------------------
// Closed lists of codes
// ---------------------------------------------------------------------------------------------

/// An enum whose serde form is a fixed string per variant, with `as_str`, `ALL` and `Display`
/// derived from the same table so that they can never disagree.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $string:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $string)] $variant, )+
        }

        impl $name {
            /// Every value, in the order of the protocol documentation.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The string form sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $string, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// What became of one case of the request (or of a case the server reports on its own).
    pub enum DocumentStatus {
        /// The uploaded changes, if any, were checked, applied and are durable; `changes` holds
        /// what the client lacks and `heads` the server's new heads (the client's next `since`).
        Ok = "ok",
        /// Nothing of this upload was applied; `error` says why. The server kept the raw upload
        /// in quarantine for an administrator. `heads` and `changes` still bring the client up
        /// to date with the server.
        Refused = "refused",
        /// The server cannot use `since` (unknown heads, or changes whose dependencies it
        /// lacks): nothing was applied and this case continues with the standard Automerge sync
        /// protocol; `sync_message` carries the server's message.
        Resync = "resync",
        /// No such case, or one this device may not see: the two are indistinguishable.
        NotFound = "not_found",
        /// The server could not handle this case now (its stored record did not load):
        /// nothing of this upload was applied or acknowledged, and the response brings nothing
        /// of the case. The client keeps its changes and `since`, and stores no cursor from
        /// this response, so that its next request lists the case again. Every other case of
        /// the response is answered as usual.
        Unavailable = "unavailable",
    }
}

wire_enum! {
    /// Why an upload for one case was refused.
    pub enum DocumentErrorCode {
        /// A change is not authored by this device (its actor id does not start with the
        /// device id).
        ForeignActor = "foreign_actor",
        /// Bytes that do not decode as Automerge changes (or as a sync message).
        CorruptChange = "corrupt_change",
        /// The merged result failed validation; `violations` lists each problem.
        InvalidChange = "invalid_change",
        /// This device's role may not write to cases (e.g. a meeting tablet).
        ReadOnly = "read_only",
        /// More changes or bytes for one case than the server accepts in one request.
        TooLarge = "too_large",
    }
}

wire_enum! {
    /// Why a device must delete its replica of a case.
    pub enum PurgeReason {
        /// The device's staff member is no longer assigned to the case.
        Unassigned = "unassigned",
        /// The staff member's access to the case ended otherwise (role or organisation change,
        /// case closed and archived, access withdrawn).
        AccessEnded = "access_ended",
        /// The case was merged into another case (a duplicate); the surviving case arrives as
        /// assigned if this device may see it.
        Merged = "merged",
        /// A meeting tablet's access to the case ended: the meeting (重層的支援会議 or 支援会議)
        /// is over or past its day, the case or the tablet left it, or consent was withdrawn.
        MeetingEnded = "meeting_ended",
    }
}

wire_enum! {
    /// The code of an error that concerns the whole request, with its HTTP status.
    pub enum ApiErrorCode {
        /// 400: the body does not decode as a request of this protocol.
        MalformedBody = "malformed_body",
        /// 400: `protocol` is not a version the server speaks; the message lists those it does.
        UnsupportedProtocol = "unsupported_protocol",
        /// 415: the `Content-Type` is neither `application/cbor` nor `application/json`.
        UnsupportedMediaType = "unsupported_media_type",
        /// 413: the body is larger than the server accepts.
        PayloadTooLarge = "payload_too_large",
        /// 401: no token, or one that is malformed, forged, unsigned (`alg: none`), or has the
        /// wrong issuer or audience.
        Unauthenticated = "unauthenticated",
        /// 401: the access token has expired; refresh it and retry.
        TokenExpired = "token_expired",
        /// 401: this device was revoked; the app must wipe its replica store and stop syncing.
        DeviceRevoked = "device_revoked",
        /// 403: the authenticated device or staff member may not use this endpoint.
        Forbidden = "forbidden",
        /// 404: no such endpoint, or (supervisor API) no such record that this staff member may
        /// see; the two are deliberately indistinguishable.
        NotFound = "not_found",
        /// 400 (supervisor API): a query parameter or body field is missing or invalid; the
        /// message names it. Nothing was changed.
        InvalidRequest = "invalid_request",
        /// 409 (supervisor API): the request is well formed but the record's state does not
        /// allow it (e.g. adding a case without consent to a 重層的支援会議). Nothing was changed.
        Conflict = "conflict",
        /// 429: too many requests; retry after `Retry-After`.
        TooManyRequests = "too_many_requests",
        /// 503: the server is temporarily unavailable; nothing was applied; retry after
        /// `Retry-After`.
        Unavailable = "unavailable",
        /// 500: an unexpected server error; nothing was acknowledged; retry with back-off.
        Internal = "internal",
    }
}

impl ApiErrorCode {
    /// The HTTP status this error is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::MalformedBody | Self::UnsupportedProtocol | Self::InvalidRequest => 400,
            Self::Unauthenticated | Self::TokenExpired | Self::DeviceRevoked => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::TooManyRequests => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    /// Whether the same request may simply be sent again later (with back-off, honouring
    /// `Retry-After` when present): 429, 503 and 500.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::TooManyRequests | Self::Unavailable | Self::Internal)
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

fn is_false(value: &bool) -> bool {
    !*value
}

/// The body of `POST /v1/sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The protocol version: one of [`SUPPORTED_PROTOCOLS`] ([`PROTOCOL_VERSION`] from
    /// [`SyncRequest::new`]).
    pub protocol: u32,
    /// The cursor of the last response the client durably stored, sent back unchanged; absent
    /// on a first sync (or after the client dropped it), in which case `documents` must list
    /// every case the client holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Bytes>,
    /// One entry per case (at most one per case id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<DocumentUpload>,
}

impl SyncRequest {
    /// A request of the current protocol version.
    pub fn new(cursor: Option<Bytes>, documents: Vec<DocumentUpload>) -> Self {
        Self { protocol: PROTOCOL_VERSION, cursor, documents }
    }

    /// Decodes a request body and checks its protocol version: a body that announces another
    /// version gives [`WireError::UnsupportedProtocol`] even if its shape differs.
    pub fn decode(format: Format, body: &[u8]) -> Result<Self, WireError> {
        decode_versioned(format, body, |r: &Self| r.protocol)
    }
}

/// What the client sends for one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentUpload {
    /// The case.
    pub case_id: CaseId,
    /// The server heads the client last received for this case; empty if the server has never
    /// acknowledged it (e.g. a case opened offline). Ignored when `sync_message` is present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub since: Vec<Hash>,
    /// Every local change the server has not acknowledged (`get_changes(since)` on the
    /// replica), in causal order, each in Automerge's binary change format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Bytes>,
    /// Fallback mode only: the client's Automerge sync message (`Message::encode`); `since` and
    /// `changes` are then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_message: Option<Bytes>,
}

impl DocumentUpload {
    /// The normal upload: `since` and the changes after it.
    pub fn new(case_id: CaseId, since: Vec<Hash>, changes: Vec<Bytes>) -> Self {
        Self { case_id, since, changes, sync_message: None }
    }

    /// A fallback-mode upload carrying one Automerge sync message.
    pub fn with_sync_message(case_id: CaseId, sync_message: Bytes) -> Self {
        Self { case_id, since: Vec::new(), changes: Vec::new(), sync_message: Some(sync_message) }
    }
}

// ---------------------------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------------------------

/// The body of a successful (HTTP 200) answer to `POST /v1/sync`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The protocol version: the request's.
    pub protocol: u32,
    /// Opaque bytes to send back unchanged in the next request, stored only once this
    /// response's effects are durable. When absent, the client forgets its cursor and its next
    /// request lists every case it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Bytes>,
    /// One result per case of the request, plus one per case the client did not list that
    /// changed since the cursor's response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<DocumentResult>,
    /// Cases newly visible to this device, whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assigned: Vec<AssignedDocument>,
    /// Cases whose replica the device must delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purge: Vec<PurgeNotice>,
    /// The server has more to send (it kept this response within its byte budget): sync again
    /// at once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
    /// With `more`: how many cases newly visible to this device are still to come in later
    /// responses (for a progress display on a first sync). Zero when absent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending_assigned: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl SyncResponse {
    /// An empty response of the current protocol version.
    pub fn new() -> Self {
        Self {
            protocol: PROTOCOL_VERSION,
            cursor: None,
            documents: Vec::new(),
            assigned: Vec::new(),
            purge: Vec::new(),
            more: false,
            pending_assigned: 0,
        }
    }

    /// Decodes a response body and checks its protocol version.
    pub fn decode(format: Format, body: &[u8]) -> Result<Self, WireError> {
        decode_versioned(format, body, |r: &Self| r.protocol)
    }
}

impl Default for SyncResponse {
    fn default() -> Self {
        Self::new()
    }
}

/// What the server answers for one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentResult {
    /// The case.
    pub case_id: CaseId,
    /// What became of the upload.
    pub status: DocumentStatus,
    /// `ok` and `refused`: the server's heads after this request, the client's next `since`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heads: Vec<Hash>,
    /// `ok` and `refused`: the changes the client lacks (what the server has after `since`,
    /// less what the client just sent), in causal order, in Automerge's binary change format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Bytes>,
    /// The case number (受付番号), once the server has assigned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_number: Option<CaseNumber>,
    /// `resync` only: the server's Automerge sync message (`Message::encode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_message: Option<Bytes>,
    /// `refused` only: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DocumentError>,
}

impl DocumentResult {
    /// `ok`: the upload is durable; `changes` is what the client lacks.
    pub fn ok(case_id: CaseId, heads: Vec<Hash>, changes: Vec<Bytes>) -> Self {
        Self { case_id, status: DocumentStatus::Ok, heads, changes, case_number: None, sync_message: None, error: None }
    }

    /// `refused`: nothing applied, `error` says why; `heads`/`changes` bring the client up to
    /// date with the server all the same.
    pub fn refused(case_id: CaseId, error: DocumentError, heads: Vec<Hash>, changes: Vec<Bytes>) -> Self {
        Self { status: DocumentStatus::Refused, error: Some(error), ..Self::ok(case_id, heads, changes) }
    }

    /// `resync`: continue with the standard Automerge sync protocol.
    pub fn resync(case_id: CaseId, sync_message: Bytes) -> Self {
        Self {
            status: DocumentStatus::Resync,
            sync_message: Some(sync_message),
            ..Self::ok(case_id, Vec::new(), Vec::new())
        }
    }

    /// `not_found`: no such case, or not visible to this device.
    pub fn not_found(case_id: CaseId) -> Self {
        Self { status: DocumentStatus::NotFound, ..Self::ok(case_id, Vec::new(), Vec::new()) }
    }

    /// `unavailable`: the server could not handle the case now; nothing was applied.
    pub fn unavailable(case_id: CaseId) -> Self {
        Self { status: DocumentStatus::Unavailable, ..Self::ok(case_id, Vec::new(), Vec::new()) }
    }

    /// The same result with the case number set.
    pub fn with_case_number(self, case_number: Option<CaseNumber>) -> Self {
        Self { case_number, ..self }
    }
}

/// Why an upload for one case was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentError {
    /// The machine code.
    pub code: DocumentErrorCode,
    /// For people (English; never contains case content).
    #[serde(default)]
    pub message: String,
    /// `invalid_change`: every validation problem, with its code and document path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

impl DocumentError {
    /// An error without violations.
    pub fn new(code: DocumentErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), violations: Vec::new() }
    }

    /// An `invalid_change` error listing the violations.
    pub fn invalid(violations: Vec<Violation>) -> Self {
        let message = match violations.len() {
            1 => "the change failed validation (1 violation)".to_owned(),
            n => format!("the changes failed validation ({n} violations)"),
        };
        Self { code: DocumentErrorCode::InvalidChange, message, violations }
    }
}

/// A case newly visible to this device, sent whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedDocument {
    /// The case.
    pub case_id: CaseId,
    /// The heads of `document`, the client's `since` for this case once it holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heads: Vec<Hash>,
    /// The whole document as Automerge's `save()` output (compressed).
    pub document: Bytes,
    /// The case number (受付番号), if assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_number: Option<CaseNumber>,
}

/// A case whose replica the device must delete (after uploading any pending changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeNotice {
    /// The case.
    pub case_id: CaseId,
    /// Why.
    pub reason: PurgeReason,
}

/// The body of every non-200 answer (JSON or CBOR following the request; JSON when the
/// request's format could not be determined).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The machine code; its HTTP status is [`ApiErrorCode::http_status`].
    pub code: ApiErrorCode,
    /// For people (English).
    #[serde(default)]
    pub message: String,
}

impl ApiError {
    /// Builds an error body.
    pub fn new(code: ApiErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<&WireError> for ApiError {
    fn from(err: &WireError) -> Self {
        let message = match err {
            WireError::UnsupportedProtocol { got } => {
                format!("protocol version {got} is not supported; supported versions: {}", supported_protocols())
            }
            other => other.to_string(),
        };
        Self::new(err.api_error_code(), message)
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

/// The path of the sign-in endpoint (method `POST`): [`LoginRequest`] in, [`TokenResponse`] out.
pub const LOGIN_PATH: &str = "/v1/auth/login";

/// The path of the token renewal endpoint (method `POST`): [`RefreshRequest`] in,
/// [`TokenResponse`] out.
pub const REFRESH_PATH: &str = "/v1/auth/refresh";

/// The path of the sign-out endpoint (method `POST`): [`LogoutRequest`] in, no body out. The
/// refresh token (and the access tokens it issued) stop working.
pub const LOGOUT_PATH: &str = "/v1/auth/logout";

/// The only `token_type` of a [`TokenResponse`]: the access token is sent as
/// `Authorization: Bearer <access_token>`.
pub const BEARER_TOKEN_TYPE: &str = "Bearer";

/// The body of `POST /v1/auth/login` (JSON only, like every authentication endpoint; errors
/// are an [`ApiError`] body in JSON).
///
/// `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    /// The staff member's login name.
    pub login: String,
    /// The staff member's password.
    pub password: String,
    /// The registered device signing in; the tokens are bound to it.
    pub device_id: DeviceId,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .field("device_id", &self.device_id)
            .finish()
    }
}

/// The answer of `POST /v1/auth/login` and `POST /v1/auth/refresh`.
///
/// `Debug` leaves both tokens out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The short-lived access token (a JWT), sent as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Always [`BEARER_TOKEN_TYPE`] (`"Bearer"`).
    pub token_type: String,
    /// How many seconds from now the access token stays valid.
    pub expires_in: u64,
    /// The refresh token, bound to the device: exchanged for new tokens at
    /// [`REFRESH_PATH`], revoked at [`LOGOUT_PATH`]. Keep it in the platform's secure storage.
    pub refresh_token: String,
    /// The staff member signed in.
    pub staff_id: StaffId,
    /// The staff member's role: what the app offers (a meeting tablet writes nothing).
    pub role: Role,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"<redacted>")
            .field("staff_id", &self.staff_id)
            .field("role", &self.role)
            .finish()
    }
}

/// The body of `POST /v1/auth/refresh`: exchanges a refresh token for new tokens.
///
/// `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The refresh token of the last [`TokenResponse`].
    pub refresh_token: String,
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshRequest").field("refresh_token", &"<redacted>").finish()
    }
}

/// The body of `POST /v1/auth/logout`: revokes a refresh token.
///
/// `Debug` leaves the token out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutRequest {
    /// The refresh token to revoke.
    pub refresh_token: String,
}

impl fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutRequest").field("refresh_token", &"<redacted>").finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::ViolationCode;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ReadDoc, ROOT};

    fn hash(b: u8) -> Hash {
        Hash([b; 32])
    }

    fn case(n: u8) -> CaseId {
        CaseId::from_uuid(uuid::Uuid::from_bytes([n; 16])).unwrap()
    }

    fn full_request() -> SyncRequest {
        SyncRequest::new(
            Some(Bytes(vec![0xc0, 0xff, 0xee])),
            vec![
                DocumentUpload::new(
                    case(1),
                    vec![hash(1), hash(2)],
                    vec![Bytes(vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3]), Bytes(vec![4; 40])],
                ),
                DocumentUpload::new(case(2), vec![], vec![Bytes(vec![9; 10])]),
                DocumentUpload::with_sync_message(case(3), Bytes(vec![0x42, 1, 2])),
            ],
        )
    }

    fn full_response() -> SyncResponse {
        SyncResponse {
            protocol: PROTOCOL_VERSION,
            cursor: Some(Bytes(vec![7; 24])),
            documents: vec![
                DocumentResult::ok(case(1), vec![hash(3)], vec![Bytes(vec![5; 12])])
                    .with_case_number(Some(CaseNumber::parse("2026-0153").unwrap())),
                DocumentResult::refused(
                    case(2),
                    DocumentError::invalid(vec![Violation::new(
                        ViolationCode::DeletedEntity,
                        "/activities/0191e3c4-7d2a-4b8e-9f00-2c1d5e6f7a8b",
                        "an activity cannot be deleted; void it instead",
                    )]),
                    vec![hash(4), hash(5)],
                    vec![],
                ),
                DocumentResult::resync(case(3), Bytes(vec![0x42, 9, 9])),
                DocumentResult::not_found(case(4)),
            ],
            assigned: vec![AssignedDocument {
                case_id: case(5),
                heads: vec![hash(6)],
                document: Bytes(vec![0x85, 0x6f, 0x4a, 0x83, 0, 1, 2]),
                case_number: Some(CaseNumber::parse("2025-0007").unwrap()),
            }],
            purge: vec![
                PurgeNotice { case_id: case(6), reason: PurgeReason::Unassigned },
                PurgeNotice { case_id: case(7), reason: PurgeReason::MeetingEnded },
            ],
            more: true,
            pending_assigned: 12,
        }
    }

    #[test]
    fn full_request_and_response_round_trip_in_cbor() {
        let request = full_request();
        let body = encode_cbor(&request);
        assert_eq!(decode_cbor::<SyncRequest>(&body).unwrap(), request);
        assert_eq!(SyncRequest::decode(Format::Cbor, &body).unwrap(), request);

        let response = full_response();
        let body = encode_cbor(&response);
        assert_eq!(decode_cbor::<SyncResponse>(&body).unwrap(), response);
        assert_eq!(SyncResponse::decode(Format::Cbor, &body).unwrap(), response);
    }

    #[test]
    fn full_request_and_response_round_trip_in_json() {
        let request = full_request();
        let body = encode_json(&request);
        assert_eq!(decode_json::<SyncRequest>(&body).unwrap(), request);

        let response = full_response();
        let body = encode_json(&response);
        assert_eq!(decode_json::<SyncResponse>(&body).unwrap(), response);
        assert_eq!(SyncResponse::decode(Format::Json, &body).unwrap(), response);
    }

    #[test]
    fn bytes_are_a_cbor_byte_string_and_a_base64_json_string() {
        let cbor = encode_cbor(&Bytes(vec![1, 2, 3]));
        assert_eq!(cbor, [0x43, 1, 2, 3]);
        assert_eq!(encode_json(&Bytes(vec![1, 2, 3])), b"\"AQID\"");
        assert_eq!(decode_json::<Bytes>(b"\"AQID\"").unwrap(), Bytes(vec![1, 2, 3]));
        assert_eq!(encode_json(&Bytes(vec![0xff, 0xfe])), b"\"//4=\"");
        assert_eq!(decode_json::<Bytes>(b"\"\"").unwrap(), Bytes(vec![]));

        // A hash is a 32-byte string: 0x58 0x20 then the bytes.
        let cbor = encode_cbor(&hash(7));
        assert_eq!(&cbor[..2], &[0x58, 0x20]);
        assert_eq!(cbor.len(), 34);

        // Strict: no array of integers, no text in CBOR; no array and no bad base64 in JSON.
        assert!(decode_cbor::<Bytes>(&encode_cbor(&vec![1u8, 2, 3])).is_err());
        assert!(decode_cbor::<Bytes>(&encode_cbor(&"AQID")).is_err());
        assert!(decode_json::<Bytes>(b"[1,2,3]").is_err());
        for bad in ["\"AQI\"", "\"AQ=D\"", "\"A QID\"", "\"AQID==\"", "\"_-8=\"", "\"AR==\""] {
            assert!(decode_json::<Bytes>(bad.as_bytes()).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn a_hash_must_have_32_bytes() {
        assert!(decode_cbor::<Hash>(&encode_cbor(&Bytes(vec![1; 31]))).is_err());
        assert!(decode_cbor::<Hash>(&encode_cbor(&Bytes(vec![1; 33]))).is_err());
        assert!(decode_json::<Hash>(&encode_json(&Bytes(vec![1; 31]))).is_err());
        assert_eq!(decode_cbor::<Hash>(&encode_cbor(&Bytes(vec![1; 32]))).unwrap(), hash(1));
        assert_eq!(decode_json::<Hash>(&encode_json(&hash(2))).unwrap(), hash(2));
        assert_eq!(Hash::try_from(&[0u8; 31][..]), Err(WireError::HashLength(31)));

        // Inside a request, a short hash makes the body malformed.
        let mut json: serde_json::Value = serde_json::from_slice(&encode_json(&full_request())).unwrap();
        json["documents"][0]["since"][0] = serde_json::Value::String(BASE64.encode([1u8; 31]));
        let err = SyncRequest::decode(Format::Json, &serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert_eq!(err.api_error_code(), ApiErrorCode::MalformedBody);
    }

    #[test]
    fn omitted_fields_take_their_defaults_and_are_omitted_on_output() {
        let request: SyncRequest = decode_json(br#"{"protocol":2}"#).unwrap();
        assert_eq!(request, SyncRequest::new(None, vec![]));
        assert_eq!(encode_json(&request), br#"{"protocol":2}"#);

        let response: SyncResponse = decode_json(br#"{"protocol":2}"#).unwrap();
        assert_eq!(response, SyncResponse::new());
        assert_eq!(encode_json(&response), br#"{"protocol":2}"#);

        let id = case(1);
        let result: DocumentResult =
            decode_json(format!(r#"{{"case_id":"{id}","status":"not_found"}}"#).as_bytes()).unwrap();
        assert_eq!(result, DocumentResult::not_found(id));
        assert_eq!(
            String::from_utf8(encode_json(&result)).unwrap(),
            format!(r#"{{"case_id":"{id}","status":"not_found"}}"#)
        );

        // A CBOR null is as good as an absent optional field.
        let mut map = vec![
            (ciborium::Value::Text("protocol".into()), ciborium::Value::Integer(1.into())),
            (ciborium::Value::Text("cursor".into()), ciborium::Value::Null),
        ];
        let body = encode_cbor(&ciborium::Value::Map(map.clone()));
        assert_eq!(decode_cbor::<SyncRequest>(&body).unwrap().cursor, None);

        // But required fields are required.
        map.remove(0);
        assert!(decode_cbor::<SyncRequest>(&encode_cbor(&ciborium::Value::Map(map))).is_err());
        assert!(decode_json::<DocumentResult>(format!(r#"{{"case_id":"{id}"}}"#).as_bytes()).is_err());
        assert!(decode_json::<AssignedDocument>(format!(r#"{{"case_id":"{id}"}}"#).as_bytes()).is_err());
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let id = case(1);
        let json = format!(
            r#"{{"protocol":1,"future":{{"a":[1,2]}},"documents":[
                {{"case_id":"{id}","since":[],"priority":"high","changes":["AQID"]}}]}}"#
        );
        let request: SyncRequest = decode_json(json.as_bytes()).unwrap();
        assert_eq!(request.documents, vec![DocumentUpload::new(id, vec![], vec![Bytes(vec![1, 2, 3])])]);

        let json = format!(
            r#"{{"protocol":1,"server_time":"2026-11-04T10:00:00Z","documents":[{{"case_id":"{id}",
            "status":"refused","error":{{"code":"invalid_change","message":"m","hint":1,
            "violations":[{{"code":"too_long","path":"/","message":"x","severity":"error"}}]}}}}],
            "purge":[{{"case_id":"{id}","reason":"merged","into":"{id}"}}]}}"#
        );
        let response: SyncResponse = decode_json(json.as_bytes()).unwrap();
        assert_eq!(response.documents[0].error.as_ref().unwrap().violations[0].code, ViolationCode::TooLong);
        assert_eq!(response.purge[0].reason, PurgeReason::Merged);

        // The same in CBOR, with an unknown field holding bytes, a tag and a nested map.
        use ciborium::Value as V;
        let body = encode_cbor(&V::Map(vec![
            (V::Text("extra".into()), V::Tag(24, Box::new(V::Bytes(vec![1, 2])))),
            (V::Text("protocol".into()), V::Integer(2.into())),
            (V::Text("more_future".into()), V::Map(vec![(V::Integer(1.into()), V::Array(vec![]))])),
        ]));
        assert_eq!(decode_cbor::<SyncResponse>(&body).unwrap(), SyncResponse::new());
    }

    #[test]
    fn broken_bodies_give_errors_not_panics() {
        for body in [encode_cbor(&full_request()), encode_cbor(&full_response())] {
            for len in 0..body.len() {
                assert!(decode_cbor::<SyncRequest>(&body[..len]).is_err(), "prefix {len}");
                assert!(decode_cbor::<SyncResponse>(&body[..len]).is_err(), "prefix {len}");
            }
        }
        let json = encode_json(&full_response());
        for len in 0..json.len() {
            assert!(decode_json::<SyncResponse>(&json[..len]).is_err(), "prefix {len}");
        }

        let garbage: &[&[u8]] = &[
            b"",
            b"\xff",
            b"\x00",
            b"hello world",
            b"\x1f",
            // A byte string and an array announcing 2^64-1 elements.
            b"\xa1\x68protocol\x01\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xa2\x68protocol\x01\x69documents\x9b\xff\xff\xff\xff\xff\xff\xff\xff\x00",
            // Deep nesting.
            &[0x81; 10_000],
            &[0xbf; 10_000],
        ];
        for body in garbage {
            let err = decode_cbor::<SyncRequest>(body).unwrap_err();
            assert_eq!(err.api_error_code(), ApiErrorCode::MalformedBody);
            assert!(!err.to_string().is_empty());
            assert!(decode_json::<SyncRequest>(body).is_err());
        }
        assert!(decode_json::<SyncRequest>(&[b'['; 10_000]).is_err());
        assert!(decode_json::<SyncRequest>(br#"{"protocol":1,"cursor":"not base64!"}"#).is_err());
        assert!(decode_json::<SyncRequest>(br#"{"protocol":-1}"#).is_err());

        // Trailing bytes after a complete item are refused.
        let mut body = encode_cbor(&full_request());
        body.push(0);
        assert_eq!(decode_cbor::<SyncRequest>(&body), Err(WireError::TrailingBytes(1)));
        assert!(decode_json::<SyncRequest>(br#"{"protocol":1} {}"#).is_err());

        // A case id that is not a canonical UUID makes the whole body malformed.
        let body = br#"{"protocol":1,"documents":[{"case_id":"0191E3C4-7D2A-4B8E-9F00-2C1D5E6F7A8B"}]}"#;
        assert!(SyncRequest::decode(Format::Json, body).is_err());
        // So does a status or code outside its closed list.
        let body = format!(r#"{{"protocol":1,"documents":[{{"case_id":"{}","status":"maybe"}}]}}"#, case(1));
        assert!(SyncResponse::decode(Format::Json, body.as_bytes()).is_err());
    }

    #[test]
    fn other_protocol_versions_are_reported_as_such() {
        let err = SyncRequest::decode(Format::Json, br#"{"protocol":3}"#).unwrap_err();
        assert_eq!(err, WireError::UnsupportedProtocol { got: 3 });
        assert_eq!(err.api_error_code(), ApiErrorCode::UnsupportedProtocol);
        // Even when the rest of the body has another shape.
        let err = SyncRequest::decode(Format::Json, br#"{"protocol":7,"documents":"elsewhere"}"#).unwrap_err();
        assert_eq!(err, WireError::UnsupportedProtocol { got: 7 });
        let mut request = full_request();
        request.protocol = 0;
        let err = SyncRequest::decode(Format::Cbor, &encode_cbor(&request)).unwrap_err();
        assert_eq!(err, WireError::UnsupportedProtocol { got: 0 });
        let api = ApiError::from(&err);
        assert_eq!(api.code, ApiErrorCode::UnsupportedProtocol);
        assert!(api.message.contains("supported versions: 1, 2"), "{}", api.message);
        // Both versions decode.
        for version in [1, 2] {
            request.protocol = version;
            assert_eq!(SyncRequest::decode(Format::Cbor, &encode_cbor(&request)).unwrap().protocol, version);
        }
        // A malformed body of the right version stays malformed.
        let err = SyncRequest::decode(Format::Json, br#"{"protocol":1,"documents":"x"}"#).unwrap_err();
        assert_eq!(err.api_error_code(), ApiErrorCode::MalformedBody);
        let err = SyncRequest::decode(Format::Json, br#"{"documents":[]}"#).unwrap_err();
        assert_eq!(err.api_error_code(), ApiErrorCode::MalformedBody);
    }

    #[test]
    fn api_error_codes_have_their_strings_and_statuses() {
        use ApiErrorCode as C;
        let table = [
            (C::MalformedBody, "malformed_body", 400, false),
            (C::UnsupportedProtocol, "unsupported_protocol", 400, false),
            (C::UnsupportedMediaType, "unsupported_media_type", 415, false),
            (C::PayloadTooLarge, "payload_too_large", 413, false),
            (C::Unauthenticated, "unauthenticated", 401, false),
            (C::TokenExpired, "token_expired", 401, false),
            (C::DeviceRevoked, "device_revoked", 401, false),
            (C::Forbidden, "forbidden", 403, false),
            (C::NotFound, "not_found", 404, false),
            (C::InvalidRequest, "invalid_request", 400, false),
            (C::Conflict, "conflict", 409, false),
            (C::TooManyRequests, "too_many_requests", 429, true),
            (C::Unavailable, "unavailable", 503, true),
            (C::Internal, "internal", 500, true),
        ];
        assert_eq!(C::ALL.len(), table.len());
        for (code, string, status, retryable) in table {
            assert!(C::ALL.contains(&code));
            assert_eq!(code.as_str(), string);
            assert_eq!(code.to_string(), string);
            assert_eq!(code.http_status(), status, "{code}");
            assert_eq!(code.is_retryable(), retryable, "{code}");
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::Value::String(string.into()));
            let error = ApiError::new(code, "why");
            assert_eq!(decode_cbor::<ApiError>(&encode_cbor(&error)).unwrap(), error);
            let json = format!(r#"{{"code":"{string}","message":"why"}}"#);
            assert_eq!(decode_json::<ApiError>(json.as_bytes()).unwrap(), error);
        }
    }

    #[test]
    fn other_codes_match_their_serde_form() {
        fn check<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug + Copy>(all: &[T], s: fn(T) -> &'static str) {
            for &value in all {
                let json = encode_json(&value);
                assert_eq!(json, format!("\"{}\"", s(value)).as_bytes());
                assert_eq!(decode_json::<T>(&json).unwrap(), value);
                assert_eq!(decode_cbor::<T>(&encode_cbor(&value)).unwrap(), value);
            }
        }
        check(DocumentStatus::ALL, DocumentStatus::as_str);
        check(DocumentErrorCode::ALL, DocumentErrorCode::as_str);
        check(PurgeReason::ALL, PurgeReason::as_str);
        assert_eq!(DocumentStatus::ALL.len(), 5);
        assert_eq!(DocumentErrorCode::ALL.len(), 5);
        assert_eq!(PurgeReason::ALL.len(), 4);
        assert_eq!(DocumentStatus::NotFound.as_str(), "not_found");
        assert_eq!(PurgeReason::AccessEnded.as_str(), "access_ended");
        assert_eq!(DocumentErrorCode::ForeignActor.as_str(), "foreign_actor");
    }

    #[test]
    fn formats_follow_the_content_type() {
        let cases = [
            ("application/cbor", Some(Format::Cbor)),
            ("Application/CBOR", Some(Format::Cbor)),
            ("application/cbor; foo=bar", Some(Format::Cbor)),
            ("application/json", Some(Format::Json)),
            ("application/json; charset=utf-8", Some(Format::Json)),
            ("  APPLICATION/JSON ;charset=UTF-8", Some(Format::Json)),
            ("text/plain", None),
            ("application/cbor-seq", None),
            ("application/jsonx", None),
            ("application/problem+json", None),
            ("application/octet-stream", None),
            ("", None),
            (";", None),
        ];
        for (content_type, format) in cases {
            assert_eq!(Format::from_content_type(content_type), format, "{content_type:?}");
        }
        for format in [Format::Cbor, Format::Json] {
            assert_eq!(Format::from_content_type(format.content_type()), Some(format));
            let request = full_request();
            assert_eq!(format.decode::<SyncRequest>(&format.encode(&request)).unwrap(), request);
        }
    }

    #[test]
    fn real_automerge_changes_and_hashes_survive_the_wire() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "schema", 1).unwrap();
        doc.commit();
        doc.put(ROOT, "status", "open").unwrap();
        doc.commit();
        let changes = doc.get_changes(&[]);
        assert_eq!(changes.len(), 2);

        let upload = DocumentUpload::new(case(1), vec![], changes.iter().map(Bytes::from).collect());
        for format in [Format::Cbor, Format::Json] {
            let back: DocumentUpload = format.decode(&format.encode(&upload)).unwrap();
            assert_eq!(back, upload);
            for (bytes, original) in back.changes.iter().zip(&changes) {
                let decoded = automerge::Change::from_bytes(bytes.as_slice().to_vec()).unwrap();
                assert_eq!(decoded.hash(), original.hash());
            }
        }

        // Heads convert both ways and survive encoding.
        let heads: Vec<Hash> = doc.get_heads().into_iter().map(Hash::from).collect();
        let back: Vec<Hash> = decode_cbor(&encode_cbor(&heads)).unwrap();
        let back: Vec<automerge::ChangeHash> = back.into_iter().map(Into::into).collect();
        assert_eq!(back, doc.get_heads());
        assert_eq!(heads[0].to_hex(), doc.get_heads()[0].to_string());

        // A replica that applies the decoded changes reaches the same heads.
        let mut replica = AutoCommit::new();
        let decoded: Vec<automerge::Change> =
            upload.changes.iter().map(|b| automerge::Change::from_bytes(b.as_slice().to_vec()).unwrap()).collect();
        replica.apply_changes(decoded).unwrap();
        assert_eq!(replica.get_heads(), doc.get_heads());
        assert!(replica.get(ROOT, "status").unwrap().is_some());

        // A sync message survives too.
        use automerge::sync::SyncDoc;
        let mut state = automerge::sync::State::new();
        let message = doc.sync().generate_sync_message(&mut state).unwrap();
        let upload = DocumentUpload::with_sync_message(case(1), Bytes(message.clone().encode()));
        let back: DocumentUpload = decode_cbor(&encode_cbor(&upload)).unwrap();
        let decoded = automerge::sync::Message::decode(back.sync_message.unwrap().as_slice()).unwrap();
        assert_eq!(decoded.heads, message.heads);
    }

    #[test]
    fn debug_forms_are_short() {
        assert_eq!(format!("{:?}", Bytes(vec![1, 2])), "Bytes(2 B: 0102)");
        assert!(format!("{:?}", Bytes(vec![0; 1000])).len() < 60);
        assert_eq!(format!("{:?}", hash(0xab)), format!("Hash({})", "ab".repeat(32)));
    }

    #[test]
    fn auth_bodies_are_plain_json_and_hide_secrets_from_debug() {
        let device = DeviceId::from_uuid(uuid::Uuid::from_bytes([3; 16])).unwrap();
        let login = LoginRequest { login: "sato".into(), password: "hunter2".into(), device_id: device };
        let json = String::from_utf8(encode_json(&login)).unwrap();
        assert_eq!(json, r#"{"login":"sato","password":"hunter2","device_id":"03030303-0303-0303-0303-030303030303"}"#);
        assert_eq!(decode_json::<LoginRequest>(json.as_bytes()).unwrap(), login);
        assert!(!format!("{login:?}").contains("hunter2"));

        let staff = StaffId::from_uuid(uuid::Uuid::from_bytes([4; 16])).unwrap();
        let body = format!(
            r#"{{"access_token":"eyJ.a.b","token_type":"Bearer","expires_in":900,"refresh_token":"r-123",
            "staff_id":"{staff}","role":"counsellor","issued_at":"ignored"}}"#
        );
        let tokens: TokenResponse = decode_json(body.as_bytes()).unwrap();
        assert_eq!(tokens.token_type, BEARER_TOKEN_TYPE);
        assert_eq!((tokens.expires_in, tokens.staff_id, tokens.role), (900, staff, Role::Counsellor));
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("eyJ") && !shown.contains("r-123"), "{shown}");
        assert_eq!(decode_json::<TokenResponse>(&encode_json(&tokens)).unwrap(), tokens);
        // Every field is required.
        assert!(decode_json::<TokenResponse>(br#"{"access_token":"a","token_type":"Bearer"}"#).is_err());
        assert!(decode_json::<TokenResponse>(body.replace("counsellor", "janitor").as_bytes()).is_err());

        for body in [
            encode_json(&RefreshRequest { refresh_token: "r-9".into() }),
            encode_json(&LogoutRequest { refresh_token: "r-9".into() }),
        ] {
            assert_eq!(body, br#"{"refresh_token":"r-9"}"#);
        }
        assert!(!format!("{:?}", RefreshRequest { refresh_token: "r-9".into() }).contains("r-9"));
        assert!(!format!("{:?}", LogoutRequest { refresh_token: "r-9".into() }).contains("r-9"));
        assert_eq!([LOGIN_PATH, REFRESH_PATH, LOGOUT_PATH], ["/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"]);
    }
}
