//! Authentication end to end, over real HTTP, on SQLite and on PostgreSQL: each story below
//! runs once per backend (`<story>::sqlite`, `<story>::postgres`).

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use diesel::prelude::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tsunagi_server::admin;
use tsunagi_server::auth::token::{AccessClaims, AccessTokens};
use tsunagi_server::store::schema::{audit_log, refresh_tokens, staff};
use tsunagi_server::store::StoreError;
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::DeviceId;
use tsunagi_sync::wire::{TokenResponse, LOGIN_PATH, REFRESH_PATH};

use common::{error_of, spawn_app, Backend, TestApp};

on_both_backends!(
    health_and_readiness_answer,
    a_login_gives_tokens_that_work,
    every_role_signs_in_on_its_own_device,
    a_wrong_password_or_unknown_login_is_refused_slowly,
    repeated_failures_are_throttled_with_retry_after,
    concurrent_guesses_cannot_pass_the_limit,
    forged_unsigned_and_foreign_tokens_are_refused,
    an_expired_access_token_says_so,
    refresh_rotates_and_a_reused_token_ends_the_login,
    a_refresh_whose_answer_was_lost_can_be_retried_without_ending_the_login,
    an_expired_refresh_token_is_refused,
    logout_ends_the_login,
    revoking_a_device_takes_effect_on_the_very_next_request,
    a_device_of_someone_else_is_refused,
    a_disabled_account_is_forbidden,
    bad_bodies_are_answered_with_codes,
    passwords_never_reach_the_audit_log,
    the_admin_command_sets_up_accounts_that_sign_in,
);

async fn health_and_readiness_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/healthz", "/readyz"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

async fn a_login_gives_tokens_that_work(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = &people.counsellor;

    let response = app.try_login(&sato.login, &sato.password, sato.device).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let tokens: TokenResponse = response.json().await.unwrap();
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 900);
    assert_eq!((tokens.staff_id, tokens.role), (sato.staff, Role::Counsellor));
    assert_eq!(tokens.refresh_token.len(), 43);

    let me = app.me(&tokens.access_token).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(
        me,
        json!({
            "staff_id": sato.staff.to_string(),
            "device_id": sato.device.to_string(),
            "role": "counsellor",
            "municipality": "122203",
            "area": "east",
        })
    );

    // The login name is not case-sensitive.
    let response = app.try_login("  SATO ", &sato.password, sato.device).await;
    assert_eq!(response.status(), 200);

    // No token at all.
    let response = app.http.get(app.url("/v1/me")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()));
}

async fn every_role_signs_in_on_its_own_device(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    for who in [&people.counsellor2, &people.supervisor, &people.meeting_tablet, &people.administrator] {
        let tokens = app.login(who).await;
        assert_eq!(tokens.role, who.role);
        let me: Value = app.me(&tokens.access_token).await.json().await.unwrap();
        assert_eq!(me["role"], who.role.as_key());
        assert_eq!(me["device_id"], who.device.to_string());
    }
}

async fn a_wrong_password_or_unknown_login_is_refused_slowly(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = &people.counsellor;

    let started = Instant::now();
    let wrong = app.try_login(&sato.login, "not the password at all", sato.device).await;
    assert!(started.elapsed() >= Duration::from_millis(200), "a failure is held back");
    let wrong_body: Value = {
        assert_eq!(wrong.status(), 401);
        wrong.json().await.unwrap()
    };
    assert_eq!(wrong_body["code"], "unauthenticated");

    // An unknown login name gets exactly the same answer.
    let unknown = app.try_login("nobody", "not the password at all", sato.device).await;
    assert_eq!(unknown.status(), 401);
    let unknown_body: Value = unknown.json().await.unwrap();
    assert_eq!(unknown_body, wrong_body);
}

async fn repeated_failures_are_throttled_with_retry_after(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = &people.counsellor;
    assert_eq!(app.settings.login_failures, 5);

    for attempt in 0..5 {
        let response = app.try_login(&sato.login, &format!("wrong password {attempt}"), sato.device).await;
        assert_eq!(error_of(response).await, (401, "unauthenticated".into()), "attempt {attempt}");
    }
    // Now even the right password is refused, however the name is spelt.
    for login in [sato.login.as_str(), "Sato"] {
        let response = app.try_login(login, &sato.password, sato.device).await;
        assert_eq!(response.status(), 429);
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
        assert_eq!(error_of(response).await, (429, "too_many_requests".into()));
    }
    // Other accounts are not affected.
    app.login(&people.counsellor2).await;

    // Once the failures age out (moved 15 minutes back here), the right password works and
    // clears the count.
    let past = (Utc::now() - chrono::Duration::minutes(16)).naive_utc();
    app.db
        .write(|c| -> Result<usize, StoreError> {
            use tsunagi_server::store::schema::login_attempts;
            Ok(diesel::update(login_attempts::table).set(login_attempts::attempted_at.eq(past)).execute(c)?)
        })
        .unwrap();
    app.login(sato).await;
    let response = app.try_login(&sato.login, "wrong again", sato.device).await;
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()));
    app.login(sato).await;
}

