//! HTTP for accounts: parse the path, query or body into the domain's types, call the store,
//! write the answer. Nothing here touches SQL.
use chrono::Utc;
use ntex::util::BytesMut;
use ntex::web::{self, HttpRequest, HttpResponse};

use super::model::{
    AccountsError, ClienteId, ListQuery, Transacao, TransactionId, EXTRATO_CAPACITY,
};
use super::store;
use crate::error::{read_body, ApiError, JSON};
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
