//! Accounts in-process against the real PostgreSQL. Every test opens accounts of its own (ids
//! from 1000), so the tests run in parallel and never disturb the seeded accounts 1–5.
mod common;

use std::sync::{Barrier, OnceLock};

use arena::accounts::store;
use arena::config::Config;
use arena::infra;
use arena::server::TestServer;
use serde_json::{json, Value};

/// Small pools: four engineers share one PostgreSQL (max_connections 100).
const TEST_POOL: usize = 6;

fn config() -> Config {
    static MIGRATED: OnceLock<()> = OnceLock::new();
    let mut config = Config::from_env();
    config.pg_pool_size = TEST_POOL;
    MIGRATED.get_or_init(|| {
        infra::block_on(infra::postgres::migrate(&config.database_url)).expect("migrate");
    });
    config
}

fn app() -> TestServer {
    TestServer::start(config())
}

/// A fresh account with balance 0 and `limite`.
fn open_account(limite: i64) -> i32 {
    let url = config().database_url;
    infra::block_on(async move {
        let pool = infra::postgres::pool(&url, 1).expect("pool");
        store::open_account(&pool, limite)
            .await
            .expect("open account")
            .get()
    })
}

fn call(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let req = ureq::request(method, url);
    let r = match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    };
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// `base` is `app.url("")`: a plain string, since the server handle cannot cross threads.
fn transacao(base: &str, id: i32, valor: i64, tipo: &str, descricao: &str) -> (u16, Value) {
    let body = json!({"valor": valor, "tipo": tipo, "descricao": descricao}).to_string();
    let (status, body) = call(
        "POST",
        &format!("{base}/clientes/{id}/transacoes"),
        Some(&body),
    );
    (status, serde_json::from_str(&body).unwrap())
}

fn extrato(app: &TestServer, id: i32) -> Value {
    let (status, body) = call("GET", &app.url(&format!("/clientes/{id}/extrato")), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn two_hundred_concurrent_debits_of_one_on_a_limit_of_one_hundred_accept_exactly_one_hundred() {
    let app = app();
    let base = app.url("");
    let id = open_account(100);
    let barrier = Barrier::new(200);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..200)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    transacao(&base, id, 1, "d", "debito").0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 100);
    assert_eq!(statuses.iter().filter(|&&s| s == 422).count(), 100);
    let e = extrato(&app, id);
    assert_eq!(e["saldo"]["total"], -100);
    assert_eq!(e["saldo"]["limite"], 100);
}

