//! The REST contract of the users service: routes, and what each one does.

use crate::bindings::wasi::clocks::wall_clock;
use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::random::random;
use crate::domain::password::parse_bcrypt_cost;
use crate::domain::{ListQuery, NewUser, User, UserChanges, uuid};
use crate::error::ApiError;
use crate::http::{Method, Request, Response};
use crate::store::{self, StoreError, UserRecord, UserUpdate};
use serde_json::json;

/// Where a created user can be read back.
const USERS_PATH: &str = "/users-ms/users";

pub fn handle(request: Request) -> Response {
    route(&request).unwrap_or_else(ApiError::into_response)
}

fn route(request: &Request) -> Result<Response, ApiError> {
    // `/users/{id}` is the original contract's alias of `/users-ms/users/{id}`.
    let path = request
        .path
        .strip_prefix("/users-ms")
        .unwrap_or(&request.path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method, segments.as_slice()) {
        (Method::Get, ["healthcheck"]) => Ok(Response::json(200, &json!({"status": "ok"}))),
        (_, ["healthcheck"]) => Err(ApiError::MethodNotAllowed("GET")),
        (Method::Post, ["users"]) => create(request),
        (Method::Get, ["users"]) => list(request),
        (_, ["users"]) => Err(ApiError::MethodNotAllowed("GET, POST")),
        (Method::Get, ["users", id]) => get(&parse_id(id)?),
        (Method::Put, ["users", id]) => update(&parse_id(id)?, request),
        (Method::Delete, ["users", id]) => delete(&parse_id(id)?),
        (_, ["users", _]) => Err(ApiError::MethodNotAllowed("GET, PUT, DELETE")),
        _ => Err(ApiError::NotFound),
    }
}

fn create(request: &Request) -> Result<Response, ApiError> {
    let new_user = NewUser::parse(json_body(request)?).map_err(ApiError::InvalidFields)?;
    let now = now_micros();
    let user = User {
        id: uuid::from_random_bytes(random_16()),
        email: new_user.email.as_str().to_owned(),
        name: new_user.name.as_str().to_owned(),
        surname: new_user.surname.as_str().to_owned(),
        phone: new_user.phone.as_ref().map(|p| p.as_str().to_owned()),
        created_at: now,
        updated_at: now,
    };
    let password_hash = new_user
        .password
        .hash(bcrypt_cost()?)
        .map_err(ApiError::Internal)?;
    store::insert(UserRecord {
        user: &user,
        password_hash: &password_hash,
    })
    .map_err(store_error)?;
    Ok(
        Response::json(201, &user.to_json())
            .header("location", format!("{USERS_PATH}/{}", user.id)),
    )
}

fn list(request: &Request) -> Result<Response, ApiError> {
    let query = ListQuery::parse(&request.query).map_err(ApiError::InvalidFields)?;
    let users = store::list(&query).map_err(store_error)?;
    let full_page = users.len() == query.page.limit as usize;
    let next_offset = full_page.then(|| query.page.offset + u64::from(query.page.limit));
    let items: Vec<_> = users.iter().map(User::to_json).collect();
    Ok(Response::json(
        200,
        &json!({"items": items, "limit": query.page.limit, "offset": query.page.offset, "next_offset": next_offset}),
    ))
}

fn get(id: &str) -> Result<Response, ApiError> {
    let user = store::get(id)
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(Response::json(200, &user.to_json()))
}

fn update(id: &str, request: &Request) -> Result<Response, ApiError> {
    let changes = UserChanges::parse(json_body(request)?).map_err(ApiError::InvalidFields)?;
    let password_hash = match changes.password {
        Some(password) => Some(password.hash(bcrypt_cost()?).map_err(ApiError::Internal)?),
        None => None,
    };
    let update = UserUpdate {
        email: changes.email.map(|e| e.as_str().to_owned()),
        name: changes.name.map(|n| n.as_str().to_owned()),
        surname: changes.surname.map(|n| n.as_str().to_owned()),
        phone: changes
            .phone
            .map(|phone| phone.map(|p| p.as_str().to_owned())),
        password_hash,
        updated_at: now_micros(),
    };
    let user = store::update(id, update)
        .map_err(store_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(Response::json(200, &user.to_json()))
}

fn delete(id: &str) -> Result<Response, ApiError> {
    if store::delete(id).map_err(store_error)? {
        Ok(Response::no_content())
    } else {
        Err(ApiError::NotFound)
    }
}

/// An id that is not a UUID cannot name a user.
fn parse_id(raw: &str) -> Result<String, ApiError> {
    uuid::parse(raw).ok_or(ApiError::NotFound)
}

fn json_body(request: &Request) -> Result<serde_json::Value, ApiError> {
    if let Some(content_type) = &request.content_type {
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media_type != "application/json" && !media_type.ends_with("+json") {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    serde_json::from_slice(&request.body)
        .map_err(|e| ApiError::MalformedBody(format!("the body is not valid JSON: {e}")))
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::DuplicateEmail => ApiError::DuplicateEmail,
        StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
        StoreError::Internal(cause) => ApiError::Internal(cause),
    }
}

fn bcrypt_cost() -> Result<u32, ApiError> {
    let configured =
        config::get("bcrypt_cost").map_err(|e| ApiError::Internal(format!("config: {e:?}")))?;
    parse_bcrypt_cost(configured.as_deref()).map_err(ApiError::Internal)
}

fn now_micros() -> i64 {
    let now = wall_clock::now();
    i64::try_from(now.seconds).unwrap_or(i64::MAX) * 1_000_000 + i64::from(now.nanoseconds / 1000)
}

fn random_16() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&random::get_random_bytes(16)[..16]);
    bytes
}
