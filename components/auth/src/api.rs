//! The REST contract of the auth service, and the one place its failures become HTTP.

use serde_json::json;
use service_kit::http::{Method, Request, Response};
use service_kit::problem::{invalid_fields, problem};
use service_kit::token::{Claims, Issuer, Role};
use service_kit::{trace, uuid};

use crate::domain::{LOGIN_EXCHANGE, LoginEvent, LoginRequest, source_address, token_ttl};
use crate::platform::{now_micros, publish, random_bytes, setting};
use crate::send;

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
            Self::Internal(cause) => {
                eprintln!("auth: internal error: {cause}");
                problem(500, "internal", "Internal error", "the request could not be completed")
            }
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

    let (user_id, role) = check_with_users(&login, &traceparent)?;

    let issuer = Issuer::from_base64(
        &setting("token_signing_key")?
            .ok_or_else(|| ApiError::Internal("token_signing_key is not configured".into()))?,
    )
    .map_err(|e| ApiError::Internal(format!("token_signing_key: {e}")))?;
    let ttl = token_ttl(setting("token_ttl_secs")?.as_deref())?;
    let now = now_micros();
    let claims = Claims {
        sub: user_id.clone(),
        role,
        iat: now / 1_000_000,
        exp: now / 1_000_000 + ttl,
        jti: uuid::from_random_bytes(random_bytes::<16>()),
    };
    let token = issuer.sign(&claims);

    let event = LoginEvent {
        event_id: uuid::from_random_bytes(random_bytes::<16>()),
        user_id,
        occurred_at_micros: now,
        source_address: source_address(request.header("x-forwarded-for"), request.header("skiff-peer-address")),
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
