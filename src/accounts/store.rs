//! The accounts domain's SQL. Each operation is one statement and one round trip. The
//! transaction is prepared once per pooled connection (`prepare_cached`); the reads that walk
//! `transactions` are planned afresh on every call (`query_typed`: PostgreSQL's unnamed
//! statement, parse + bind + execute in one round trip), because a prepared statement keeps,
//! after five calls, a generic plan costed with the table as it was then. Planned on a fresh
//! contest database (no rows), the extrato's was a bitmap scan plus a sort of every row of the
//! account — 6.6 ms at 60 000 rows, growing with the table — and nothing re-plans it unless
//! ANALYZE runs (autovacuum may be off, as it is on the machine the benchmarks share). Under
//! the accounts profile that made the extrato the slowest request by far (p95 6.8 ms, against
//! 0.2 ms once planned for the table's size).
//!
//! Consistency comes from PostgreSQL alone: the transaction statement's conditional `UPDATE`
//! takes the account's row lock, re-checks `saldo + delta >= -limite` against the latest
//! committed balance (READ COMMITTED re-evaluates the WHERE after waiting for a concurrent
//! writer), and inserts the transaction only when that update returned a row — all in one
//! implicit transaction. No application lock, no cache.
use deadpool_postgres::{Object, Pool};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use super::model::{
    AccountsError, ClienteId, Extrato, Lancamento, ListQuery, Page, Registro, Saldo, Transacao,
    TransactionId, EXTRATO_SIZE,
};

/// Applies a credit or debit. Returns one row when the account exists: `saldo`/`limite` after
/// the change, or NULLs when the debit would pass the limit (the `UPDATE` matched nothing, so
/// nothing was inserted either). No row means no such account. `accounts a` in the final SELECT
/// reads the statement's snapshot, which is enough to tell "exists" since accounts are never
/// deleted while serving.
///
/// `realizada_em` is `clock_timestamp()`, read when the insert runs — after the `UPDATE` got the
/// row lock — not the column's default `now()`, which is the statement's start, before any wait
/// for that lock: under contention a later id could then carry an earlier time, and the
/// extrato's newest-first rows would go back in time.
const TRANSACT: &str = "\
WITH updated AS (
    UPDATE accounts SET saldo = saldo + $2
    WHERE id = $1 AND saldo + $2 >= -limite
    RETURNING saldo, limite
), recorded AS (
    INSERT INTO transactions (cliente_id, valor, tipo, descricao, realizada_em)
    SELECT $1, $3, $4, $5, clock_timestamp() FROM updated
)
SELECT u.saldo, u.limite FROM accounts a LEFT JOIN updated u ON true WHERE a.id = $1";

/// Balance, limit and the latest transactions in one snapshot, so `total` always agrees with
/// the rows shown. One row per transaction (NULL columns when there is none); no row means no
/// such account. The `LIMIT 10` is `model::EXTRATO_SIZE`, inlined so the planner sees a constant.
const EXTRATO: &str = "\
SELECT a.saldo, a.limite, t.valor, t.tipo, t.descricao, t.realizada_em
FROM accounts a
LEFT JOIN LATERAL (
    SELECT id, valor, tipo, descricao, realizada_em FROM transactions
    WHERE cliente_id = a.id ORDER BY id DESC LIMIT 10
) t ON true
WHERE a.id = $1
ORDER BY t.id DESC";

/// Two statements rather than one with `$1 IS NULL OR …`: each gets a plan that walks its own
/// index backwards (the account index, or the primary key).
const LIST_BY_ACCOUNT: &str = "\
SELECT id, cliente_id, valor, tipo, descricao, realizada_em FROM transactions
WHERE cliente_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3";
const LIST_ALL: &str = "\
SELECT id, cliente_id, valor, tipo, descricao, realizada_em FROM transactions
WHERE id < $1 ORDER BY id DESC LIMIT $2";
const FIND: &str = "\
SELECT id, cliente_id, valor, tipo, descricao, realizada_em FROM transactions WHERE id = $1";

/// Prepared on every connection a worker opens at start (`infra::postgres::warm`).
pub const PREPARED: &[&str] = &[TRANSACT];

/// Empties the transactions, removes opened (test) accounts and puts 1–5 back to the seed.
pub const RESET_SQL: &str = "\
TRUNCATE transactions RESTART IDENTITY;
DELETE FROM accounts WHERE id NOT BETWEEN 1 AND 5;
INSERT INTO accounts (id, limite, saldo) VALUES
    (1, 100000, 0), (2, 80000, 0), (3, 1000000, 0), (4, 10000000, 0), (5, 500000, 0)
ON CONFLICT (id) DO UPDATE SET limite = EXCLUDED.limite, saldo = 0;";

async fn client(pool: &Pool) -> Result<Object, AccountsError> {
    crate::infra::postgres::checkout(pool)
        .await
        .map_err(|e| AccountsError::Unavailable(Box::new(e)))
}

/// A lost connection is worth a retry (503); anything else PostgreSQL says is our bug (500).
fn db(e: tokio_postgres::Error) -> AccountsError {
    if crate::infra::postgres::is_transient(&e) {
        AccountsError::Unavailable(Box::new(e))
    } else {
        AccountsError::Database(e)
    }
}

