//! The REST contract of the auth service: its routes and what login does. Failures become HTTP
//! in `error.rs`.

use serde_json::json;
use service_kit::error::{ApiError, json_body};
use service_kit::http::{Method, Request, Response};
use service_kit::platform::{
    json_message, log_error, log_warning, new_uuid, now_micros, publish, random_bytes, setting, sign_token,
};
use service_kit::throttle::{client_key, ipv6_prefix_setting};
use service_kit::token::{Claims, Role, role_named};
use service_kit::trace;
use service_kit::wasi_http::{Outgoing, send};

use crate::domain::session::{self, Presented, RefreshToken};
use crate::domain::{
    LOGIN_EXCHANGE, LoginEvent, LoginRequest, RefreshRequest, Throttle, ThrottleSettings, Verdict, account_key,
    account_source_key, decide, source_key, stricter, token_ttl,
};
use crate::error::Error;
use crate::store;

/// How long the credentials check may take before login answers 503.
const USERS_TIMEOUT_MS: u64 = 5_000;
/// One login in this many deletes expired refresh tokens: a statement saved on the others.
const EXPIRY_SWEEP_ONE_IN: u8 = 16;

pub fn handle(request: &Request) -> Response {
    route(request).unwrap_or_else(Error::into_response)
}

fn route(request: &Request) -> Result<Response, Error> {
    let path = request.path.strip_prefix("/auth-ms").unwrap_or(&request.path);
    match (request.method, path.trim_matches('/')) {
        (Method::Get, "healthcheck") => Ok(Response::json(200, &json!({"status": "ok"}))),
        (_, "healthcheck") => Err(ApiError::MethodNotAllowed("GET").into()),
        (Method::Post, "auth/login") => login(request),
        (_, "auth/login") => Err(ApiError::MethodNotAllowed("POST").into()),
        (Method::Post, "auth/refresh") => refresh(request),
        (_, "auth/refresh") => Err(ApiError::MethodNotAllowed("POST").into()),
        (Method::Post, "auth/logout") => logout(request),
        (_, "auth/logout") => Err(ApiError::MethodNotAllowed("POST").into()),
        _ => Err(ApiError::NotFound.into()),
    }
}

fn login(request: &Request) -> Result<Response, Error> {
    let login = LoginRequest::parse(json_body(request)?).map_err(ApiError::InvalidFields)?;
    let traceparent = trace::child_traceparent(request.header("traceparent"), &random_bytes::<24>());

    // The client's address as the host resolved it: the socket peer, or what trusted proxies
    // vouch for. A client's own X-Forwarded-For never chooses its throttle key.
    let source = request.origin.client_address.clone();
    let throttle = Throttle::parse(ThrottleSettings {
        per_account_and_source: setting("login_max_failures_per_account_and_source")?.as_deref(),
        per_account: setting("login_max_failures_per_account")?.as_deref(),
        per_source: setting("login_max_failures_per_source")?.as_deref(),
        window: setting("login_failure_window_secs")?.as_deref(),
    })?;
    // One client is one IPv4 address or one IPv6 network (`throttle_ipv6_prefix`, /64).
    let ipv6_prefix = ipv6_prefix_setting(setting("throttle_ipv6_prefix")?.as_deref())?;
    let client = source.as_deref().map(|address| client_key(address, ipv6_prefix));
    let attempt = Attempt::begin(&throttle, &login.email, client.as_deref())?;

    let (user_id, role) = match check_with_users(&login, &traceparent) {
        Ok(found) => found,
        Err(Error::BadCredentials) => {
            attempt.failed();
            return Err(Error::BadCredentials);
        }
        Err(other) => {
            attempt.withdraw();
            return Err(other);
        }
    };
    attempt.succeeded();

    let now = now_micros();
    let family = new_uuid();
    let tokens = issue_tokens(&user_id, role, Family { id: &family, started_at: now }, None)?;

    let event = LoginEvent {
        event_id: new_uuid(),
        user_id,
        occurred_at_micros: now,
        source_address: source,
        user_agent: request.header("user-agent").map(str::to_owned),
    };
    // The outbox write is local; if even that fails the login still succeeds, and says so in
    // the log. Not `publish_in`: auth stores nothing about a successful login for the event
    // to commit with (the event is its only record); clearing the failure count above is
    // housekeeping that must not hold the event back when it fails.
    let headers = vec![("traceparent".to_owned(), traceparent)];
    let message = json_message(&event.event_id, "", headers, event.to_json().to_string().into_bytes());
    if let Err(error) = publish(LOGIN_EXCHANGE, &message) {
        log_error("auth", &format!("login event {} not stored: {error}", event.event_id));
    }

    Ok(tokens.into_response())
}