async fn concurrent_guesses_cannot_pass_the_limit(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = people.counsellor.clone();
    let mut guesses = tokio::task::JoinSet::new();
    for attempt in 0..20 {
        let (http, url) = (app.http.clone(), app.url(LOGIN_PATH));
        let body = json!({ "login": sato.login, "password": format!("guess {attempt}"), "device_id": sato.device });
        guesses.spawn(async move { http.post(url).json(&body).send().await.unwrap().status().as_u16() });
    }
    let mut statuses = guesses.join_all().await;
    statuses.sort_unstable();
    let refused = statuses.iter().filter(|&&s| s == 401).count();
    assert_eq!(refused, 5, "exactly the limit of guesses is checked: {statuses:?}");
    assert!(statuses.iter().all(|&s| s == 401 || s == 429), "{statuses:?}");
}

/// The claims of a real access token (checked with the server's own key).
fn claims_of(app: &TestApp, access_token: &str) -> AccessClaims {
    let tokens = AccessTokens::new(&app.settings.signing_key, &app.settings.issuer, app.settings.access_token_ttl);
    tokens.verify(access_token).expect("a valid token")
}

fn sign(claims: &AccessClaims, algorithm: Algorithm, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(key)).unwrap()
}

async fn forged_unsigned_and_foreign_tokens_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let tokens = app.login(&people.counsellor).await;
    let claims = claims_of(&app, &tokens.access_token);
    let key = app.settings.signing_key.expose().to_vec();

    // The control: the same claims, re-signed with the server's key, are accepted.
    assert_eq!(app.me(&sign(&claims, Algorithm::HS256, &key)).await.status(), 200);

    let mut forged = Vec::new();
    // Another key.
    forged.push(("another key", sign(&claims, Algorithm::HS256, &[7u8; 32])));
    // Another algorithm, with the right key.
    forged.push(("HS512", sign(&claims, Algorithm::HS512, &key)));
    forged.push(("HS384", sign(&claims, Algorithm::HS384, &key)));
    // Unsigned: alg none, without and with a signature part.
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#, r#"{"typ":"JWT"}"#] {
        let header = URL_SAFE_NO_PAD.encode(header);
        forged.push(("alg none", format!("{header}.{payload}.")));
        let signature = tokens.access_token.rsplit('.').next().unwrap();
        forged.push(("alg none, old signature", format!("{header}.{payload}.{signature}")));
    }
    // Wrong issuer, wrong audience, no expiry.
    let mut other = claims.clone();
    other.iss = "someone-else".into();
    forged.push(("wrong iss", sign(&other, Algorithm::HS256, &key)));
    let mut other = claims.clone();
    other.aud = "someone-else".into();
    forged.push(("wrong aud", sign(&other, Algorithm::HS256, &key)));
    let mut no_exp = serde_json::to_value(&claims).unwrap();
    no_exp.as_object_mut().unwrap().remove("exp");
    forged.push((
        "no exp",
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &no_exp, &EncodingKey::from_secret(&key)).unwrap(),
    ));
    // A valid signature over claims naming another staff member's device.
    let mut other = claims.clone();
    other.dev = people.counsellor2.device;
    forged.push(("someone else's device", sign(&other, Algorithm::HS256, &key)));
    // A device that does not exist.
    let mut other = claims.clone();
    other.dev = DeviceId::new_random();
    forged.push(("unknown device", sign(&other, Algorithm::HS256, &key)));
    // Garbage.
    forged.push(("garbage", "not.a.token".into()));
    forged.push(("truncated", tokens.access_token[..tokens.access_token.len() - 3].to_owned()));

    for (what, token) in forged {
        let response = app.me(&token).await;
        assert_eq!(error_of(response).await, (401, "unauthenticated".into()), "{what}");
    }
    for header in ["Basic c2F0bzpwdw==", "Bearer", &tokens.access_token, &format!("Token {}", tokens.access_token)] {
        let response = app.http.get(app.url("/v1/me")).header("authorization", header).send().await.unwrap();
        assert_eq!(error_of(response).await, (401, "unauthenticated".into()), "{header}");
    }
}

