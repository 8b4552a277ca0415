//! HTTP for accounts: parse the path, query or body into the domain's types, call the store,
//! write the answer. Nothing here touches SQL. Each handler carries its `#[utoipa::path]`,
//! gathered into [`Api`].
use chrono::Utc;
use ntex::util::BytesMut;
use ntex::web::{self, HttpRequest, HttpResponse};

use super::model::{
    AccountsError, ClienteId, ExtratoDoc, ListQuery, PageDoc, RegistroDoc, Saldo, Transacao,
    TransacaoBody, TransactionId, EXTRATO_CAPACITY,
};
use super::store;
use crate::error::{read_body, ApiError, ErrorResponse, JSON};
use crate::server::{resource, AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/clientes/{id}/transacoes").route(web::post().to(transacao)))
        .service(resource("/clientes/{id}/extrato").route(web::get().to(extrato)))
        .service(resource("/transactions").route(web::get().to(list)))
        .service(resource("/transactions/{id}").route(web::get().to(find)));
}

/// Room for `{"limite":…,"saldo":…}` with two 20-digit numbers.
const SALDO_CAPACITY: usize = 64;
/// Room for one `/transactions` row.
const REGISTRO_CAPACITY: usize = 160;

fn cliente_id(req: &HttpRequest) -> Result<ClienteId, AccountsError> {
    ClienteId::parse(req.match_info().get("id").unwrap_or(""))
}

fn json(body: BytesMut) -> HttpResponse {
    HttpResponse::Ok().content_type(JSON).body(body.freeze())
}

/// Credits or debits an account in one statement; a debit never takes it below `-limite`.
#[utoipa::path(post, path = "/clientes/{id}/transacoes", tag = "accounts",
    params(("id" = i32, Path, minimum = 1, maximum = 2147483647, description = "account id; 1–5 exist from the start, anything but a positive 32-bit number is 404")),
    request_body = TransacaoBody,
    responses((status = 200, description = "the account right after this transaction", body = Saldo),
        (status = 404, description = "unknown account", body = ErrorResponse),
        (status = 413, description = "body over 64 KiB", body = ErrorResponse),
        (status = 422, description = "invalid body, or a debit past the limit (nothing changed)", body = ErrorResponse),
        (status = 500, description = "outcome unknown (connection lost mid-statement): check the extrato before retrying", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen (nothing changed)", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn transacao(
    req: HttpRequest,
    payload: web::types::Payload,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = cliente_id(&req)?;
    let mut body = read_body(&req, payload).await?;
    let t = Transacao::parse(&mut body).map_err(AccountsError::Invalid)?;
    let saldo = store::transact(&state.pg, id, &t).await?;
    let mut out = BytesMut::with_capacity(SALDO_CAPACITY);
    saldo.write_json(&mut out);
    Ok(json(out))
}

/// Balance, limit and the latest 10 transactions, newest first, from one snapshot.
#[utoipa::path(get, path = "/clientes/{id}/extrato", tag = "accounts",
    params(("id" = i32, Path, minimum = 1, maximum = 2147483647, description = "account id; anything but a positive 32-bit number is 404")),
    responses((status = 200, body = ExtratoDoc),
        (status = 404, description = "unknown account", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn extrato(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = cliente_id(&req)?;
    let extrato = store::extrato(&state.pg, id).await?;
    let mut out = BytesMut::with_capacity(EXTRATO_CAPACITY);
    extrato.write_json(Utc::now(), &mut out);
    Ok(json(out))
}

/// Transactions newest first, a page at a time.
#[utoipa::path(get, path = "/transactions", operation_id = "list_transactions", tag = "accounts",
    params(
        ("cliente_id" = Option<i32>, Query, minimum = 1, maximum = 2147483647, description = "only this account's (an unknown one gives an empty page)"),
        ("limit" = Option<u16>, Query, minimum = 1, maximum = 100, description = "page size, default 20"),
        ("before" = Option<String>, Query, pattern = "^0*[1-9][0-9]{0,17}$",
            description = "the previous page's `next`: ids strictly below it. Any positive decimal id up to 2^63-1 is taken; the pattern states the ones below 10^18, which is every id a page hands out")),
    responses((status = 200, body = PageDoc),
        (status = 400, description = "malformed cliente_id, limit or before (the body names it)", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn list(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(req.query_string()).map_err(AccountsError::BadQuery)?;
    let page = store::list(&state.pg, &q).await?;
    let mut out = BytesMut::with_capacity(48 + page.items.len() * REGISTRO_CAPACITY);
    page.write_json(&mut out);
    Ok(json(out))
}

/// One transaction.
#[utoipa::path(get, path = "/transactions/{id}", operation_id = "find_transaction", tag = "accounts",
    params(("id" = i64, Path, minimum = 1, description = "transaction id; anything but a positive whole number is 404")),
    responses((status = 200, body = RegistroDoc),
        (status = 404, description = "no such transaction", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn find(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = TransactionId::parse(req.match_info().get("id").unwrap_or(""))
        .ok_or(AccountsError::UnknownTransaction)?;
    let registro = store::find(&state.pg, id).await?;
    let mut out = BytesMut::with_capacity(REGISTRO_CAPACITY);
    registro.write_json(&mut out);
    Ok(json(out))
}

/// This domain's part of the OpenAPI document (`server::openapi` merges every domain's).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(transacao, extrato, list, find),
    tags((name = "accounts", description = "Rinha 2024: credits, debits within the limit, extrato, transaction pages"))
)]
pub struct Api;
