//! HTTP for users: parse, hash off the loop, call the store, answer. Nothing here writes SQL.
//! Each handler carries its `#[utoipa::path]`, gathered into [`Api`].
use ntex::http::StatusCode;
use ntex::web::{self, HttpRequest, HttpResponse};

use super::model::{
    Credentials, CredentialsBody, LoggedIn, NewUser, NewUserBody, PageQuery, Registered,
    Registration, RegistrationBody, User, UserId, UserPage, UserUpdate, UserUpdateBody, UsersError,
};
use super::store;
use crate::error::{read_body, ApiError, ErrorResponse};
use crate::json::respond as json;
use crate::server::{resource, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/users")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/users/{id}")
            .route(web::get().to(find))
            .route(web::put().to(update))
            .route(web::delete().to(delete)),
    )
    .service(resource("/register").route(web::post().to(register)))
    .service(resource("/login").route(web::post().to(login)));
}

fn path_id(req: &HttpRequest) -> Result<UserId, UsersError> {
    UserId::parse_path(req.match_info().get("id").unwrap_or(""))
}

async fn insert(state: &AppState, new: NewUser) -> Result<User, UsersError> {
    let hash = state.users.hasher.hash(new.password.clone()).await?;
    store::insert(&state.pg, &new, &hash).await
}

/// Creates a user; the username defaults to the email.
#[utoipa::path(post, path = "/users", operation_id = "create_user", tag = "users",
    request_body = NewUserBody,
    responses((status = 201, body = User),
        (status = 400, description = "body is not a JSON object", body = ErrorResponse),
        (status = 409, description = "username or email taken", body = ErrorResponse),
        (status = 422, description = "missing or invalid field (the body names it)", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn create(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut body = read_body(&req, payload).await?;
    let new = NewUser::parse(&mut body)?;
    let user = insert(&state, new).await?;
    Ok(json(StatusCode::CREATED, &user))
}

/// Registers a user by username and password alone.
#[utoipa::path(post, path = "/register", tag = "users",
    request_body = RegistrationBody,
    responses((status = 201, body = Registered),
        (status = 400, description = "body is not a JSON object", body = ErrorResponse),
        (status = 409, description = "username taken", body = ErrorResponse),
        (status = 422, description = "missing or invalid field", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn register(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut body = read_body(&req, payload).await?;
    let new = Registration::parse(&mut body)?;
    let user = insert(&state, new).await?;
    Ok(json(
        StatusCode::CREATED,
        &Registered {
            user_id: user.id,
            message: "User created successfully",
        },
    ))
}

/// Checks a username and password; answers a bearer token every replica accepts.
#[utoipa::path(post, path = "/login", tag = "users",
    request_body = CredentialsBody,
    responses((status = 200, body = LoggedIn),
        (status = 400, description = "body is not a JSON object", body = ErrorResponse),
        (status = 401, description = "wrong username or password", body = ErrorResponse),
        (status = 422, description = "username or password missing", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn login(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut body = read_body(&req, payload).await?;
    let credentials = Credentials::parse(&mut body)?;
    let found = match &credentials.username {
        Some(username) => store::credentials(&state.pg, username).await?,
        None => None,
    };
    let (user, stored) = match found {
        Some((user, stored)) => (Some(user), Some(stored)),
        None => (None, None),
    };
    let matched = state
        .users
        .hasher
        .verify(credentials.password, stored)
        .await?;
    let user = user.filter(|_| matched).ok_or(UsersError::BadCredentials)?;
    let now = chrono::Utc::now();
    let (token, expires) = state.users.tokens.issue(user, now.timestamp());
    let expires_at = chrono::DateTime::from_timestamp(expires, 0).unwrap_or(now);
    Ok(json(
        StatusCode::OK,
        &LoggedIn {
            user_id: user.get(),
            token,
            expires_at: crate::json::timestamp(&expires_at),
        },
    ))
}

/// Users by id, a page at a time.
#[utoipa::path(get, path = "/users", operation_id = "list_users", tag = "users",
    params(("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "page size, default 50"),
        ("offset" = Option<i64>, Query, minimum = 0, description = "users to skip, default 0")),
    responses((status = 200, body = UserPage),
        (status = 400, description = "malformed limit or offset", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn list(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let page = PageQuery::parse(req.query_string())?;
    let users = store::list(&state.pg, page).await?;
    Ok(json(StatusCode::OK, &UserPage { users }))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", operation_id = "find_user", tag = "users",
    params(("id" = i64, Path, minimum = 1, description = "user id; anything but a positive whole number is 404")),
    responses((status = 200, body = User),
        (status = 404, description = "no such user", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn find(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = store::find(&state.pg, path_id(&req)?).await?;
    Ok(json(StatusCode::OK, &user))
}

/// The user `{id}` if the token is that user's: 401 without a valid token, 403 for another.
fn acting_on_itself(req: &HttpRequest, state: &AppState) -> Result<UserId, UsersError> {
    let actor = state.users.authenticate(req, false)?;
    let target = path_id(req)?;
    if actor == target {
        Ok(target)
    } else {
        Err(UsersError::Forbidden)
    }
}

/// Changes any of name, email, username, password. Only the user itself may (its token).
#[utoipa::path(put, path = "/users/{id}", operation_id = "update_user", tag = "users", security(("user" = [])),
    params(("id" = i64, Path, minimum = 1, description = "user id; anything but a positive whole number is 404")),
    request_body = UserUpdateBody,
    responses((status = 200, body = User),
        (status = 400, description = "body is not a JSON object", body = ErrorResponse),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "the token is another user's", body = ErrorResponse),
        (status = 404, description = "no such user", body = ErrorResponse),
        (status = 409, description = "username or email taken", body = ErrorResponse),
        (status = 422, description = "invalid field, or none given", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn update(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = acting_on_itself(&req, &state)?;
    let mut body = read_body(&req, payload).await?;
    let mut changes = UserUpdate::parse(&mut body)?;
    let hash = match changes.password.take() {
        Some(password) => Some(state.users.hasher.hash(password).await?),
        None => None,
    };
    let user = store::update(&state.pg, id, &changes, hash.as_deref()).await?;
    Ok(json(StatusCode::OK, &user))
}

/// Deletes the user with its memberships and messages. Only the user itself may (its token).
#[utoipa::path(delete, path = "/users/{id}", operation_id = "delete_user", tag = "users", security(("user" = [])),
    params(("id" = i64, Path, minimum = 1, description = "user id; anything but a positive whole number is 404")),
    responses((status = 204, description = "deleted"),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "the token is another user's", body = ErrorResponse),
        (status = 404, description = "no such user", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn delete(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = acting_on_itself(&req, &state)?;
    store::delete(&state.pg, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// This domain's part of the OpenAPI document (`server::openapi` merges every domain's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, register, login, list, find, update, delete),
    components(schemas(NewUserBody, RegistrationBody, CredentialsBody, UserUpdateBody)),
    modifiers(&UserBearer),
    tags((name = "users", description = "Users shared by chat and the REST resource; login tokens"))
)]
pub struct Api;

/// Declares the `user` bearer scheme: the token `/login` answers.
struct UserBearer;

impl utoipa::Modify for UserBearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "user",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}