/// A login's refresh token family.
#[derive(Clone, Copy)]
struct Family<'a> {
    id: &'a str,
    /// When the login happened (micros).
    started_at: i64,
}

/// What login and refresh answer.
struct Tokens {
    access_token: String,
    expires_in: i64,
    refresh_token: String,
    refresh_expires_in: i64,
}

impl Tokens {
    fn into_response(self) -> Response {
        Response::json(
            200,
            &json!({
                "access_token": self.access_token,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "refresh_token": self.refresh_token,
                "refresh_expires_in": self.refresh_expires_in,
            }),
        )
        // Tokens must not be kept by caches (RFC 6749, section 5.1).
        .header("cache-control", "no-store")
    }
}

/// Signs an access token for `user_id` and stores a new refresh token in `family`: the
/// family's first (`spent` is `None`, a login) or the one replacing `spent` (a refresh;
/// `Error::RefreshReused` when a parallel refresh spent it first).
fn issue_tokens(user_id: &str, role: Role, family: Family<'_>, spent: Option<&str>) -> Result<Tokens, Error> {
    let ttl = token_ttl(setting("token_ttl_secs")?.as_deref())?;
    let refresh_ttl = session::refresh_ttl(setting("refresh_token_ttl_secs")?.as_deref())?;
    let now = now_micros();
    let refresh = RefreshToken::new(new_uuid(), random_bytes::<32>());
    let secret_hash = refresh.secret_hash();
    let row = store::NewRefresh {
        id: &refresh.id,
        family: family.id,
        user_id,
        secret_hash: &secret_hash,
        family_started_at: family.started_at,
        issued_at: now,
        expires_at: now + refresh_ttl * 1_000_000,
    };
    match spent {
        None => {
            // Expired rows go as sessions start, one login in EXPIRY_SWEEP_ONE_IN doing it, so
            // the table holds little beyond what can still be used (an expired row is refused
            // whether or not it is still there).
            if random_bytes::<1>()[0].is_multiple_of(EXPIRY_SWEEP_ONE_IN) {
                store::forget_expired_refresh(now)?;
            }
            store::insert_refresh(&row)?;
        }
        Some(spent) => {
            if !store::rotate_refresh(spent, &row)? {
                return Err(Error::RefreshReused);
            }
        }
    }
    let claims =
        Claims { sub: user_id.to_owned(), role, iat: now / 1_000_000, exp: now / 1_000_000 + ttl, jti: new_uuid() };
    // Signed by the host: the signing key never enters the component.
    let access_token = sign_token(claims).map_err(ApiError::Internal)?;
    Ok(Tokens { access_token, expires_in: ttl, refresh_token: refresh.to_text(), refresh_expires_in: refresh_ttl })
}

