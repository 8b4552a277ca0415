//! The accounts domain's types. Input is parsed here exactly once — a `Transacao` cannot hold a
//! zero valor, a third tipo or an eleven-character descricao — and the answers know their own
//! JSON form, written straight into one pre-sized buffer (no `serde_json::Value`, no
//! intermediate `String`s). The 400 vs 422 vs 404 choice lives in [`AccountsError`].
use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use ntex::http::StatusCode;
use ntex::util::{BufMut, BytesMut};
use simd_json::{BorrowedValue, StaticNode};

use crate::error::ApiError;

/// What can go wrong in this domain; its `From<AccountsError> for ApiError` below gives each variant its HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// 404: no such account (or an id that is not a number).
    #[error("unknown account")]
    UnknownAccount,
    /// 404: no transaction with that id.
    #[error("unknown transaction")]
    UnknownTransaction,
    /// 422: the debit would take the balance below `-limite`; nothing changed.
    #[error("insufficient limit")]
    InsufficientLimit,
    /// 422: a credit would overflow the balance (beyond 2^63 cents); nothing changed.
    #[error("balance overflow")]
    BalanceOverflow,
    /// 422: the transaction body is not what SPEC §3 accepts.
    #[error("invalid {}: {}", .0.field, .0.message)]
    Invalid(Invalid),
    /// 400: a malformed `/transactions` query parameter.
    #[error("bad {}: {}", .0.field, .0.message)]
    BadQuery(Invalid),
    /// 503: PostgreSQL could not be reached (pool timeout, closed connection).
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// 500: PostgreSQL answered something this code does not expect.
    #[error("database error")]
    Database(#[source] tokio_postgres::Error),
    /// 500: a stored row breaks the schema's own CHECKs (schema drift).
    #[error("a stored transaction does not match the schema")]
    Corrupt,
}

/// Which input was wrong and why, in words fit for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: &'static str,
}

const fn invalid(field: &'static str, message: &'static str) -> Invalid {
    Invalid { field, message }
}

/// An account id taken from the path. Anything but a positive 32-bit number is an account that
/// cannot exist, hence 404 rather than 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClienteId(i32);

impl ClienteId {
    pub fn parse(s: &str) -> Result<Self, AccountsError> {
        match crate::json::digits(s).and_then(|n| i32::try_from(n).ok()) {
            Some(n) if n > 0 => Ok(Self(n)),
            _ => Err(AccountsError::UnknownAccount),
        }
    }

    /// An id the database handed out (test accounts, rows read back).
    pub const fn from_db(id: i32) -> Self {
        Self(id)
    }

    pub const fn get(self) -> i32 {
        self.0
    }
}

/// A transaction id from the path or a cursor: a positive 64-bit number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionId(i64);

impl TransactionId {
    /// `None` for anything that is not a positive decimal number.
    pub fn parse(s: &str) -> Option<Self> {
        crate::json::digits(s).filter(|&n| n > 0).map(Self)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// A positive whole number of cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Valor(i64);

impl Valor {
    pub const fn get(self) -> i64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tipo {
    Credito,
    Debito,
}

impl Tipo {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "c" => Some(Self::Credito),
            "d" => Some(Self::Debito),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Credito => "c",
            Self::Debito => "d",
        }
    }
}

/// The longest descricao in characters (SPEC §3).
pub const DESCRICAO_MAX_CHARS: usize = 10;
/// Ten characters of at most four UTF-8 bytes each: the descricao lives inline, so reading ten
/// of them for an extrato allocates nothing per row.
const DESCRICAO_MAX_BYTES: usize = DESCRICAO_MAX_CHARS * 4;

/// 1–10 Unicode scalar values (what PostgreSQL's `varchar(10)` counts), stored inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Descricao {
    len: u8,
    bytes: [u8; DESCRICAO_MAX_BYTES],
}

impl Descricao {
    pub fn parse(s: &str) -> Option<Self> {
        let chars = s.chars().count();
        // PostgreSQL text cannot hold NUL: refuse it here (422) rather than fail the insert (500).
        if chars == 0 || chars > DESCRICAO_MAX_CHARS || s.contains('\0') {
            return None;
        }
        let mut bytes = [0; DESCRICAO_MAX_BYTES];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        Some(Self {
            len: s.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize])
            .expect("BUG: a Descricao is built from a &str")
    }
}

