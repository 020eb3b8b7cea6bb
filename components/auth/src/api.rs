//! The REST contract of the auth service: its routes and what login does. Failures become HTTP
//! in `error.rs`.

use serde_json::json;
use service_kit::error::{ApiError, json_body};
use service_kit::http::{Method, Request, Response};
use service_kit::platform::{log_error, log_warning, new_uuid, now_micros, publish, random_bytes, setting, sign_token};
use service_kit::token::{Claims, Role};
use service_kit::trace;
use service_kit::wasi_http::{Outgoing, send};

use crate::domain::{
    LOGIN_EXCHANGE, LoginEvent, LoginRequest, Throttle, ThrottleSettings, Verdict, account_key, account_source_key,
    decide, source_key, stricter, token_ttl,
};
use crate::error::Error;
use crate::store;

/// How long the credentials check may take before login answers 503.
const USERS_TIMEOUT_MS: u64 = 5_000;

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
        _ => Err(ApiError::NotFound.into()),
    }
}

fn login(request: &Request) -> Result<Response, Error> {
    let login = LoginRequest::parse(json_body(request)?).map_err(ApiError::InvalidFields)?;
    let traceparent = trace::child_traceparent(request.header("traceparent"), &random_bytes::<24>());

    // The client's address as the host resolved it: the socket peer, or what trusted proxies
    // vouch for. A client's own X-Forwarded-For never chooses its throttle key.
    let source = request.header("skiff-peer-address").filter(|address| !address.is_empty()).map(str::to_owned);
    let throttle = Throttle::parse(ThrottleSettings {
        per_account_and_source: setting("login_max_failures_per_account_and_source")?.as_deref(),
        per_account: setting("login_max_failures_per_account")?.as_deref(),
        per_source: setting("login_max_failures_per_source")?.as_deref(),
        window: setting("login_failure_window_secs")?.as_deref(),
    })?;
    let attempt = Attempt::begin(&throttle, &login.email, source.as_deref())?;

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

    let ttl = token_ttl(setting("token_ttl_secs")?.as_deref())?;
    let now = now_micros();
    let claims =
        Claims { sub: user_id.clone(), role, iat: now / 1_000_000, exp: now / 1_000_000 + ttl, jti: new_uuid() };
    // Signed by the host: the signing key never enters the component.
    let token = sign_token(claims).map_err(ApiError::Internal)?;

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
    if let Err(error) = publish(LOGIN_EXCHANGE, &event.event_id, "", headers, event.to_json().to_string().into_bytes())
    {
        log_error("auth", &format!("login event {} not stored: {error}", event.event_id));
    }

    Ok(Response::json(200, &json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl})))
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
        let subjects: Vec<&str> = limits.iter().map(|(subject, _)| subject.as_str()).collect();
        store::record_attempt(&subjects, &attempt.id, now)?;
        let mut verdict = Verdict::Allowed;
        for (subject, limit) in &limits {
            let others = match store::recent_failures(subject, &attempt.id, attempt.expired_before, *limit) {
                Ok(others) => others,
                Err(error) => {
                    attempt.withdraw();
                    return Err(error.into());
                }
            };
            verdict = stricter(verdict, decide(&others, *limit, now, throttle.window_micros()));
        }
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
        let cleared = store::clear(&self.account)
            .and_then(|()| self.account_source.as_deref().map_or(Ok(()), store::clear))
            .and_then(|()| store::withdraw_attempt(&self.id));
        if let Err(error) = cleared {
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
    let users = setting("users_service")?.unwrap_or_else(|| "users".into());
    let body = json!({"email": login.email, "password": login.password}).to_string();
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("traceparent".to_owned(), traceparent.to_owned()),
    ];
    let response = send(Outgoing {
        method: Method::Post,
        scheme: "http",
        authority: &users,
        path_with_query: "/users-ms/internal/credentials",
        headers: &headers,
        body: body.as_bytes(),
        timeout_ms: USERS_TIMEOUT_MS,
    })
    .map_err(Error::UsersUnavailable)?;
    match response.status {
        200 => {
            let verdict: serde_json::Value = serde_json::from_slice(&response.body)
                .map_err(|e| Error::UsersUnavailable(format!("bad answer: {e}")))?;
            let id = verdict["id"].as_str().ok_or_else(|| Error::UsersUnavailable("answer without id".into()))?;
            let role = if verdict["role"] == "admin" { Role::Admin } else { Role::User };
            Ok((id.to_owned(), role))
        }
        401 | 422 => Err(Error::BadCredentials),
        status => Err(Error::UsersUnavailable(format!("users answered {status}"))),
    }
}