async fn an_expired_access_token_says_so(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let tokens = app.login(&people.counsellor).await;
    let key = app.settings.signing_key.expose().to_vec();
    let mut claims = claims_of(&app, &tokens.access_token);
    claims.iat -= 3600;
    claims.exp = claims.iat + 900;
    let response = app.me(&sign(&claims, Algorithm::HS256, &key)).await;
    assert_eq!(error_of(response).await, (401, "token_expired".into()));
    // Expired and forged is "unauthenticated": the signature is checked first.
    let response = app.me(&sign(&claims, Algorithm::HS256, &[7u8; 32])).await;
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()));
    // The refresh token still brings a fresh one.
    let fresh: TokenResponse = app.refresh(&tokens.refresh_token).await.json().await.unwrap();
    assert_eq!(app.me(&fresh.access_token).await.status(), 200);
}

/// The app sent a refresh, the server rotated the token, and the answer never arrived (or the
/// app was killed before saving it): the app presents the same token again at once. That is
/// not theft: it gets a new successor, the lost one is revoked, and the login goes on.
async fn a_refresh_whose_answer_was_lost_can_be_retried_without_ending_the_login(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let first = app.login(&people.counsellor).await;
    let lost: TokenResponse = app.refresh(&first.refresh_token).await.json().await.unwrap();
    let response = app.refresh(&first.refresh_token).await;
    assert_eq!(response.status(), 200, "the retry is answered");
    let retried: TokenResponse = response.json().await.unwrap();
    assert_ne!(retried.refresh_token, lost.refresh_token);
    assert_eq!(app.me(&retried.access_token).await.status(), 200);
    let next = app.refresh(&retried.refresh_token).await;
    assert_eq!(next.status(), 200, "the login goes on");
    assert_eq!(audit_count(&app, "auth.refresh_retried"), 1);
    assert_eq!(audit_count(&app, "auth.refresh_reused"), 0);
    // Once a later token has been used, the old one is a copy someone else holds.
    let response = app.refresh(&first.refresh_token).await;
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()));
    assert_eq!(audit_count(&app, "auth.refresh_reused"), 1);
}

async fn refresh_rotates_and_a_reused_token_ends_the_login(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = &people.counsellor;
    let first = app.login(sato).await;
    let elsewhere = app.login(sato).await; // a second, independent login

    let response = app.refresh(&first.refresh_token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let second: TokenResponse = response.json().await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    assert_eq!((second.staff_id, second.role), (sato.staff, Role::Counsellor));
    assert_eq!(app.me(&second.access_token).await.status(), 200);
    assert_eq!(claims_of(&app, &second.access_token).sid, claims_of(&app, &first.access_token).sid);

    let third: TokenResponse = app.refresh(&second.refresh_token).await.json().await.unwrap();
    assert_eq!(app.me(&third.access_token).await.status(), 200);

    // The first token again: someone holds a copy. The whole login ends.
    let response = app.refresh(&first.refresh_token).await;
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()));
    let response = app.refresh(&third.refresh_token).await;
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()), "the newest token is revoked too");
    for access in [&first.access_token, &second.access_token, &third.access_token] {
        let response = app.me(access).await;
        assert_eq!(error_of(response).await, (401, "unauthenticated".into()), "access tokens of the login end too");
    }
    // The other login is untouched.
    assert_eq!(app.me(&elsewhere.access_token).await.status(), 200);
    assert_eq!(app.refresh(&elsewhere.refresh_token).await.status(), 200);

    let reused: i64 = audit_count(&app, "auth.refresh_reused");
    assert_eq!(reused, 1);

    // Tokens that are not tokens.
    for garbage in ["", "x", &"A".repeat(43), &first.refresh_token[..42]] {
        let response = app.refresh(garbage).await;
        assert_eq!(error_of(response).await, (401, "unauthenticated".into()), "{garbage:?}");
    }
}

async fn an_expired_refresh_token_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let tokens = app.login(&people.counsellor).await;
    let past = (Utc::now() - chrono::Duration::minutes(1)).naive_utc();
    app.db
        .write(|c| -> Result<usize, StoreError> {
            Ok(diesel::update(refresh_tokens::table).set(refresh_tokens::expires_at.eq(past)).execute(c)?)
        })
        .unwrap();
    let response = app.refresh(&tokens.refresh_token).await;
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()));
}