impl fmt::Debug for Descricao {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A transaction request that SPEC §3 accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transacao {
    pub valor: Valor,
    pub tipo: Tipo,
    pub descricao: Descricao,
}

impl Transacao {
    /// Parses a request body. simd-json works in place, hence `&mut`. Every way to be wrong —
    /// not JSON, not an object, a missing or null field, `1.2`, `"1"`, `0`, `"x"`, 11
    /// characters — is a 422 naming the field (not-JSON is 422 too: SPEC says "anything
    /// else → 422", and the Rinha tolerates it).
    pub fn parse(body: &mut [u8]) -> Result<Self, Invalid> {
        crate::json::screen(body, crate::json::MAX_DEPTH)
            .map_err(|refusal| invalid("body", refusal.message()))?;
        let value = simd_json::to_borrowed_value(body)
            .map_err(|_| invalid("body", "not a JSON document"))?;
        let BorrowedValue::Object(fields) = value else {
            return Err(invalid("body", "not a JSON object"));
        };
        let valor = match fields.get("valor") {
            Some(BorrowedValue::Static(StaticNode::I64(n))) if *n > 0 => Valor(*n),
            Some(BorrowedValue::Static(StaticNode::U64(n)))
                if *n > 0 && i64::try_from(*n).is_ok() =>
            {
                Valor(*n as i64)
            }
            _ => return Err(invalid("valor", "must be a positive integer")),
        };
        let tipo = match fields.get("tipo") {
            Some(BorrowedValue::String(s)) => Tipo::parse(s),
            _ => None,
        }
        .ok_or(invalid("tipo", "must be \"c\" or \"d\""))?;
        let descricao = match fields.get("descricao") {
            Some(BorrowedValue::String(s)) => Descricao::parse(s),
            _ => None,
        }
        .ok_or(invalid(
            "descricao",
            "must be a string of 1 to 10 characters",
        ))?;
        Ok(Self {
            valor,
            tipo,
            descricao,
        })
    }

    /// The change to the balance: credits add, debits subtract.
    pub const fn delta(&self) -> i64 {
        match self.tipo {
            Tipo::Credito => self.valor.0,
            Tipo::Debito => -self.valor.0,
        }
    }
}

/// The account right after an accepted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
pub struct Saldo {
    pub limite: i64,
    pub saldo: i64,
}

/// One transaction as the extrato shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lancamento {
    pub valor: Valor,
    pub tipo: Tipo,
    pub descricao: Descricao,
    pub realizada_em: DateTime<Utc>,
}

impl Lancamento {
    /// Rebuilds a stored row; the table's CHECKs make a failure here a schema drift.
    pub fn from_db(
        valor: i64,
        tipo: &str,
        descricao: &str,
        realizada_em: DateTime<Utc>,
    ) -> Option<Self> {
        Some(Self {
            valor: (valor > 0).then_some(Valor(valor))?,
            tipo: Tipo::parse(tipo)?,
            descricao: Descricao::parse(descricao)?,
            realizada_em,
        })
    }
}

/// How many transactions an extrato lists (SPEC §3).
pub const EXTRATO_SIZE: usize = 10;

/// Balance, limit and the latest transactions, newest first, read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extrato {
    pub total: i64,
    pub limite: i64,
    pub ultimas: Vec<Lancamento>,
}

/// A transaction with its identity, for `/transactions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registro {
    pub id: TransactionId,
    pub cliente_id: ClienteId,
    pub lancamento: Lancamento,
}

impl Registro {
    pub fn from_db(id: i64, cliente_id: i32, lancamento: Lancamento) -> Self {
        Self {
            id: TransactionId(id),
            cliente_id: ClienteId(cliente_id),
            lancamento,
        }
    }
}

/// One page of `/transactions`, newest first; `next` is the cursor for the following page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Registro>,
    pub next: Option<TransactionId>,
}

/// `limit` when the query gives none.
pub const DEFAULT_PAGE: u16 = 20;
/// The largest page; keeps one request's rows and body small.
pub const MAX_PAGE: u16 = 100;

/// `GET /transactions?cliente_id=&limit=&before=`, parsed. The cursor `before` is the id of the
/// last transaction of the previous page (the page's `next`): pages hold ids strictly below it.
/// Values are percent-decoded (`cliente_id=%31` is account 1, `+` is a space) by the same serde
/// form decoder as the people routes' queries. Every malformed parameter is a 400 naming it; a
/// repeated one counts by its last value; unknown parameters are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub cliente_id: Option<ClienteId>,
    pub limit: u16,
    pub before: Option<TransactionId>,
}

