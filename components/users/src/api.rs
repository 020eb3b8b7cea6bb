//! The REST contract of the users service: routes, who may call them, and what each does.

use serde_json::json;
use service_kit::error::{ApiError, json_body};
use service_kit::http::{Method, Request, Response};
use service_kit::platform::{log_warning, new_uuid, now_micros, setting, verify_bearer};
use service_kit::throttle::{client_key, ipv6_prefix_setting};
use service_kit::token::{Claims, Role, may_act_on, role_name};

use crate::domain::password::{decoy_hash, hash_cost, parse_bcrypt_cost};
use crate::domain::{
    Credentials, EmailChangeThrottle, FieldError, ListQuery, NewUser, Password, SignupThrottle, User, UserChanges, uuid,
};
use crate::error::{Error, FORBIDDEN};
use crate::platform::{hash_password, password_matches};
use crate::store::{self, StoredCredentials, UserRecord, UserUpdate};

/// Where a created user can be read back.
const USERS_PATH: &str = "/users-ms/users";

pub fn handle(request: &Request) -> Response {
    route(request).unwrap_or_else(Error::into_response)
}

fn route(request: &Request) -> Result<Response, Error> {
    // `/users/{id}` is the original contract's alias of `/users-ms/users/{id}`.
    let path = request.path.strip_prefix("/users-ms").unwrap_or(&request.path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (request.method, segments.as_slice()) {
        (Method::Get, ["healthcheck"]) => Ok(Response::json(200, &json!({"status": "ok"}))),
        (_, ["healthcheck"]) => Err(ApiError::MethodNotAllowed("GET").into()),
        // Internal routes exist only for what the host says came from inside, or from its admin
        // API (`skiff:request`); to anyone else they are not there.
        (Method::Post, ["internal", "credentials"]) if request.origin.internal => check_credentials(request),
        (Method::Get, ["internal", "users", id]) if request.origin.internal => user_status(id),
        (Method::Put, ["internal", "admins", id]) if request.origin.admin => grant_admin(id),
        (Method::Post, ["users"]) => create(request),
        (Method::Get, ["users"]) => list(request, &authenticate(request)?),
        (_, ["users"]) => Err(ApiError::MethodNotAllowed("GET, POST").into()),
        (Method::Get, ["users", id]) => get(request, id),
        (Method::Put, ["users", id]) => {
            let (claims, id) = authorize(request, id)?;
            update(&claims, &id, request)
        }
        (Method::Delete, ["users", id]) => delete(&authorize(request, id)?.1),
        (_, ["users", _]) => Err(ApiError::MethodNotAllowed("GET, PUT, DELETE").into()),
        _ => Err(ApiError::NotFound.into()),
    }
}

/// Who a request acts as: its bearer token's claims, once the token still stands, and the
/// token's user as stored now.
struct Subject {
    claims: Claims,
    user: User,
}

/// The bearer token, checked with the configured public key and against its user: a token
/// whose user is gone, or that was issued before the user's password changed, is refused.
fn authenticate(request: &Request) -> Result<Subject, Error> {
    let claims = verify_bearer(request)?;
    let user = store::get(&claims.sub)?.ok_or(Error::TokenRevoked)?;
    Subject::of(claims, user)
}

impl Subject {
    /// `claims` as they stand against their `user`. The role is the stored one, not the
    /// token's: an admin whose role is taken away loses it at once, not when the token expires.
    fn of(mut claims: Claims, user: User) -> Result<Self, Error> {
        if !user.accepts_token_issued_at(claims.iat) {
            return Err(Error::TokenRevoked);
        }
        claims.role = user.role;
        Ok(Self { claims, user })
    }
}

/// The id in the path, once the token may act on it. A token that may not gets 403 whether or
/// not the user exists, so ids cannot be probed.
fn authorize(request: &Request, raw_id: &str) -> Result<(Claims, String), Error> {
    let Subject { claims, .. } = authenticate(request)?;
    let id = uuid::parse(raw_id).ok_or(ApiError::NotFound)?;
    if may_act_on(&claims, &id) { Ok((claims, id)) } else { Err(ApiError::Forbidden(FORBIDDEN).into()) }
}

fn create(request: &Request) -> Result<Response, Error> {
    let new_user = NewUser::parse(json_body(request)?).map_err(ApiError::InvalidFields)?;
    // Cheap checks first: the throttle, then the email, and only then a bcrypt hash.
    throttle_signup(request.origin.client_address.as_deref())?;
    if store::email_taken(new_user.email.as_str())? {
        return Err(Error::DuplicateEmail);
    }
    let now = now_micros();
    let user = User {
        id: new_uuid(),
        email: new_user.email.as_str().to_owned(),
        name: new_user.name.as_str().to_owned(),
        surname: new_user.surname.as_str().to_owned(),
        phone: new_user.phone.as_ref().map(|p| p.as_str().to_owned()),
        // Nobody becomes an admin by signing up: the operator grants it (`skiff admin grant-admin`).
        role: Role::User,
        created_at: now,
        updated_at: now,
        password_changed_at: None,
    };
    let password_hash = hash_password(new_user.password, bcrypt_cost()?)?;
    store::insert(UserRecord { user: &user, password_hash: &password_hash })?;
    Ok(Response::json(201, &user.to_json()).header("location", format!("{USERS_PATH}/{}", user.id)))
}

/// Refuses a sign-up (429) once its client address has had `signup_max_per_source` attempts in
/// the window, whatever became of them, so sign-up can neither burn bcrypt nor test emails
/// (409) faster. The attempt is recorded before the others are counted, so parallel sign-ups
/// count each other; a refused one is taken back.
fn throttle_signup(source: Option<&str>) -> Result<(), Error> {
    let Some(source) = source.filter(|address| !address.is_empty()) else { return Ok(()) };
    // One client is one IPv4 address or one IPv6 network (`throttle_ipv6_prefix`, /64).
    let source = client_key(source, ipv6_prefix_setting(setting("throttle_ipv6_prefix")?.as_deref())?);
    let source = source.as_str();
    throttle_attempt(source, signup_max_per_source()?, Error::TooManySignups)
}

fn signup_max_per_source() -> Result<u32, Error> {
    Ok(SignupThrottle::parse(setting("signup_max_per_source")?.as_deref(), None)?.max_per_source)
}

/// One attempt under `key` (a client address, or `account:{id}`), refused once `key` has had
/// `limit` others in the `signup_window_secs` window, with `refused(seconds until retry)`.
fn throttle_attempt(key: &str, limit: u32, refused: fn(i64) -> Error) -> Result<(), Error> {
    let window = SignupThrottle::parse(None, setting("signup_window_secs")?.as_deref())?;
    let throttle = SignupThrottle { max_per_source: limit, ..window };
    let (attempt, now) = (new_uuid(), now_micros());
    let expired_before = now - throttle.window_micros();
    store::record_signup(key, &attempt, now)?;
    // Rows past the window go on every attempt, so the table holds at most a window's worth.
    store::forget_expired_signups(expired_before)?;
    let others = store::recent_signups(key, &attempt, expired_before, throttle.max_per_source)?;
    match throttle.retry_after(&others, now) {
        None => Ok(()),
        Some(seconds) => {
            store::withdraw_signup(&attempt)?;
            Err(refused(seconds))
        }
    }
}

/// `GET /users-ms/internal/users/{id}` (internal only), for auth when it refreshes a session:
/// whether the user exists, its role, and when its password last changed.
fn user_status(raw_id: &str) -> Result<Response, Error> {
    let id = uuid::parse(raw_id).ok_or(ApiError::NotFound)?;
    let user = store::get(&id)?.ok_or(ApiError::NotFound)?;
    Ok(Response::json(
        200,
        &json!({"id": user.id, "role": role_name(user.role), "password_changed_at_micros": user.password_changed_at}),
    ))
}

/// `PUT /users-ms/internal/admins/{id}` from the host's admin API: the user gets the admin role.
fn grant_admin(raw_id: &str) -> Result<Response, Error> {
    let id = uuid::parse(raw_id).ok_or(ApiError::NotFound)?;
    let user = store::grant_admin(&id, now_micros())?.ok_or(ApiError::NotFound)?;
    Ok(Response::json(200, &user.to_json()))
}

/// Listing every user is for admins; a user lists only themself.
fn list(request: &Request, subject: &Subject) -> Result<Response, Error> {
    let query = ListQuery::parse(&request.query).map_err(ApiError::InvalidFields)?;
    let users: Vec<User> = if subject.claims.role == Role::Admin {
        store::list(&query)?
    } else {
        // The one matching user, paged like any list: past the first page there is nothing.
        let own = Some(subject.user.clone()).into_iter().filter(|user| query.matches(user));
        own.skip(usize::try_from(query.page.offset).unwrap_or(usize::MAX)).take(query.page.limit as usize).collect()
    };
    Ok(Response::json(200, &query.page.body(users.iter().map(User::to_json).collect())))
}

fn get(request: &Request, raw_id: &str) -> Result<Response, Error> {
    let claims = verify_bearer(request)?;
    let id = uuid::parse(raw_id).ok_or(ApiError::NotFound)?;
    if claims.sub == id {
        // Reading one's own profile (the common case): one query gives the profile and what
        // the token is checked against.
        let user = store::get(&id)?.ok_or(Error::TokenRevoked)?;
        return Ok(Response::json(200, &Subject::of(claims, user)?.user.to_json()));
    }
    let token_user = store::get(&claims.sub)?.ok_or(Error::TokenRevoked)?;
    let Subject { claims, .. } = Subject::of(claims, token_user)?;
    if !may_act_on(&claims, &id) {
        return Err(ApiError::Forbidden(FORBIDDEN).into());
    }
    let user = store::get(&id)?.ok_or(ApiError::NotFound)?;
    Ok(Response::json(200, &user.to_json()))
}

fn update(claims: &Claims, id: &str, request: &Request) -> Result<Response, Error> {
    let changes = UserChanges::parse(json_body(request)?).map_err(ApiError::InvalidFields)?;
    // A new email can answer 409 (registered) or 200 (free): the same test as a sign-up, so it
    // is throttled like one, before any bcrypt.
    if changes.email.is_some() {
        throttle_email_change(request.origin.client_address.as_deref(), id)?;
    }
    if claims.sub == id && (changes.password.is_some() || changes.email.is_some()) {
        check_current_password(id, changes.current_password)?;
    }
    let password_hash = match changes.password {
        Some(password) => Some(hash_password(password, bcrypt_cost()?)?),
        None => None,
    };
    let update = UserUpdate {
        email: changes.email.map(|e| e.as_str().to_owned()),
        name: changes.name.map(|n| n.as_str().to_owned()),
        surname: changes.surname.map(|n| n.as_str().to_owned()),
        phone: changes.phone.map(|phone| phone.map(|p| p.as_str().to_owned())),
        password_hash,
        updated_at: now_micros(),
    };
    let user = store::update(id, update)?.ok_or(ApiError::NotFound)?;
    Ok(Response::json(200, &user.to_json()))
}

/// Refuses an email change (429) once its client address has had `signup_max_per_source`
/// sign-ups and email changes in the window (one budget: both test emails), or the account
/// `email_change_max_per_account` email changes.
fn throttle_email_change(source: Option<&str>, account: &str) -> Result<(), Error> {
    let per_account = EmailChangeThrottle::parse(setting("email_change_max_per_account")?.as_deref())?;
    throttle_attempt(&format!("account:{account}"), per_account.max_per_account, Error::TooManyEmailChanges)?;
    let Some(source) = source.filter(|address| !address.is_empty()) else { return Ok(()) };
    // One client is one IPv4 address or one IPv6 network (`throttle_ipv6_prefix`, /64).
    let source = client_key(source, ipv6_prefix_setting(setting("throttle_ipv6_prefix")?.as_deref())?);
    let source = source.as_str();
    throttle_attempt(source, signup_max_per_source()?, Error::TooManyEmailChanges)
}

fn delete(id: &str) -> Result<Response, Error> {
    if store::delete(id)? { Ok(Response::no_content()) } else { Err(ApiError::NotFound.into()) }
}

/// `POST /users-ms/internal/credentials` (internal only): 200 with id and role, or 401. An
/// unknown email is checked against a decoy hash at the configured cost through the same host
/// call as a real check, so it waits in (or is shed from) the same bcrypt queue and takes the
/// same time: timing tells nothing, also under load. A hash made at another cost is remade at
/// the configured one once the password has matched.
fn check_credentials(request: &Request) -> Result<Response, Error> {
    let credentials = Credentials::parse(json_body(request)?).map_err(ApiError::InvalidFields)?;
    let cost = bcrypt_cost()?;
    let stored = store::credentials(&credentials.email)?;
    let candidate = Password::unchecked(credentials.password);
    match stored {
        Some(stored) if password_matches(&candidate, &stored.password_hash) => {
            if hash_cost(&stored.password_hash) != Some(cost) {
                rehash(&stored, candidate, cost);
            }
            Ok(Response::json(200, &json!({"id": stored.id, "role": role_name(stored.role)})))
        }
        Some(_) => Err(Error::BadCredentials),
        None => {
            let _equal_time = password_matches(&candidate, &decoy_hash(cost));
            Err(Error::BadCredentials)
        }
    }
}

/// Replaces a matched hash made at another cost by one at `cost`, so that after the cost
/// changes a wrong password for an old account costs what an unknown email does. Best effort:
/// the login has succeeded whatever happens here (a shed hash is retried at the next login), and
/// a password changed meanwhile is not overwritten.
fn rehash(stored: &StoredCredentials, password: Password, cost: u32) {
    let replaced = hash_password(password, cost)
        .and_then(|hash| Ok(store::replace_password_hash(&stored.id, &stored.password_hash, &hash)?));
    if let Err(error) = replaced {
        log_warning("users", &format!("password hash of {} not moved to cost {cost}: {error:?}", stored.id));
    }
}

/// A user changing their own password or email proves they know the current password: a stolen
/// access token alone can neither take the account over nor test emails. (An admin changing
/// someone else's does not.)
fn check_current_password(id: &str, current: Option<Password>) -> Result<(), Error> {
    let Some(current) = current else {
        let missing = FieldError::new("current_password", "is required to change your own password or email");
        return Err(ApiError::InvalidFields(vec![missing]).into());
    };
    let stored = store::password_hash(id)?.ok_or(ApiError::NotFound)?;
    if password_matches(&current, &stored) { Ok(()) } else { Err(Error::WrongCurrentPassword) }
}

fn bcrypt_cost() -> Result<u32, Error> {
    Ok(parse_bcrypt_cost(setting("bcrypt_cost")?.as_deref())?)
}
