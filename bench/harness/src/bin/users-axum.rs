//! The native baseline of `GET /users-ms/users/{id}`: axum + sqlx on the same Postgres
//! database as skiff's users component, doing the same work per request — verify the bearer
//! token with the same code (service-kit), check self-or-admin, run the same query with a bound
//! parameter, answer the same JSON — and write the same access log line (a JSON record per
//! request, through the same subscriber), so neither side pays for logging the other skips.

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use clap::Parser;
use service_kit::time::format_rfc3339;
use skiff::capability::crypto::token::{Role, Verifier};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    database_url: String,
    /// The users component's `token_public_key`, base64.
    #[arg(long)]
    token_public_key: String,
    /// The same pool size skiff uses by default (`SKIFF_DB_MAX_CONNECTIONS`).
    #[arg(long, default_value_t = 10)]
    max_connections: u32,
}

struct AppState {
    pool: PgPool,
    verifier: Verifier,
}

/// id, email, name, surname, phone, role, created_at, updated_at.
type UserRow = (uuid::Uuid, String, String, String, Option<String>, String, DateTime<Utc>, DateTime<Utc>);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = PgPoolOptions::new().max_connections(args.max_connections).connect(&args.database_url).await?;
    let verifier = Verifier::from_base64(&args.token_public_key).map_err(anyhow::Error::msg)?;
    let _logs = skiff::telemetry::init(skiff::cli::LogFormat::Json);
    let app = Router::new()
        .route("/users-ms/users/{id}", get(get_user))
        .layer(middleware::from_fn(access_log))
        .with_state(Arc::new(AppState { pool, verifier }));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}

/// skiff's access log line: a span with the request's id, method, path and addresses, and one
/// `served` record with the status and the time taken.
async fn access_log(ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4().to_string();
    let (method, path, client) = (request.method().clone(), request.uri().path().to_owned(), peer.ip());
    let span = tracing::info_span!("request", %id, %method, %path, %peer, %client);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(status, elapsed_ms = started.elapsed().as_secs_f64() * 1000.0, "served"));
    response
}

async fn get_user(State(state): State<Arc<AppState>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(claims) = token.and_then(|token| state.verifier.verify(token, Utc::now().timestamp()).ok()) else {
        return problem(StatusCode::UNAUTHORIZED);
    };
    let Ok(id) = uuid::Uuid::parse_str(&id) else { return problem(StatusCode::NOT_FOUND) };
    // The same rule as the users component's: an admin acts on anyone, a user on itself.
    if claims.role != Role::Admin && claims.sub != id.to_string() {
        return problem(StatusCode::FORBIDDEN);
    }
    let row = sqlx::query_as::<_, UserRow>(
        "SELECT id, email, name, surname, phone, role, created_at, updated_at FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await;
    match row {
        Ok(Some((id, email, name, surname, phone, role, created_at, updated_at))) => {
            let role = if role == "admin" { Role::Admin } else { Role::User };
            let body = serde_json::json!({
                "id": id,
                "email": email,
                "name": name,
                "surname": surname,
                "phone": phone,
                "role": role,
                "created_at": format_rfc3339(created_at.timestamp_micros()),
                "updated_at": format_rfc3339(updated_at.timestamp_micros()),
            });
            ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
        Ok(None) => problem(StatusCode::NOT_FOUND),
        Err(_) => problem(StatusCode::SERVICE_UNAVAILABLE),
    }
}

fn problem(status: StatusCode) -> Response {
    let body = serde_json::json!({"type": "about:blank", "status": status.as_u16()});
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}