impl ListQuery {
    pub fn parse(query: &str) -> Result<Self, Invalid> {
        let mut q = Self {
            cliente_id: None,
            limit: DEFAULT_PAGE,
            before: None,
        };
        // Pairs rather than a struct of fields: a bad value is named by its key, and a repeated
        // key is not a decoding error with no field to name.
        let pairs = ntex::web::types::Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|_| invalid("query", "must be a URL-encoded query string"))?
            .into_inner();
        for (key, value) in &pairs {
            let value = value.as_str();
            match key.as_str() {
                "cliente_id" => {
                    q.cliente_id = Some(
                        ClienteId::parse(value)
                            .map_err(|_| invalid("cliente_id", "must be a positive integer"))?,
                    )
                }
                "limit" => {
                    q.limit = crate::json::digits(value)
                        .filter(|n| (1..=i64::from(MAX_PAGE)).contains(n))
                        .ok_or(invalid("limit", "must be an integer from 1 to 100"))?
                        as u16
                }
                "before" => {
                    q.before = Some(
                        TransactionId::parse(value)
                            .ok_or(invalid("before", "must be a cursor from a previous page"))?,
                    )
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

// ---- wire form: JSON written by hand into one buffer ------------------------------------------

/// Room for an extrato with ten full rows; one allocation per answer.
pub const EXTRATO_CAPACITY: usize = 96 + EXTRATO_SIZE * 128;

impl Saldo {
    pub fn write_json(&self, out: &mut BytesMut) {
        out.put_slice(b"{\"limite\":");
        put_int(out, self.limite);
        out.put_slice(b",\"saldo\":");
        put_int(out, self.saldo);
        out.put_u8(b'}');
    }
}

impl Extrato {
    /// `data_extrato` is the time the answer is written.
    pub fn write_json(&self, now: DateTime<Utc>, out: &mut BytesMut) {
        out.put_slice(b"{\"saldo\":{\"total\":");
        put_int(out, self.total);
        out.put_slice(b",\"data_extrato\":");
        put_timestamp(out, now);
        out.put_slice(b",\"limite\":");
        put_int(out, self.limite);
        out.put_slice(b"},\"ultimas_transacoes\":[");
        for (i, l) in self.ultimas.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.put_u8(b'{');
            l.write_fields(out);
            out.put_u8(b'}');
        }
        out.put_slice(b"]}");
    }
}

impl Lancamento {
    fn write_fields(&self, out: &mut BytesMut) {
        out.put_slice(b"\"valor\":");
        put_int(out, self.valor.0);
        out.put_slice(b",\"tipo\":\"");
        out.put_slice(self.tipo.as_str().as_bytes());
        out.put_slice(b"\",\"descricao\":");
        put_str(out, self.descricao.as_str());
        out.put_slice(b",\"realizada_em\":");
        put_timestamp(out, self.realizada_em);
    }
}

impl Registro {
    pub fn write_json(&self, out: &mut BytesMut) {
        out.put_slice(b"{\"id\":");
        put_int(out, self.id.0);
        out.put_slice(b",\"cliente_id\":");
        put_int(out, i64::from(self.cliente_id.0));
        out.put_u8(b',');
        self.lancamento.write_fields(out);
        out.put_u8(b'}');
    }
}

impl Page {
    /// The cursor is the last id as a JSON string: opaque to clients, trivially checked here.
    pub fn write_json(&self, out: &mut BytesMut) {
        out.put_slice(b"{\"transactions\":[");
        for (i, r) in self.items.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            r.write_json(out);
        }
        out.put_slice(b"],\"next\":");
        match self.next {
            Some(id) => {
                out.put_u8(b'"');
                put_int(out, id.0);
                out.put_u8(b'"');
            }
            None => out.put_slice(b"null"),
        }
        out.put_u8(b'}');
    }
}

fn put_int(out: &mut BytesMut, n: i64) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string: quotes, backslashes and control characters escaped, the rest as UTF-8.
fn put_str(out: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            out.put_slice(&bytes[start..i]);
            match b {
                b'"' => out.put_slice(b"\\\""),
                b'\\' => out.put_slice(b"\\\\"),
                b'\n' => out.put_slice(b"\\n"),
                b'\r' => out.put_slice(b"\\r"),
                b'\t' => out.put_slice(b"\\t"),
                _ => out.put_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]),
            }
            start = i + 1;
        }
    }
    out.put_slice(&bytes[start..]);
    out.put_u8(b'"');
}

