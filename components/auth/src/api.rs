//! The REST contract of the auth service, and the one place its failures become HTTP.

use serde_json::json;
use service_kit::http::{Method, Request, Response};
use service_kit::problem::{invalid_fields, problem};
use service_kit::token::{Claims, Role};
use service_kit::{trace, uuid};

use crate::domain::{
    LOGIN_EXCHANGE, LoginEvent, LoginRequest, Throttle, Verdict, account_key, decide, source_address, source_key,
    stricter, token_ttl,
};
use crate::platform::{now_micros, publish, random_bytes, setting, sign_token};
use crate::send;
use crate::store::{self, StoreError};

/// How long the credentials check may take before login answers 503.
const USERS_TIMEOUT_MS: u64 = 5_000;

enum ApiError {
    MalformedBody(String),
    UnsupportedMediaType,
    InvalidFields(Vec<service_kit::problem::FieldError>),
    /// Unknown email and wrong password look the same.
    BadCredentials,
    NotFound,
    MethodNotAllowed(&'static str),
    /// users could not be asked.
    UsersUnavailable(String),
    /// Too many failed logins for the account or the source address; seconds to wait.
    TooManyAttempts(i64),
    /// The failure counts could not be read: login is refused rather than left unthrottled.
    ThrottleUnavailable(String),
    Internal(String),
}

impl ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::MalformedBody(detail) => problem(400, "malformed-body", "Malformed request body", &detail),
            Self::UnsupportedMediaType => {
                problem(415, "unsupported-media-type", "Unsupported media type", "send the body as application/json")
            }
            Self::InvalidFields(errors) => invalid_fields(&errors),
            Self::BadCredentials => problem(401, "bad-credentials", "Unauthorized", "wrong email or password")
                .header("www-authenticate", "Bearer"),
            Self::NotFound => problem(404, "not-found", "Not found", "no such resource"),
            Self::MethodNotAllowed(allow) => {
                problem(405, "method-not-allowed", "Method not allowed", &format!("allowed: {allow}"))
                    .header("allow", allow)
            }
            Self::UsersUnavailable(cause) => {
                eprintln!("auth: users service unavailable: {cause}");
                problem(
                    503,
                    "users-unavailable",
                    "Service unavailable",
                    "credentials cannot be checked right now, retry later",
                )
                .header("retry-after", "1")
            }
            Self::TooManyAttempts(seconds) => problem(
                429,
                "too-many-attempts",
                "Too many requests",
                "too many failed logins for this account or from this address, retry later",
            )
            .header("retry-after", seconds.to_string()),
            Self::ThrottleUnavailable(cause) => {
                eprintln!("auth: login throttle unavailable: {cause}");
                problem(
                    503,
                    "throttle-unavailable",
                    "Service unavailable",
                    "login attempts cannot be counted right now, retry later",
                )
                .header("retry-after", "1")
            }
            Self::Internal(cause) => {
                eprintln!("auth: internal error: {cause}");
                problem(500, "internal", "Internal error", "the request could not be completed")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => Self::ThrottleUnavailable(cause),
            StoreError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<String> for ApiError {
    fn from(cause: String) -> Self {
        Self::Internal(cause)
    }
}

pub fn handle(request: &Request) -> Response {
    route(request).unwrap_or_else(ApiError::into_response)
}

fn route(request: &Request) -> Result<Response, ApiError> {
    let path = request.path.strip_prefix("/auth-ms").unwrap_or(&request.path);
    match (request.method, path.trim_matches('/')) {
        (Method::Get, "healthcheck") => Ok(Response::json(200, &json!({"status": "ok"}))),
        (_, "healthcheck") => Err(ApiError::MethodNotAllowed("GET")),
        (Method::Post, "auth/login") => login(request),
        (_, "auth/login") => Err(ApiError::MethodNotAllowed("POST")),
        _ => Err(ApiError::NotFound),
    }
}

fn login(request: &Request) -> Result<Response, ApiError> {
    if !request.has_json_body() {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body: serde_json::Value = serde_json::from_slice(&request.body)
        .map_err(|e| ApiError::MalformedBody(format!("the body is not valid JSON: {e}")))?;
    let login = LoginRequest::parse(body).map_err(ApiError::InvalidFields)?;
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
        Err(ApiError::BadCredentials) => {
            let subjects: Vec<&str> = std::iter::once(account.as_str()).chain(source_subject.as_deref()).collect();
            let at = now_micros();
            // The answer is 401 either way; a failure not recorded is logged (and if the
            // database is down, the next attempt's check answers 503).
            if let Err(error) = store::record_failure(&subjects, at, at - throttle.window_micros()) {
                eprintln!("auth: failed login not recorded: {error:?}");
            }
            return Err(ApiError::BadCredentials);
        }
        Err(other) => return Err(other),
    };
    if let Err(error) = store::clear(&account) {
        eprintln!("auth: failed logins of an account not cleared: {error:?}");
    }

    let ttl = token_ttl(setting("token_ttl_secs")?.as_deref())?;
    let now = now_micros();
    let claims = Claims {
        sub: user_id.clone(),
        role,
        iat: now / 1_000_000,
        exp: now / 1_000_000 + ttl,
        jti: uuid::from_random_bytes(random_bytes::<16>()),
    };
    // Signed by the host: the signing key never enters the component.
    let token = sign_token(claims).map_err(ApiError::Internal)?;

    let event = LoginEvent {
        event_id: uuid::from_random_bytes(random_bytes::<16>()),
        user_id,
        occurred_at_micros: now,
        source_address: source,
        user_agent: request.header("user-agent").map(str::to_owned),
    };
    // The outbox write is local; if even that fails the login still succeeds, and says so in
    // the log.
    let headers = vec![("traceparent".to_owned(), traceparent)];
    if let Err(error) =
        publish(LOGIN_EXCHANGE, &event.event_id, "user.login", headers, event.to_json().to_string().into_bytes())
    {
        eprintln!("auth: login event {} not stored: {error}", event.event_id);
    }

    Ok(Response::json(200, &json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl})))
}