/// `POST /auth-ms/auth/refresh`: spends a refresh token for a new access token and the next
/// refresh token. users is asked first whether the user still exists, with which role, and
/// whether the password changed since the login: a deleted user's or an old password's
/// sessions end here. Until that check has passed nothing is spent, so a client whose refresh
/// failed with 503 retries with the same token.
fn refresh(request: &Request) -> Result<Response, Error> {
    let presented = RefreshRequest::parse(json_body(request)?).map_err(ApiError::InvalidFields)?;
    let Some(token) = RefreshToken::parse(&presented.refresh_token) else { return Err(Error::RefreshRefused) };
    let now = now_micros();
    let stored = store::refresh(&token.id)?;
    match (session::judge(stored.as_ref(), &token, now), stored) {
        (Presented::Live, Some(stored)) => {
            let traceparent = trace::child_traceparent(request.header("traceparent"), &random_bytes::<24>());
            let Some(user) = user_from_users(&stored.user_id, &traceparent)? else {
                store::revoke_family(&stored.family, now)?;
                return Err(Error::RefreshRefused);
            };
            if session::outlived_by_password_change(stored.family_started_at, user.password_changed_at) {
                store::revoke_family(&stored.family, now)?;
                return Err(Error::RefreshRefused);
            }
            let family = Family { id: &stored.family, started_at: stored.family_started_at };
            match issue_tokens(&stored.user_id, user.role, family, Some(&token.id)) {
                Err(Error::RefreshReused) => {
                    revoke_reused(&stored.family, now)?;
                    Err(Error::RefreshRefused)
                }
                issued => Ok(issued?.into_response()),
            }
        }
        (Presented::Reused, Some(stored)) => {
            revoke_reused(&stored.family, now)?;
            Err(Error::RefreshRefused)
        }
        _ => Err(Error::RefreshRefused),
    }
}

/// A spent token came back: someone else holds the family too, so nobody keeps it.
fn revoke_reused(family: &str, now: i64) -> Result<(), Error> {
    log_warning("auth", &format!("a spent refresh token was presented again: family {family} revoked"));
    Ok(store::revoke_family(family, now)?)
}

/// `POST /auth-ms/auth/logout`: revokes the refresh token's whole family. 204 whatever the
/// token was, so logging out twice is not an error and the answer tells nothing about tokens.
fn logout(request: &Request) -> Result<Response, Error> {
    let presented = RefreshRequest::parse(json_body(request)?).map_err(ApiError::InvalidFields)?;
    if let Some(token) = RefreshToken::parse(&presented.refresh_token) {
        let stored = store::refresh(&token.id)?;
        if let (Some(stored), now) = (stored.as_ref(), now_micros())
            && session::judge(Some(stored), &token, now) != Presented::Unknown
        {
            store::revoke_family(&stored.family, now)?;
        }
    }
    Ok(Response::no_content())
}

/// What users says about a user when a session is refreshed.
struct UserStatus {
    role: Role,
    password_changed_at: Option<i64>,
}

/// Asks users (internal listener) for `user_id`'s role and last password change; `None` when
/// the user no longer exists.
fn user_from_users(user_id: &str, traceparent: &str) -> Result<Option<UserStatus>, Error> {
    let answer = ask_users(Method::Get, &format!("/users-ms/internal/users/{user_id}"), None, traceparent)?;
    match answer.status {
        200 => {
            let status = users_json(&answer)?;
            let role = role_named(status["role"].as_str().unwrap_or_default());
            Ok(Some(UserStatus { role, password_changed_at: status["password_changed_at_micros"].as_i64() }))
        }
        404 => Ok(None),
        status => Err(Error::UsersUnavailable(format!("users answered {status}"))),
    }
}

/// The JSON body of an answer from users.
fn users_json(answer: &Response) -> Result<serde_json::Value, Error> {
    serde_json::from_slice(&answer.body).map_err(|e| Error::UsersUnavailable(format!("bad answer: {e}")))
}

/// One call to users' internal API (`users_service`, default `users`), bounded by
/// `USERS_TIMEOUT_MS`, carrying the trace; a call that gets no answer is `UsersUnavailable`.
fn ask_users(method: Method, path: &str, json_body: Option<String>, traceparent: &str) -> Result<Response, Error> {
    let users = setting("users_service")?.unwrap_or_else(|| "users".into());
    let mut headers = vec![("traceparent".to_owned(), traceparent.to_owned())];
    if json_body.is_some() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    send(Outgoing {
        method,
        scheme: "http",
        authority: &users,
        path_with_query: path,
        headers: &headers,
        body: json_body.as_deref().unwrap_or_default().as_bytes(),
        timeout_ms: USERS_TIMEOUT_MS,
    })
    .map_err(Error::UsersUnavailable)
}