/// RFC 3339 in UTC with microseconds, quoted: `"2024-01-17T02:34:41.217753Z"`.
fn put_timestamp(out: &mut BytesMut, t: DateTime<Utc>) {
    fn digits(buf: &mut [u8], mut n: u32) {
        for slot in buf.iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    let mut b = *b"\"0000-00-00T00:00:00.000000Z\"";
    // Years outside 0..=9999 cannot come from now() or a timestamptz we wrote.
    digits(&mut b[1..5], t.year().clamp(0, 9999) as u32);
    digits(&mut b[6..8], t.month());
    digits(&mut b[9..11], t.day());
    digits(&mut b[12..14], t.hour());
    digits(&mut b[15..17], t.minute());
    // A leap second shows as :59.999999 rather than :60.
    let (second, micros) = match t.nanosecond() / 1000 {
        us if us >= 1_000_000 => (59, 999_999),
        us => (t.second(), us),
    };
    digits(&mut b[18..20], second);
    digits(&mut b[21..27], micros);
    out.put_slice(&b);
}

// --- OpenAPI shapes --------------------------------------------------------------------------
// Answers are written by hand (`write_json`) and bodies parsed by hand (`Transacao::parse`), so
// these structs exist only to describe those JSON forms in the document; the field names and
// types mirror the writers above.

/// `POST /clientes/{id}/transacoes` body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TransacaoBody {
    /// Cents, a JSON integer (`1.0`, `"1"` and `0` are 422).
    #[schema(minimum = 1, example = 1000)]
    valor: i64,
    /// `c` credits, `d` debits.
    #[schema(pattern = "^[cd]$", example = "c")]
    tipo: String,
    /// 1–10 characters.
    #[schema(min_length = 1, max_length = 10, example = "descricao")]
    descricao: String,
}

/// `GET /clientes/{id}/extrato`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ExtratoDoc {
    saldo: SaldoExtratoDoc,
    /// At most 10, newest first.
    ultimas_transacoes: Vec<LancamentoDoc>,
}

/// The balance part of an extrato.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SaldoExtratoDoc {
    #[schema(example = -9098)]
    total: i64,
    /// When the extrato was read (RFC 3339, UTC, microseconds).
    #[schema(format = DateTime, example = "2024-01-17T02:34:41.217753Z")]
    data_extrato: String,
    #[schema(example = 100000)]
    limite: i64,
}

/// One transaction of an extrato.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LancamentoDoc {
    #[schema(example = 10)]
    valor: i64,
    #[schema(pattern = "^[cd]$", example = "c")]
    tipo: String,
    #[schema(example = "descricao")]
    descricao: String,
    #[schema(format = DateTime, example = "2024-01-17T02:34:41.217753Z")]
    realizada_em: String,
}

/// One transaction with its identity (`GET /transactions/{id}`, rows of `/transactions`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RegistroDoc {
    #[schema(example = 1234)]
    id: i64,
    #[schema(example = 1)]
    cliente_id: i32,
    #[schema(example = 10)]
    valor: i64,
    #[schema(pattern = "^[cd]$", example = "c")]
    tipo: String,
    #[schema(example = "descricao")]
    descricao: String,
    #[schema(format = DateTime, example = "2024-01-17T02:34:41.217753Z")]
    realizada_em: String,
}

/// `GET /transactions`: a page, newest first.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PageDoc {
    transactions: Vec<RegistroDoc>,
    /// The cursor for the next page (pass it as `before`), `null` on the last page.
    #[schema(example = "1234")]
    next: Option<String>,
}