#[test]
fn concurrent_credits_and_debits_leave_the_sum_of_the_accepted_ones() {
    let app = app();
    let base = app.url("");
    let id = open_account(500);
    let barrier = Barrier::new(120);
    let accepted: i64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..120i64)
            .map(|i| {
                let (base, barrier) = (&base, &barrier);
                s.spawn(move || {
                    // Debits outweigh credits so that some are refused at the limit.
                    let (tipo, valor, sign) = if i % 3 == 0 {
                        ("c", 7 + i % 5, 1)
                    } else {
                        ("d", 11 + i % 7, -1)
                    };
                    barrier.wait();
                    let (status, body) = transacao(base, id, valor, tipo, "misto");
                    match status {
                        200 => {
                            let saldo = body["saldo"].as_i64().unwrap();
                            assert!(saldo >= -500, "{body}");
                            sign * valor
                        }
                        422 => {
                            assert_eq!(tipo, "d", "a credit was refused: {body}");
                            0
                        }
                        other => panic!("unexpected {other}: {body}"),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let e = extrato(&app, id);
    assert_eq!(e["saldo"]["total"], accepted);
    assert!(accepted >= -500);
}

#[test]
fn a_debit_landing_exactly_at_the_limit_is_accepted_and_one_more_cent_is_not() {
    let app = app();
    let base = app.url("");
    let id = open_account(1000);
    assert_eq!(
        transacao(&base, id, 1000, "d", "tudo"),
        (200, json!({"limite": 1000, "saldo": -1000}))
    );
    let (status, body) = transacao(&base, id, 1, "d", "mais");
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        extrato(&app, id)["ultimas_transacoes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        transacao(&base, id, 5, "c", "volta"),
        (200, json!({"limite": 1000, "saldo": -995}))
    );
}

#[test]
fn the_extrato_lists_the_latest_ten_newest_first() {
    let app = app();
    let base = app.url("");
    let id = open_account(0);
    let e = extrato(&app, id);
    assert_eq!(e["saldo"]["total"], 0);
    assert_eq!(e["ultimas_transacoes"], json!([]));
    for n in 1..=12 {
        assert_eq!(transacao(&base, id, n, "c", &format!("t{n}")).0, 200);
    }
    let e = extrato(&app, id);
    assert_eq!(e["saldo"]["total"], 78);
    let rows = e["ultimas_transacoes"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    let valores: Vec<i64> = rows.iter().map(|r| r["valor"].as_i64().unwrap()).collect();
    assert_eq!(valores, (3..=12).rev().collect::<Vec<_>>());
    assert_eq!(rows[0]["descricao"], "t12");
    assert_eq!(rows[0]["tipo"], "c");
    let stamps: Vec<&str> = rows
        .iter()
        .map(|r| r["realizada_em"].as_str().unwrap())
        .collect();
    for s in &stamps {
        // 2024-01-17T02:34:41.217753Z
        assert_eq!(s.len(), 27, "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[19] == b'.', "{s}");
    }
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "{stamps:?}");
}

#[test]
fn every_invalid_transaction_is_refused_and_changes_nothing() {
    let app = app();
    let id = open_account(100);
    let url = app.url(&format!("/clientes/{id}/transacoes"));
    for body in [
        r#"{"valor":1.2,"tipo":"d","descricao":"x"}"#,
        r#"{"valor":"1","tipo":"d","descricao":"x"}"#,
        r#"{"valor":0,"tipo":"d","descricao":"x"}"#,
        r#"{"valor":-5,"tipo":"c","descricao":"x"}"#,
        r#"{"valor":null,"tipo":"d","descricao":"x"}"#,
        r#"{"tipo":"d","descricao":"x"}"#,
        r#"{"valor":1,"tipo":"x","descricao":"x"}"#,
        r#"{"valor":1,"tipo":null,"descricao":"x"}"#,
        r#"{"valor":1,"tipo":"d","descricao":""}"#,
        r#"{"valor":1,"tipo":"d","descricao":null}"#,
        r#"{"valor":1,"tipo":"d","descricao":"1234567890123456789012345"}"#,
        r#"{"valor":1,"tipo":"d"}"#,
        "not json",
        "",
    ] {
        let (status, answer) = call("POST", &url, Some(body));
        assert_eq!(status, 422, "{body} -> {answer}");
        assert!(serde_json::from_str::<Value>(&answer).unwrap()["error"].is_string());
    }
    assert_eq!(extrato(&app, id)["saldo"]["total"], 0);
    assert_eq!(extrato(&app, id)["ultimas_transacoes"], json!([]));
}

#[test]
fn unknown_or_non_numeric_accounts_are_not_found() {
    let app = app();
    for path in [
        "/clientes/999999999",
        "/clientes/abc",
        "/clientes/0",
        "/clientes/-1",
    ] {
        let (status, _) = call(
            "POST",
            &app.url(&format!("{path}/transacoes")),
            Some(r#"{"valor":1,"tipo":"c","descricao":"x"}"#),
        );
        assert_eq!(status, 404, "{path}");
        let (status, body) = call("GET", &app.url(&format!("{path}/extrato")), None);
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("\"error\""));
    }
}

#[test]
fn transactions_pages_follow_the_cursor_newest_first_to_the_end() {
    let app = app();
    let base = app.url("");
    let id = open_account(0);
    for n in 1..=7 {
        assert_eq!(transacao(&base, id, n, "c", "pagina").0, 200);
    }
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/transactions?cliente_id={id}&limit=3");
        if let Some(cursor) = &next {
            path.push_str(&format!("&before={cursor}"));
        }
        let (status, body) = call("GET", &app.url(&path), None);
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        for t in v["transactions"].as_array().unwrap() {
            assert_eq!(t["cliente_id"], id);
            seen.push(t["valor"].as_i64().unwrap());
        }
        pages += 1;
        match &v["next"] {
            Value::String(s) => next = Some(s.clone()),
            Value::Null => break,
            other => panic!("next is {other}"),
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=7).rev().collect::<Vec<_>>());

    // One transaction by id, and the default page size over every account.
    let (_, body) = call(
        "GET",
        &app.url(&format!("/transactions?cliente_id={id}&limit=1")),
        None,
    );
    let first = serde_json::from_str::<Value>(&body).unwrap()["transactions"][0].clone();
    let (status, body) = call(
        "GET",
        &app.url(&format!("/transactions/{}", first["id"])),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), first);
    // Query values are percent-decoded: every digit of the id escaped is the same account.
    let escaped: String = id
        .to_string()
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let (status, body) = call(
        "GET",
        &app.url(&format!("/transactions?cliente_id={escaped}&limit=%31")),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["transactions"][0],
        first
    );
    let (status, body) = call("GET", &app.url("/transactions"), None);
    assert_eq!(status, 200);
    let all = serde_json::from_str::<Value>(&body).unwrap();
    assert!(all["transactions"].as_array().unwrap().len() <= 20);
}

#[test]
fn bad_list_parameters_are_400_and_unknown_transactions_404() {
    let app = app();
    for query in [
        "limit=0",
        "limit=101",
        "limit=x",
        "before=abc",
        "before=-3",
        "cliente_id=x",
    ] {
        let (status, body) = call("GET", &app.url(&format!("/transactions?{query}")), None);
        assert_eq!(status, 400, "{query}: {body}");
        assert!(serde_json::from_str::<Value>(&body).unwrap()["field"].is_string());
    }
    for path in [
        "/transactions/9223372036854775807",
        "/transactions/abc",
        "/transactions/0",
    ] {
        assert_eq!(call("GET", &app.url(path), None).0, 404, "{path}");
    }
}

#[test]
fn realizada_em_is_read_after_the_wait_for_the_account_lock() {
    let app = app();
    let base = app.url("");
    let id = open_account(0);
    let url = config().database_url;
    // Hold the account's row lock, let a transaction queue behind it, then note PostgreSQL's
    // clock just before releasing: the queued transaction's time must be after that, or ids
    // (assigned under the lock) and times could disagree under contention.
    let released_at: chrono::DateTime<chrono::Utc> = infra::block_on(async move {
        let mut pg = infra::postgres::connect(&url).await.expect("connect");
        let tx = pg.transaction().await.unwrap();
        tx.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", &[&id])
            .await
            .unwrap();
        let post = std::thread::spawn(move || transacao(&base, id, 5, "c", "esperou"));
        common::until_blocked_by(&tx, "the POST").await;
        let at = tx
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .unwrap()
            .get(0);
        tx.commit().await.unwrap();
        assert_eq!(post.join().unwrap().0, 200);
        at
    });
    let e = extrato(&app, id);
    let realizada_em = e["ultimas_transacoes"][0]["realizada_em"].as_str().unwrap();
    let realizada_em = chrono::DateTime::parse_from_rfc3339(realizada_em).unwrap();
    assert!(
        realizada_em > released_at,
        "realizada_em {realizada_em} is before the lock was released at {released_at}"
    );
}

/// A worker's pool is opened and prepared before the first burst needs it, and never past its
/// size; an unreachable PostgreSQL leaves the pool empty instead of failing.
#[test]
fn warm_opens_the_pool_ahead_of_requests() {
    let url = config().database_url;
    infra::block_on(async move {
        let pool = infra::postgres::pool(&url, 3).expect("pool");
        infra::postgres::warm(pool.clone(), 5, &[store::PREPARED]).await;
        let status = pool.status();
        assert_eq!((status.size, status.available), (3, 3), "{status:?}");

        let nowhere =
            infra::postgres::pool("postgres://postgres@127.0.0.1:1/arena", 2).expect("pool");
        infra::postgres::warm(nowhere.clone(), 2, &[store::PREPARED]).await;
        assert_eq!(nowhere.status().size, 0);
    });
}
