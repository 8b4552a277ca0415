//! The people routes: parse the request, call the domain, answer. Bodies that exist already as
//! JSON (the person serialised at creation, the stored rows of a search) go out as they are.
//! Each handler carries its `#[utoipa::path]`, gathered into [`Api`].
use std::time::Duration;

use ntex::http::{header, StatusCode};
use ntex::web::{self, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::model::{NewPerson, NewPersonBody, PersonJson, SearchTerm};
use super::PeopleError;
use crate::error::{read_body, ApiError, ErrorResponse, JSON};
use crate::server::{resource, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/pessoas")
            .route(web::post().to(create))
            .route(web::get().to(search)),
    )
    .service(resource("/pessoas/{id}").route(web::get().to(find)))
    .service(resource("/contagem-pessoas").route(web::get().to(count)));
}

#[derive(serde::Deserialize)]
struct SearchParams {
    t: Option<String>,
}

#[derive(serde::Deserialize)]
struct CountParams {
    /// Seconds to wait for the inserter to catch up with every 201 (see README, People).
    wait: Option<f64>,
}

fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, PeopleError> {
    web::types::Query::<T>::from_query(req.query_string())
        .map(web::types::Query::into_inner)
        .map_err(|_| PeopleError::BadQuery)
}

/// Creates a person: answered 201 only once RabbitMQ has confirmed it, readable at once on
/// every replica, in PostgreSQL after the inserter's next flush.
#[utoipa::path(post, path = "/pessoas", operation_id = "create_person", tag = "people",
    request_body = NewPersonBody,
    responses((status = 201, description = "created", body = PersonJson,
            headers(("Location" = String, description = "/pessoas/{id}"))),
        (status = 400, description = "not JSON, or a field of the wrong JSON type", body = ErrorResponse),
        (status = 413, description = "body over 64 KiB", body = ErrorResponse),
        (status = 422, description = "apelido taken; a required field null or missing; too long; an impossible date", body = ErrorResponse),
        (status = 503, description = "Redis or RabbitMQ unavailable (nothing kept), Redis's apelido keys being rebuilt after it lost its data, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn create(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut body = read_body(&req, payload).await?;
    let person = NewPerson::parse(&mut body).map_err(PeopleError::from)?;
    let person = super::create(&state, person).await?;
    Ok(HttpResponse::build(StatusCode::CREATED)
        .header(header::LOCATION, format!("/pessoas/{}", person.id))
        .content_type(JSON)
        .body(person.json))
}

/// One person, from the Redis cache or PostgreSQL.
#[utoipa::path(get, path = "/pessoas/{id}", operation_id = "find_person", tag = "people",
    params(("id" = String, Path, description = "a UUID, as in the Location header")),
    responses((status = 200, body = PersonJson),
        (status = 404, description = "unknown or not a UUID", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn find(
    id: web::types::Path<String>,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::try_parse(&id).map_err(|_| PeopleError::NotFound)?;
    let json = super::find(&state, &id).await?;
    Ok(HttpResponse::Ok().content_type(JSON).body(json))
}

/// At most 50 people whose apelido, nome or a stack element contains `t` (case-insensitive).
#[utoipa::path(get, path = "/pessoas", operation_id = "search_people", tag = "people",
    params(("t" = String, Query, description = "the term; required, not empty")),
    responses((status = 200, description = "matches, `[]` when none", body = Vec<PersonJson>),
        (status = 400, description = "missing or empty t, t holding NUL, or a malformed query string", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn search(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params: SearchParams = query(&req)?;
    let term = SearchTerm::parse(params.t.as_deref())?;
    let body = super::store::search(&state.pg, &term).await?;
    Ok(HttpResponse::Ok().content_type(JSON).body(body))
}

/// The number of people in PostgreSQL, as plain text.
#[utoipa::path(get, path = "/contagem-pessoas", operation_id = "count_people", tag = "people",
    params(("wait" = Option<f64>, Query, maximum = 60,
        description = "seconds to wait first until every person answered 201 is in PostgreSQL")),
    responses((status = 200, description = "the count", content_type = "text/plain", body = String, example = "46576"),
        (status = 400, description = "a malformed query string", body = ErrorResponse),
        (status = 503, description = "PostgreSQL or Redis unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn count(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params: CountParams = query(&req)?;
    let wait = params
        .wait
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(super::MAX_DRAIN_WAIT.as_secs_f64())));
    let n = super::count(&state, wait).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(n.to_string()))
}

/// This domain's part of the OpenAPI document (`server::openapi` merges every domain's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(create, find, search, count),
    tags((name = "people", description = "Rinha 2023: people with unique apelidos, search and count"))
)]
pub struct Api;