/// Each variant's answer, with the status SPEC names.
impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        use AccountsError as E;
        match e {
            E::UnknownAccount => {
                ApiError::from_static(StatusCode::NOT_FOUND, r#"{"error":"account not found"}"#)
            }
            E::UnknownTransaction => ApiError::from_static(
                StatusCode::NOT_FOUND,
                r#"{"error":"transaction not found"}"#,
            ),
            E::InsufficientLimit => ApiError::from_static(
                StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"error":"insufficient limit"}"#,
            ),
            E::BalanceOverflow => ApiError::from_static(
                StatusCode::UNPROCESSABLE_ENTITY,
                r#"{"error":"the balance would overflow"}"#,
            ),
            E::Invalid(i) => ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, i.field, i.message),
            E::BadQuery(i) => ApiError::field(StatusCode::BAD_REQUEST, i.field, i.message),
            E::Unavailable(ref cause) => ApiError::unavailable("PostgreSQL", cause.as_ref()),
            E::Database(ref cause) => ApiError::internal("accounts query", cause),
            E::Corrupt => ApiError::internal("accounts row", &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Transacao, Invalid> {
        Transacao::parse(&mut body.as_bytes().to_vec())
    }

    fn field_of(body: &str) -> &'static str {
        match parse(body) {
            Err(e) => e.field,
            Ok(t) => panic!("{body} was accepted as {t:?}"),
        }
    }

    #[test]
    fn a_deeply_nested_body_is_refused_not_a_stack_overflow() {
        let body = format!(
            r#"{{"valor":1,"tipo":"c","descricao":{}"#,
            "[".repeat(20_000)
        );
        assert_eq!(field_of(&body), "body");
    }

    #[test]
    fn a_well_formed_credit_and_debit_are_accepted() {
        let t = parse(r#"{"valor":1000,"tipo":"c","descricao":"descricao"}"#).unwrap();
        assert_eq!(t.valor.get(), 1000);
        assert_eq!(t.tipo, Tipo::Credito);
        assert_eq!(t.descricao.as_str(), "descricao");
        assert_eq!(t.delta(), 1000);
        let t = parse(r#"{"descricao":"x","tipo":"d","valor":7}"#).unwrap();
        assert_eq!(t.delta(), -7);
    }

    #[test]
    fn every_invalid_valor_is_rejected() {
        for valor in [
            "1.2",
            "1.0",
            "1e3",
            "\"1\"",
            "0",
            "-0",
            "-1",
            "-100",
            "null",
            "true",
            "[1]",
            "{}",
            "18446744073709551615",
        ] {
            let body = format!(r#"{{"valor":{valor},"tipo":"c","descricao":"ok"}}"#);
            assert_eq!(field_of(&body), "valor", "{body}");
        }
        assert_eq!(field_of(r#"{"tipo":"c","descricao":"ok"}"#), "valor");
        // simd-json refuses numbers beyond 64 bits outright: still a 422, named on the body.
        assert!(parse(r#"{"valor":99999999999999999999999,"tipo":"c","descricao":"ok"}"#).is_err());
    }

    #[test]
    fn the_largest_64_bit_valor_is_accepted() {
        let t = parse(r#"{"valor":9223372036854775807,"tipo":"c","descricao":"ok"}"#).unwrap();
        assert_eq!(t.valor.get(), i64::MAX);
    }

    #[test]
    fn every_invalid_tipo_is_rejected() {
        for tipo in [
            "\"x\"", "\"C\"", "\"D\"", "\"cd\"", "\"\"", "\" c\"", "null", "1", "[\"c\"]",
        ] {
            let body = format!(r#"{{"valor":1,"tipo":{tipo},"descricao":"ok"}}"#);
            assert_eq!(field_of(&body), "tipo", "{body}");
        }
        assert_eq!(field_of(r#"{"valor":1,"descricao":"ok"}"#), "tipo");
    }

    #[test]
    fn every_invalid_descricao_is_rejected() {
        for descricao in [
            "\"\"",
            "\"12345678901\"",
            "\"uma descricao longa demais\"",
            "\"ççççççççççç\"",
            "\"a\\u0000b\"",
            "null",
            "1",
            "[\"a\"]",
        ] {
            let body = format!(r#"{{"valor":1,"tipo":"c","descricao":{descricao}}}"#);
            assert_eq!(field_of(&body), "descricao", "{body}");
        }
        assert_eq!(field_of(r#"{"valor":1,"tipo":"c"}"#), "descricao");
    }

    #[test]
    fn a_descricao_of_ten_multibyte_characters_is_accepted() {
        for d in [
            "ççççççççç€",
            "🙂🙂🙂🙂🙂🙂🙂🙂🙂🙂",
            "1234567890",
            "a",
            "a\\\"b",
        ] {
            let body = format!(r#"{{"valor":1,"tipo":"d","descricao":"{d}"}}"#);
            assert!(parse(&body).is_ok(), "{body}");
        }
        let t = parse(r#"{"valor":1,"tipo":"d","descricao":"a\"\u00e9"}"#).unwrap();
        assert_eq!(t.descricao.as_str(), "a\"é");
    }

    #[test]
    fn a_body_that_is_not_a_json_object_is_rejected() {
        for body in [
            "",
            "not json",
            "[]",
            "1",
            "null",
            "{\"valor\":1,",
            "\"valor\"",
            // Unpaired surrogate escapes: refused as a body, whichever half is missing.
            r#"{"valor":1,"tipo":"c","descricao":"a\ud800"}"#,
            r#"{"valor":1,"tipo":"c","descricao":"a\udc00"}"#,
        ] {
            assert_eq!(field_of(body), "body", "{body:?}");
        }
    }

    #[test]
    fn an_id_that_is_not_a_positive_number_is_an_unknown_account() {
        for id in ["", "abc", "-1", "0", "+1", "1.0", " 1", "2147483648", "1e3"] {
            assert!(
                matches!(ClienteId::parse(id), Err(AccountsError::UnknownAccount)),
                "{id:?}"
            );
        }
        assert_eq!(ClienteId::parse("5").unwrap().get(), 5);
        assert_eq!(ClienteId::parse("2147483647").unwrap().get(), i32::MAX);
    }

    #[test]
    fn a_list_query_defaults_to_twenty_newest() {
        let q = ListQuery::parse("").unwrap();
        assert_eq!(
            q,
            ListQuery {
                cliente_id: None,
                limit: 20,
                before: None
            }
        );
        let q = ListQuery::parse("cliente_id=3&limit=100&before=42&other=x").unwrap();
        assert_eq!(q.cliente_id, Some(ClienteId(3)));
        assert_eq!(q.limit, 100);
        assert_eq!(q.before, Some(TransactionId(42)));
        assert_eq!(ListQuery::parse("limit=1").unwrap().limit, 1);
    }

    #[test]
    fn list_query_values_are_percent_decoded() {
        let q = ListQuery::parse("cliente_id=%31&limit=%31%30&before=%34%32").unwrap();
        assert_eq!(q.cliente_id, Some(ClienteId(1)));
        assert_eq!(q.limit, 10);
        assert_eq!(q.before, Some(TransactionId(42)));
        assert_eq!(
            ListQuery::parse("%63liente_id=7").unwrap().cliente_id,
            Some(ClienteId(7)),
            "keys are decoded too"
        );
        assert_eq!(ListQuery::parse("limit=5&limit=6").unwrap().limit, 6);
    }

    #[test]
    fn every_bad_list_parameter_is_named() {
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=-1", "limit"),
            ("limit=abc", "limit"),
            ("limit=", "limit"),
            ("before=abc", "before"),
            ("before=0", "before"),
            ("before=", "before"),
            ("cliente_id=x", "cliente_id"),
            ("cliente_id=0", "cliente_id"),
            // Decoded, then still not a number: "1 ", "-1", "1&x".
            ("cliente_id=1+", "cliente_id"),
            ("cliente_id=%2D1", "cliente_id"),
            ("limit=1%26x", "limit"),
        ] {
            assert_eq!(ListQuery::parse(query).unwrap_err().field, field, "{query}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let t = DateTime::parse_from_rfc3339("2024-01-17T02:34:41.217753Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut out = BytesMut::new();
        put_timestamp(&mut out, t);
        assert_eq!(&out[..], b"\"2024-01-17T02:34:41.217753Z\"");
        let mut out = BytesMut::new();
        put_timestamp(&mut out, DateTime::from_timestamp(0, 5_000).unwrap());
        assert_eq!(&out[..], b"\"1970-01-01T00:00:00.000005Z\"");
    }

    #[test]
    fn strings_are_escaped_as_json() {
        let mut out = BytesMut::new();
        put_str(&mut out, "a\"b\\c\nd\u{1}é");
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn an_extrato_is_the_documented_json() {
        let at = DateTime::from_timestamp(1_705_458_881, 217_753_000).unwrap();
        let e = Extrato {
            total: -9098,
            limite: 100000,
            ultimas: vec![
                Lancamento::from_db(10, "c", "descricao", at).unwrap(),
                Lancamento::from_db(5, "d", "x\"", at).unwrap(),
            ],
        };
        let mut out = BytesMut::new();
        e.write_json(at, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "saldo": {"total": -9098, "data_extrato": "2024-01-17T02:34:41.217753Z", "limite": 100000},
                "ultimas_transacoes": [
                    {"valor": 10, "tipo": "c", "descricao": "descricao", "realizada_em": "2024-01-17T02:34:41.217753Z"},
                    {"valor": 5, "tipo": "d", "descricao": "x\"", "realizada_em": "2024-01-17T02:34:41.217753Z"},
                ]
            })
        );
    }

    #[test]
    fn a_page_carries_its_cursor_as_a_string_or_null() {
        let at = DateTime::from_timestamp(0, 0).unwrap();
        let r = Registro::from_db(7, 2, Lancamento::from_db(1, "d", "a", at).unwrap());
        let mut out = BytesMut::new();
        Page {
            items: vec![r],
            next: Some(TransactionId(7)),
        }
        .write_json(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["next"], "7");
        assert_eq!(v["transactions"][0]["id"], 7);
        assert_eq!(v["transactions"][0]["cliente_id"], 2);
        let mut out = BytesMut::new();
        Page {
            items: vec![],
            next: None,
        }
        .write_json(&mut out);
        assert_eq!(&out[..], br#"{"transactions":[],"next":null}"#);
    }

    #[test]
    fn a_saldo_is_the_documented_json() {
        let mut out = BytesMut::new();
        Saldo {
            limite: 100000,
            saldo: -9098,
        }
        .write_json(&mut out);
        assert_eq!(&out[..], br#"{"limite":100000,"saldo":-9098}"#);
    }
}

/// Hostile input for the accounts parsers: any bytes, transaction bodies of every JSON type,
/// query strings and path ids of every shape, and valid ones generated within SPEC §3's rules.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::json::proptests::{bytes, config, damaged, encode, object_of, query, string, value};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn status(e: AccountsError) -> u16 {
        ApiError::from(e).status().as_u16()
    }

    /// 1–10 characters of any Unicode but NUL.
    fn descricao() -> impl Strategy<Value = String> {
        prop::collection::vec(
            any::<char>().prop_map(|c| if c == '\0' { '0' } else { c }),
            1..=10,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn transacao_like() -> BoxedStrategy<Value> {
        object_of(vec![
            (
                "valor",
                prop_oneof![
                    any::<i64>().prop_map(Value::from),
                    any::<u64>().prop_map(Value::from),
                    (0i64..3).prop_map(Value::from)
                ]
                .boxed(),
            ),
            (
                "tipo",
                prop_oneof![
                    Just(json!("c")),
                    Just(json!("d")),
                    "[cdCD ]{0,2}".prop_map(Value::from)
                ]
                .boxed(),
            ),
            (
                "descricao",
                prop_oneof![descricao(), ".{0,12}", string()]
                    .prop_map(Value::from)
                    .boxed(),
            ),
        ])
    }

    /// SPEC §3's verdict on a body, written independently: the first bad field in the order
    /// valor, tipo, descricao; `None` for a transaction.
    fn verdict(body: &serde_json::Map<String, Value>) -> Option<&'static str> {
        // A float is no integer, whatever its value; above 2^63 - 1 is out of range.
        let valor_ok = match body.get("valor") {
            Some(Value::Number(n)) => {
                n.as_i64().is_some_and(|n| n > 0)
                    || n.as_u64().is_some_and(|n| n > 0 && n <= i64::MAX as u64)
            }
            _ => false,
        };
        let tipo_ok = matches!(body.get("tipo").and_then(Value::as_str), Some("c" | "d"));
        let descricao_ok = body
            .get("descricao")
            .and_then(Value::as_str)
            .is_some_and(|s| {
                (1..=DESCRICAO_MAX_CHARS).contains(&s.chars().count()) && !s.contains('\0')
            });
        [
            ("valor", valor_ok),
            ("tipo", tipo_ok),
            ("descricao", descricao_ok),
        ]
        .into_iter()
        .find(|(_, ok)| !ok)
        .map(|(field, _)| field)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_bytes_are_a_transaction_or_a_422(mut raw in prop_oneof![bytes(), damaged(transacao_like())]) {
            let utf8 = std::str::from_utf8(&raw).is_ok();
            match Transacao::parse(&mut raw) {
                Ok(t) => prop_assert!(utf8 && t.valor.get() > 0),
                Err(e) => prop_assert_eq!(status(AccountsError::Invalid(e)), 422, "{:?}", e),
            }
        }

        /// A body of any field types is a 422 naming the first bad field, or a transaction.
        #[test]
        fn a_body_of_any_field_types_is_422_naming_the_first_bad_field(body in transacao_like()) {
            let Value::Object(fields) = &body else { unreachable!() };
            let got = Transacao::parse(&mut serde_json::to_vec(&body).unwrap());
            match (verdict(fields), got) {
                (None, Ok(t)) => {
                    prop_assert_eq!(t.tipo.as_str(), fields["tipo"].as_str().unwrap());
                    prop_assert_eq!(t.descricao.as_str(), fields["descricao"].as_str().unwrap());
                }
                (Some(field), Err(e)) => {
                    prop_assert_eq!(e.field, field, "{}", body);
                    prop_assert_eq!(status(AccountsError::Invalid(e)), 422);
                }
                (want, got) => prop_assert!(false, "{body}: wanted {want:?}, got {got:?}"),
            }
        }

        #[test]
        fn a_valid_transaction_round_trips(valor in 1..=i64::MAX, credit in any::<bool>(), d in descricao()) {
            let tipo = if credit { "c" } else { "d" };
            let body = json!({"valor": valor, "tipo": tipo, "descricao": d});
            let t = Transacao::parse(&mut serde_json::to_vec(&body).unwrap()).unwrap();
            prop_assert_eq!(t.valor.get(), valor);
            prop_assert_eq!(t.tipo.as_str(), tipo);
            prop_assert_eq!(t.descricao.as_str(), d.as_str());
            prop_assert_eq!(t.delta(), if credit { valor } else { -valor });
        }

        /// Any query string is a page request or a 400 naming the parameter.
        #[test]
        fn any_list_query_is_a_page_or_a_400(q in prop_oneof![query(), string()]) {
            match ListQuery::parse(&q) {
                Ok(page) => prop_assert!((1..=MAX_PAGE).contains(&page.limit)),
                Err(e) => prop_assert_eq!(status(AccountsError::BadQuery(e)), 400),
            }
        }

        #[test]
        fn a_valid_list_query_round_trips_percent_encoded_or_not(
            cliente in prop::option::of(1..=i32::MAX),
            limit in prop::option::of(1..=MAX_PAGE),
            before in prop::option::of(1..=i64::MAX),
            escaped in any::<bool>(),
            junk in prop::option::of((".{0,5}", ".{0,5}")),
        ) {
            let mut pairs = Vec::new();
            if let Some((k, v)) = &junk {
                if !["cliente_id", "limit", "before"].contains(&k.as_str()) {
                    pairs.push(format!("{}={}", encode(k), encode(v)));
                }
            }
            let mut put = |k: &str, v: String| {
                let v = if escaped { v.bytes().map(|b| format!("%{b:02X}")).collect() } else { v };
                pairs.push(format!("{k}={v}"));
            };
            if let Some(c) = cliente { put("cliente_id", c.to_string()) }
            if let Some(l) = limit { put("limit", l.to_string()) }
            if let Some(b) = before { put("before", b.to_string()) }
            let q = ListQuery::parse(&pairs.join("&")).unwrap();
            prop_assert_eq!(q.cliente_id.map(ClienteId::get), cliente);
            prop_assert_eq!(q.limit, limit.unwrap_or(DEFAULT_PAGE));
            prop_assert_eq!(q.before.map(TransactionId::get), before);
        }

        /// Out-of-range, negative and overflowing numbers are refused with a 400 naming them.
        #[test]
        fn an_out_of_range_list_parameter_is_a_400(
            low in i64::MIN..=0,
            high in prop_oneof![i64::from(i32::MAX) + 1..=i64::MAX, 101..=i64::from(i32::MAX)],
            huge in "[1-9][0-9]{19,30}",
        ) {
            let mut cases = vec![
                ("cliente_id", low.to_string()), ("limit", low.to_string()), ("before", low.to_string()),
                ("cliente_id", huge.clone()), ("limit", huge.clone()), ("before", huge),
                ("limit", high.to_string()),
            ];
            if high > i64::from(i32::MAX) {
                cases.push(("cliente_id", high.to_string()));
            }
            for (key, v) in cases {
                let q = format!("{key}={v}");
                let e = ListQuery::parse(&q).unwrap_err();
                prop_assert_eq!(e.field, key, "{}", q);
                prop_assert_eq!(status(AccountsError::BadQuery(e)), 400);
            }
        }

        /// A path id is an account or a 404, whatever it is.
        #[test]
        fn any_account_id_is_an_account_or_a_404(s in prop_oneof![string(), "[0-9]{1,25}", "-[0-9]{1,12}"]) {
            match ClienteId::parse(&s) {
                Ok(id) => prop_assert_eq!(id.get().to_string(), s.trim_start_matches('0')),
                Err(e) => prop_assert_eq!(status(e), 404),
            }
            let _ = TransactionId::parse(&s);
        }

        #[test]
        fn a_descricao_of_any_text_is_kept_exactly_when_it_fits(s in prop_oneof![descricao(), string(), value().prop_map(|v| v.to_string())]) {
            let fits = (1..=DESCRICAO_MAX_CHARS).contains(&s.chars().count()) && !s.contains('\0');
            match Descricao::parse(&s) {
                Some(d) => prop_assert!(fits && d.as_str() == s),
                None => prop_assert!(!fits),
            }
        }
    }
}
