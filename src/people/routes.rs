//! The people routes: parse the request, call the domain, answer. Bodies that exist already as
//! JSON (the person serialised at creation, the stored rows of a search) go out as they are.
use std::time::Duration;

use ntex::http::{header, StatusCode};
use ntex::web::{self, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::model::{NewPerson, SearchTerm};
use super::PeopleError;
use crate::error::{read_body, ApiError, JSON};
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

#[tracing::instrument(skip_all)]
async fn find(
    id: web::types::Path<String>,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::try_parse(&id).map_err(|_| PeopleError::NotFound)?;
    let json = super::find(&state, &id).await?;
    Ok(HttpResponse::Ok().content_type(JSON).body(json))
}

#[tracing::instrument(skip_all)]
async fn search(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params: SearchParams = query(&req)?;
    let term = SearchTerm::parse(params.t.as_deref()).ok_or(PeopleError::MissingTerm)?;
    let body = super::store::search(&state.pg, &term).await?;
    Ok(HttpResponse::Ok().content_type(JSON).body(body))
}

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
