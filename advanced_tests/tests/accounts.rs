//! Accounts through nginx and across replicas. Accounts 1–5 are shared with anything else using
//! the stack, so no test assumes a fresh balance: each reads the extrato first, works in
//! deltas, and credits back what it debited. Each test uses its own account so they can run at
//! once.
use std::sync::Barrier;

use advanced_tests::{get, post, stack, Value};

fn extrato(url: &str) -> Value {
    let r = get(url);
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

fn total(url: &str) -> i64 {
    extrato(url)["saldo"]["total"].as_i64().unwrap()
}

fn body(valor: i64, tipo: &str, descricao: &str) -> String {
    format!(r#"{{"valor":{valor},"tipo":"{tipo}","descricao":"{descricao}"}}"#)
}

#[test]
fn the_contract_holds_through_nginx() {
    let s = stack();
    let url = s.at("/clientes/1/transacoes");
    let before = total(&s.at("/clientes/1/extrato"));
    let r = post(&url, &body(1, "c", "toma"));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r
        .content_type
        .as_deref()
        .unwrap_or_default()
        .contains("application/json"));
    let v = r.json();
    assert_eq!(v["limite"], 100000);
    assert_eq!(v["saldo"], before + 1);
    let r = post(&url, &body(1, "d", "devolve"));
    assert_eq!(r.status, 200, "{r:?}");
    let e = extrato(&s.at("/clientes/1/extrato"));
    assert_eq!(e["saldo"]["limite"], 100000);
    let rows = e["ultimas_transacoes"].as_array().unwrap();
    assert!(rows.len() <= 10);
    for invalid in [
        r#"{"valor":1.2,"tipo":"d","descricao":"devolve"}"#,
        r#"{"valor":1,"tipo":"x","descricao":"devolve"}"#,
        r#"{"valor":1,"tipo":"c","descricao":"123456789 e mais um pouco"}"#,
        r#"{"valor":1,"tipo":"c","descricao":""}"#,
        r#"{"valor":1,"tipo":"c","descricao":null}"#,
        r#"{"valor":"1","tipo":"c","descricao":"x"}"#,
    ] {
        let r = post(&url, invalid);
        assert_eq!(r.status, 422, "{invalid}: {r:?}");
    }
    assert_eq!(
        post(&s.at("/clientes/6/transacoes"), &body(1, "c", "x")).status,
        404
    );
    assert_eq!(get(&s.at("/clientes/6/extrato")).status, 404);
    assert_eq!(get(&s.at("/clientes/abc/extrato")).status, 404);
    let page = get(&s.at("/transactions?cliente_id=1&limit=2"));
    assert_eq!(page.status, 200, "{page:?}");
    let page = page.json();
    assert_eq!(page["transactions"].as_array().unwrap().len(), 2);
    assert_eq!(get(&s.at("/transactions?limit=1000")).status, 400);
}

#[test]
fn concurrent_debits_split_across_both_replicas_never_pass_the_limit() {
    let s = stack();
    assert!(s.replica_count() >= 2, "needs two replicas");
    // Account 2 (limit 80000): ten debits can fit, eleven cannot, whatever the balance now is.
    // A load run (accounts.js) may have left it at its limit: lend it what ten debits need, as
    // a credit, and take the loan back at the end.
    let found = total(&s.at("/clientes/2/extrato"));
    let loan = (1_000 - (found + 80000)).max(0);
    if loan > 0 {
        let r = post(
            &s.at("/clientes/2/transacoes"),
            &body(loan, "c", "emprestimo"),
        );
        assert_eq!(r.status, 200, "{r:?}");
    }
    let before = found + loan;
    let room = before + 80000;
    let valor = room / 10;
    let fit = room / valor;
    let barrier = Barrier::new(40);
    let results: Vec<(u16, Option<i64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                let url = if i % 2 == 0 {
                    s.replica(0, "/clientes/2/transacoes")
                } else {
                    s.replica(1, "/clientes/2/transacoes")
                };
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let r = post(&url, &body(valor, "d", "rival"));
                    let saldo = (r.status == 200).then(|| r.json()["saldo"].as_i64().unwrap());
                    (r.status, saldo)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = results.iter().filter(|r| r.0 == 200).count() as i64;
    assert!(
        results.iter().all(|r| r.0 == 200 || r.0 == 422),
        "{results:?}"
    );
    assert_eq!(accepted, fit, "{results:?}");
    for (_, saldo) in &results {
        if let Some(saldo) = saldo {
            assert!(*saldo >= -80000, "{results:?}");
        }
    }
    // Both replicas and nginx see the same balance: before minus exactly the accepted debits.
    let expected = before - accepted * valor;
    for url in [
        s.replica(0, "/clientes/2/extrato"),
        s.replica(1, "/clientes/2/extrato"),
        s.at("/clientes/2/extrato"),
    ] {
        assert_eq!(total(&url), expected, "{url}");
    }
    // Leave the account as found: the accepted debits back, the loan repaid.
    let back = accepted * valor - loan;
    if back != 0 {
        let tipo = if back > 0 { "c" } else { "d" };
        let r = post(
            &s.at("/clientes/2/transacoes"),
            &body(back.abs(), tipo, "estorno"),
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["saldo"].as_i64(), Some(found), "{r:?}");
    }
}

#[test]
fn mixed_traffic_on_both_replicas_sums_to_the_accepted_transactions() {
    let s = stack();
    let before = total(&s.at("/clientes/4/extrato"));
    let deltas: Vec<i64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let base = s.replica(t % 2, "/clientes/4/transacoes");
                scope.spawn(move || {
                    (0..25)
                        .map(|i| {
                            let (tipo, valor, sign) = if (t + i) % 2 == 0 {
                                ("c", 3 + i as i64, 1)
                            } else {
                                ("d", 5 + i as i64, -1)
                            };
                            let r = post(&base, &body(valor, tipo, "misto"));
                            match r.status {
                                200 => sign * valor,
                                422 => 0,
                                _ => panic!("{r:?}"),
                            }
                        })
                        .sum::<i64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sum: i64 = deltas.iter().sum();
    let after = extrato(&s.replica(1, "/clientes/4/extrato"));
    assert_eq!(after["saldo"]["total"], before + sum);
    assert_eq!(total(&s.replica(0, "/clientes/4/extrato")), before + sum);
    assert_eq!(after["ultimas_transacoes"].as_array().unwrap().len(), 10);
    if sum != 0 {
        let (tipo, valor) = if sum < 0 { ("c", -sum) } else { ("d", sum) };
        assert_eq!(
            post(
                &s.at("/clientes/4/transacoes"),
                &body(valor, tipo, "estorno")
            )
            .status,
            200
        );
    }
}

#[test]
fn a_credit_is_first_in_every_extrato_read_right_after_it() {
    let s = stack();
    let r = post(&s.at("/clientes/3/transacoes"), &body(1, "c", "danada"));
    assert_eq!(r.status, 200, "{r:?}");
    let saldo = r.json()["saldo"].clone();
    for i in 0..4 {
        let e = extrato(&s.replica(i % 2, "/clientes/3/extrato"));
        assert_eq!(e["ultimas_transacoes"][0]["descricao"], "danada");
        assert_eq!(e["ultimas_transacoes"][0]["tipo"], "c");
        assert_eq!(e["saldo"]["total"], saldo);
    }
    assert_eq!(
        post(&s.at("/clientes/3/transacoes"), &body(1, "d", "estorno")).status,
        200
    );
}