async fn logout_ends_the_login(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let tokens = app.login(&people.counsellor).await;
    let rotated: TokenResponse = app.refresh(&tokens.refresh_token).await.json().await.unwrap();

    let response = app.logout(&rotated.refresh_token).await;
    assert_eq!(response.status(), 204);
    let response = app.refresh(&rotated.refresh_token).await;
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()));
    let response = app.me(&rotated.access_token).await;
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()));
    // Logging out twice, or with a token that never was, is fine.
    assert_eq!(app.logout(&rotated.refresh_token).await.status(), 204);
    assert_eq!(app.logout("never-a-token").await.status(), 204);
    assert_eq!(audit_count(&app, "auth.logout"), 1);
    // Signing in again works.
    app.login(&people.counsellor).await;
}

async fn revoking_a_device_takes_effect_on_the_very_next_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = &people.counsellor;
    let tokens = app.login(sato).await;
    assert_eq!(app.me(&tokens.access_token).await.status(), 200);

    let revocation = admin::revoke_device(&app.db, sato.device).unwrap();
    assert_eq!(revocation.refresh_tokens_revoked, 1);

    // The access token has 15 minutes left, and is refused at once.
    let response = app.me(&tokens.access_token).await;
    assert_eq!(error_of(response).await, (401, "device_revoked".into()));
    let response = app.refresh(&tokens.refresh_token).await;
    assert_eq!(error_of(response).await, (401, "device_revoked".into()));
    let response = app.try_login(&sato.login, &sato.password, sato.device).await;
    assert_eq!(error_of(response).await, (401, "device_revoked".into()));

    // In the request's format: a CBOR request gets a CBOR error.
    let response = app
        .http
        .get(app.url("/v1/me"))
        .bearer_auth(&tokens.access_token)
        .header("content-type", "application/cbor")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/cbor");
    let body = response.bytes().await.unwrap();
    let error: tsunagi_sync::wire::ApiError = tsunagi_sync::wire::decode_cbor(&body).unwrap();
    assert_eq!(error.code, tsunagi_sync::wire::ApiErrorCode::DeviceRevoked);

    // A new device for the same person works.
    let phone = admin::register_device(&app.db, &sato.login, "新しい端末").unwrap();
    let response = app.try_login(&sato.login, &sato.password, phone).await;
    assert_eq!(response.status(), 200);
}

async fn a_device_of_someone_else_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = &people.counsellor;
    for device in [people.counsellor2.device, people.administrator.device, DeviceId::new_random()] {
        let response = app.try_login(&sato.login, &sato.password, device).await;
        assert_eq!(error_of(response).await, (403, "forbidden".into()), "{device}");
    }
    // Not a failed password: no throttling follows.
    for _ in 0..6 {
        let response = app.try_login(&sato.login, &sato.password, people.counsellor2.device).await;
        assert_eq!(response.status(), 403);
    }
    app.login(sato).await;
}

async fn a_disabled_account_is_forbidden(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = &people.counsellor;
    let tokens = app.login(sato).await;
    app.db
        .write(|c| -> Result<usize, StoreError> {
            Ok(diesel::update(staff::table.find(sato.staff.to_string())).set(staff::active.eq(false)).execute(c)?)
        })
        .unwrap();
    let response = app.me(&tokens.access_token).await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
    let response = app.refresh(&tokens.refresh_token).await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
    let response = app.try_login(&sato.login, &sato.password, sato.device).await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
}

async fn bad_bodies_are_answered_with_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = &people.counsellor;
    let send = |path: &'static str, content_type: &'static str, body: Vec<u8>| {
        app.http.post(app.url(path)).header("content-type", content_type).body(body).send()
    };
    let response = send(LOGIN_PATH, "application/json", b"{\"login\":\"sato\"}".to_vec()).await.unwrap();
    assert_eq!(error_of(response).await, (400, "malformed_body".into()));
    let body = json!({"login": sato.login, "password": sato.password, "device_id": "not-a-uuid"});
    let response = send(LOGIN_PATH, "application/json", serde_json::to_vec(&body).unwrap()).await.unwrap();
    assert_eq!(error_of(response).await, (400, "malformed_body".into()));
    let body = json!({"login": sato.login, "password": sato.password, "device_id": sato.device});
    let response = send(LOGIN_PATH, "text/plain", serde_json::to_vec(&body).unwrap()).await.unwrap();
    assert_eq!(error_of(response).await, (415, "unsupported_media_type".into()));
    let response = send(REFRESH_PATH, "application/json", vec![b' '; 20_000]).await.unwrap();
    assert_eq!(error_of(response).await, (413, "payload_too_large".into()));
    let response = app.http.get(app.url(LOGIN_PATH)).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