/// Refuses the attempt (429) while the account or the source address has too many recent
/// failures. Runs before users is asked, so a throttled guess is never checked, and counts by
/// normalised email whether or not the account exists, so the answer reveals nothing.
fn check_throttle(throttle: &Throttle, account: &str, source: Option<&str>, now: i64) -> Result<(), ApiError> {
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
        Verdict::RetryAfter(seconds) => Err(ApiError::TooManyAttempts(seconds)),
    }
}

/// Asks users (through the host, by service name) whether the credentials are right.
fn check_with_users(login: &LoginRequest, traceparent: &str) -> Result<(String, Role), ApiError> {
    let users = setting("users_service")?.unwrap_or_else(|| "users".into());
    let body = json!({"email": login.email, "password": login.password}).to_string();
    let headers = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("traceparent".to_owned(), traceparent.to_owned()),
    ];
    let response = send(
        Method::Post,
        "http",
        &users,
        "/users-ms/internal/credentials",
        &headers,
        body.as_bytes(),
        USERS_TIMEOUT_MS,
    )
    .map_err(ApiError::UsersUnavailable)?;
    match response.status {
        200 => {
            let verdict: serde_json::Value = serde_json::from_slice(&response.body)
                .map_err(|e| ApiError::UsersUnavailable(format!("bad answer: {e}")))?;
            let id = verdict["id"].as_str().ok_or_else(|| ApiError::UsersUnavailable("answer without id".into()))?;
            let role = if verdict["role"] == "admin" { Role::Admin } else { Role::User };
            Ok((id.to_owned(), role))
        }
        401 | 422 => Err(ApiError::BadCredentials),
        status => Err(ApiError::UsersUnavailable(format!("users answered {status}"))),
    }
}