/// One login attempt as the throttle sees it: recorded under its subjects (the account, the
/// account from this source, the source) before the password is checked, so parallel guesses
/// count each other; refused (429) when a subject already has its limit of other rows in the
/// window. Counts by normalised email whether or not the account exists, so the answer
/// reveals nothing.
struct Attempt {
    id: String,
    account: String,
    account_source: Option<String>,
    expired_before: i64,
}

impl Attempt {
    fn begin(throttle: &Throttle, email: &str, source: Option<&str>) -> Result<Self, Error> {
        let now = now_micros();
        let account = account_key(email);
        let account_source = source.map(|address| account_source_key(email, address));
        let source = source.map(source_key);
        let mut limits = vec![(account.clone(), throttle.max_per_account)];
        limits.extend(account_source.clone().map(|subject| (subject, throttle.max_per_account_and_source)));
        limits.extend(source.map(|subject| (subject, throttle.max_per_source)));
        let attempt = Self { id: new_uuid(), account, account_source, expired_before: now - throttle.window_micros() };
        let limits: Vec<(&str, u32)> = limits.iter().map(|(subject, limit)| (subject.as_str(), *limit)).collect();
        let subjects: Vec<&str> = limits.iter().map(|(subject, _)| *subject).collect();
        store::record_attempt(&subjects, &attempt.id, now)?;
        let others = match store::recent_failures(&limits, &attempt.id, attempt.expired_before) {
            Ok(others) => others,
            Err(error) => {
                attempt.withdraw();
                return Err(error.into());
            }
        };
        let verdict = limits.iter().zip(&others).fold(Verdict::Allowed, |verdict, ((_, limit), others)| {
            stricter(verdict, decide(others, *limit, now, throttle.window_micros()))
        });
        match verdict {
            Verdict::Allowed => Ok(attempt),
            Verdict::RetryAfter(seconds) => {
                // A refused attempt is not a failure: it must not lengthen anyone's lockout.
                attempt.withdraw();
                Err(Error::TooManyAttempts(seconds))
            }
        }
    }

    /// Wrong credentials: the rows stay as the failure; expired ones go.
    fn failed(self) {
        if let Err(error) = store::forget_expired(self.expired_before) {
            log_warning("auth", &format!("expired failed logins not deleted: {error:?}"));
        }
    }

    /// Right credentials: the attempt and the account's failures are forgotten (the source's
    /// other failures stay: logging in to one's own account must not reset a guesser's count).
    fn succeeded(self) {
        let mut subjects = vec![self.account.as_str()];
        subjects.extend(self.account_source.as_deref());
        if let Err(error) = store::withdraw_and_clear(&self.id, &subjects) {
            log_warning("auth", &format!("failed logins of an account not cleared: {error:?}"));
        }
    }

    /// Not checked (users unavailable): not a failure.
    fn withdraw(self) {
        if let Err(error) = store::withdraw_attempt(&self.id) {
            log_warning("auth", &format!("login attempt not withdrawn: {error:?}"));
        }
    }
}

/// Asks users (through the host, by service name) whether the credentials are right.
fn check_with_users(login: &LoginRequest, traceparent: &str) -> Result<(String, Role), Error> {
    let body = json!({"email": login.email, "password": login.password}).to_string();
    let answer = ask_users(Method::Post, "/users-ms/internal/credentials", Some(body), traceparent)?;
    match answer.status {
        200 => {
            let verdict = users_json(&answer)?;
            let id = verdict["id"].as_str().ok_or_else(|| Error::UsersUnavailable("answer without id".into()))?;
            let role = role_named(verdict["role"].as_str().unwrap_or_default());
            Ok((id.to_owned(), role))
        }
        401 | 422 => Err(Error::BadCredentials),
        status => Err(Error::UsersUnavailable(format!("users answered {status}"))),
    }
}
