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
    LOGIN_EXCHANGE, LoginEvent, LoginRequest, Throttle, Verdict, account_key, decide, source_address, source_key,
    stricter, token_ttl,
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

    let source = source_address(request.header("x-forwarded-for"), request.header("skiff-peer-address"));
    let throttle = Throttle::parse(
        setting("login_max_failures_per_account")?.as_deref(),
        setting("login_max_failures_per_source")?.as_deref(),
        setting("login_failure_window_secs")?.as_deref(),
    )?;
    let account = account_key(&login.email);
    let source_subject = source.as_deref().map(source_key);
    let now = now_micros();
    check_throttle(&throttle, &account, source_subject.as_deref(), now)?;

    let (user_id, role) = match check_with_users(&login, &traceparent) {
        Ok(found) => found,
        Err(Error::BadCredentials) => {
            let subjects: Vec<&str> = std::iter::once(account.as_str()).chain(source_subject.as_deref()).collect();
            let at = now_micros();
            // The answer is 401 either way; a failure not recorded is logged (and if the
            // database is down, the next attempt's check answers 503).
            if let Err(error) = store::record_failure(&subjects, at, at - throttle.window_micros()) {
                log_warning("auth", &format!("failed login not recorded: {error:?}"));
            }
            return Err(Error::BadCredentials);
        }
        Err(other) => return Err(other),
    };
    if let Err(error) = store::clear(&account) {
        log_warning("auth", &format!("failed logins of an account not cleared: {error:?}"));
    }

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

/// Refuses the attempt (429) while the account or the source address has too many recent
/// failures. Runs before users is asked, so a throttled guess is never checked, and counts by
/// normalised email whether or not the account exists, so the answer reveals nothing.
fn check_throttle(throttle: &Throttle, account: &str, source: Option<&str>, now: i64) -> Result<(), Error> {
    let since = now - throttle.window_micros();
    let by_account = decide(
        &store::recent_failures(account, since, throttle.max_per_account)?,
        throttle.max_per_account,
        now,
        throttle.window_micros(),
    );
    let by_source = match source {
        Some(subject) => decide(
            &store::recent_failures(subject, since, throttle.max_per_source)?,
            throttle.max_per_source,
            now,
            throttle.window_micros(),
        ),
        None => Verdict::Allowed,
    };
    match stricter(by_account, by_source) {
        Verdict::Allowed => Ok(()),
        Verdict::RetryAfter(seconds) => Err(Error::TooManyAttempts(seconds)),
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