fn audit_count(app: &TestApp, action: &str) -> i64 {
    app.db
        .read(|c| -> Result<i64, StoreError> {
            Ok(audit_log::table.filter(audit_log::action.eq(action)).count().get_result(c)?)
        })
        .unwrap()
}

async fn passwords_never_reach_the_audit_log(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = &people.counsellor;
    let wrong = "Wr0ng-passw0rd-xyzzy";
    let typed_into_the_name = "secret-typed-in-the-name-field";

    app.login(sato).await;
    app.try_login(&sato.login, wrong, sato.device).await;
    app.try_login(typed_into_the_name, wrong, sato.device).await;
    admin::set_password(&app.db, &sato.login, "a brand new passphrase").unwrap();
    let response = app.try_login(&sato.login, "a brand new passphrase", sato.device).await;
    assert_eq!(response.status(), 200);

    type Row = (Option<String>, Option<String>, Option<String>, String, String);
    let rows: Vec<Row> = app
        .db
        .read(|c| -> Result<Vec<Row>, StoreError> {
            Ok(audit_log::table
                .order(audit_log::id)
                .select((
                    audit_log::staff_id,
                    audit_log::device_id,
                    audit_log::case_id,
                    audit_log::action,
                    audit_log::detail,
                ))
                .load(c)?)
        })
        .unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    for expected in ["admin.create_staff", "auth.login", "auth.login_failed", "admin.set_password"] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    let everything = format!("{rows:?}");
    for secret in [sato.password.as_str(), wrong, typed_into_the_name, "a brand new passphrase"] {
        assert!(!everything.contains(secret), "{secret:?} is in the audit log: {everything}");
    }
    // The stored password is an Argon2id hash.
    let hash: String = app
        .db
        .read(|c| -> Result<String, StoreError> {
            Ok(staff::table.find(sato.staff.to_string()).select(staff::password_hash).first(c)?)
        })
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

async fn the_admin_command_sets_up_accounts_that_sign_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let ok = |(code, out, err): (i32, String, String)| {
        assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
        out
    };
    ok(app.cli(&["admin", "create-municipality", "122203", "流山市"], ""));
    ok(app.cli(&["admin", "create-area", "122203", "west", "西部"], ""));
    let organisation =
        ok(app.cli(&["admin", "create-organisation", "流山市社会福祉協議会", "--kind", "contracted"], ""));
    let password = "a passphrase from stdin";
    let staff = ok(app.cli(
        &[
            "admin",
            "create-staff",
            "--login",
            "Yamada",
            "--name",
            "山田 太郎",
            "--role",
            "meeting-tablet",
            "--organisation",
            &organisation,
            "--municipality",
            "122203",
            "--area",
            "west",
            "--password-stdin",
        ],
        &format!("{password}\n"),
    ));
    let device = ok(app.cli(&["admin", "register-device", "--login", "yamada", "--label", "会議室"], ""));
    let device = DeviceId::parse(&device).expect("a device id on stdout");

    let tokens: TokenResponse = {
        let response = app.try_login("yamada", password, device).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    };
    assert_eq!((tokens.staff_id.to_string(), tokens.role), (staff, Role::MeetingTablet));

    // Errors: one line, exit 1; wrong usage: exit 2.
    let (code, _, err) = app.cli(&["admin", "create-municipality", "122203", "again"], "");
    assert_eq!((code, err.lines().count()), (1, 1), "{err}");
    assert!(err.contains("exists already"), "{err}");
    let (code, _, err) =
        app.cli(&["admin", "create-staff", "--login", "x1y", "--name", "x", "--role", "counsellor"], "");
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = app.cli(&["admin", "set-password", "--login", "yamada", "--password-stdin"], "short\n");
    assert_eq!(code, 1);
    assert!(err.contains("at least 12 characters"), "{err}");
    let (code, _, err) = app.cli(&["admin", "revoke-device", "not-a-device"], "");
    assert_eq!(code, 2, "{err}");

    // Revoked from the command line: the very next request says so.
    ok(app.cli(&["admin", "revoke-device", &device.to_string()], ""));
    let response = app.me(&tokens.access_token).await;
    assert_eq!(error_of(response).await, (401, "device_revoked".into()));

    let (code, _, err) = app.cli(&["admin", "quarantine", "list"], "");
    assert_eq!(code, 0);
    assert!(err.contains("no undecided quarantined uploads"), "{err}");
    let (code, out, _) = app.cli(&["migrate"], "");
    assert_eq!(code, 0);
    assert!(out.contains("up to date"), "{out}");
}