pub async fn transact(pool: &Pool, id: ClienteId, t: &Transacao) -> Result<Saldo, AccountsError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(TRANSACT).await.map_err(db)?;
    let rows = client
        .query(
            &stmt,
            &[
                &id.get(),
                &t.delta(),
                &t.valor.get(),
                &t.tipo.as_str(),
                &t.descricao.as_str(),
            ],
        )
        .await
        .map_err(|e| match e.code() {
            // saldo + delta beyond ±2^63: for a debit that is simply past the limit.
            Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) if t.delta() < 0 => {
                AccountsError::InsufficientLimit
            }
            Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) => AccountsError::BalanceOverflow,
            // Not `db(e)`: a connection lost after the statement was sent leaves the outcome
            // unknown, and a 503 would make nginx replay the POST on the other replica
            // (`proxy_next_upstream … http_503 non_idempotent`), possibly applying it twice.
            _ => AccountsError::Database(e),
        })?;
    let row = rows.first().ok_or(AccountsError::UnknownAccount)?;
    let saldo: Option<i64> = row.try_get(0).map_err(db)?;
    let limite: Option<i64> = row.try_get(1).map_err(db)?;
    match (saldo, limite) {
        (Some(saldo), Some(limite)) => Ok(Saldo { limite, saldo }),
        _ => Err(AccountsError::InsufficientLimit),
    }
}

pub async fn extrato(pool: &Pool, id: ClienteId) -> Result<Extrato, AccountsError> {
    let client = client(pool).await?;
    let rows = client
        .query_typed(EXTRATO, &[(&id.get(), Type::INT4)])
        .await
        .map_err(db)?;
    let first = rows.first().ok_or(AccountsError::UnknownAccount)?;
    let mut extrato = Extrato {
        total: first.try_get(0).map_err(db)?,
        limite: first.try_get(1).map_err(db)?,
        ultimas: Vec::with_capacity(EXTRATO_SIZE),
    };
    for row in &rows {
        let Some(valor) = row.try_get::<_, Option<i64>>(2).map_err(db)? else {
            break;
        };
        extrato.ultimas.push(lancamento(
            valor,
            row.try_get(3).map_err(db)?,
            row.try_get(4).map_err(db)?,
            row.try_get(5).map_err(db)?,
        )?);
    }
    Ok(extrato)
}

pub async fn list(pool: &Pool, q: &ListQuery) -> Result<Page, AccountsError> {
    let client = client(pool).await?;
    let before = q.before.map_or(i64::MAX, TransactionId::get);
    // One row more than asked tells whether another page exists.
    let fetch = i64::from(q.limit) + 1;
    let rows = match q.cliente_id {
        Some(id) => {
            client
                .query_typed(
                    LIST_BY_ACCOUNT,
                    &[
                        (&id.get(), Type::INT4),
                        (&before, Type::INT8),
                        (&fetch, Type::INT8),
                    ],
                )
                .await
        }
        None => {
            client
                .query_typed(LIST_ALL, &[(&before, Type::INT8), (&fetch, Type::INT8)])
                .await
        }
    }
    .map_err(db)?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows.iter().take(usize::from(q.limit)) {
        items.push(registro(row)?);
    }
    let next = (rows.len() > usize::from(q.limit))
        .then(|| items.last().map(|r| r.id))
        .flatten();
    Ok(Page { items, next })
}

pub async fn find(pool: &Pool, id: TransactionId) -> Result<Registro, AccountsError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(FIND).await.map_err(db)?;
    let row = client
        .query_opt(&stmt, &[&id.get()])
        .await
        .map_err(db)?
        .ok_or(AccountsError::UnknownTransaction)?;
    registro(&row)
}

/// Opens a new account (ids from 1000 up) with balance 0. Not exposed over HTTP: tests use it
/// to get accounts of their own, so they run in parallel without touching accounts 1–5.
pub async fn open_account(pool: &Pool, limite: i64) -> Result<ClienteId, AccountsError> {
    let client = client(pool).await?;
    let row = client
        .query_one(
            "INSERT INTO accounts (id, limite) VALUES (nextval('accounts_opened_id'), $1) RETURNING id",
            &[&limite],
        )
        .await
        .map_err(db)?;
    Ok(ClienteId::from_db(row.try_get(0).map_err(db)?))
}

fn registro(row: &tokio_postgres::Row) -> Result<Registro, AccountsError> {
    Ok(Registro::from_db(
        row.try_get(0).map_err(db)?,
        row.try_get(1).map_err(db)?,
        lancamento(
            row.try_get(2).map_err(db)?,
            row.try_get(3).map_err(db)?,
            row.try_get(4).map_err(db)?,
            row.try_get(5).map_err(db)?,
        )?,
    ))
}

fn lancamento(
    valor: i64,
    tipo: &str,
    descricao: &str,
    realizada_em: chrono::DateTime<chrono::Utc>,
) -> Result<Lancamento, AccountsError> {
    Lancamento::from_db(valor, tipo, descricao, realizada_em).ok_or(AccountsError::Corrupt)
}
