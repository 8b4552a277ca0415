//! Hostile input through nginx against the running stack (issue 10, item 4): invalid UTF-8
//! bodies, SQL metacharacters and long terms in a search, huge and negative ids, raw garbage,
//! and slow clients — every answer a 4xx with a JSON body (or the contract's success), never a
//! 5xx, and a client that stops mid-request is let go within a bounded time.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use advanced_tests::chat::User;
use advanced_tests::{get, stack, Value};

/// `body` as it is (any bytes), JSON content type, optional bearer; status and body text.
fn send_bytes(method: &str, url: &str, bearer: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut req = ureq::request(method, url)
        .timeout(Duration::from_secs(30))
        .set("content-type", "application/json");
    if let Some(b) = bearer {
        req = req.set("authorization", b);
    }
    match req.send_bytes(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

fn assert_json_error(what: &str, status: u16, body: &str, allowed: &[u16]) {
    assert!(allowed.contains(&status), "{what}: {status} {body}");
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
    assert!(v["error"].is_string(), "{what}: {body}");
}

fn percent(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn invalid_utf8_bodies_are_a_json_400_or_422_through_nginx() {
    let s = stack();
    let user = User::new("hostile-utf8");
    let bearer = user.bearer();
    let routes: [(&str, String, Option<&str>, &str); 8] = [
        (
            "POST",
            "/pessoas".into(),
            None,
            r#"{"apelido":"@","nome":"n","nascimento":"2000-01-01"}"#,
        ),
        (
            "POST",
            "/clientes/1/transacoes".into(),
            None,
            r#"{"valor":1,"tipo":"c","descricao":"@"}"#,
        ),
        (
            "POST",
            "/users".into(),
            None,
            r#"{"name":"@","email":"a@example.com","password":"x"}"#,
        ),
        (
            "POST",
            "/register".into(),
            None,
            r#"{"username":"@","password":"x"}"#,
        ),
        (
            "POST",
            "/login".into(),
            None,
            r#"{"username":"@","password":"x"}"#,
        ),
        (
            "PUT",
            format!("/users/{}", user.id),
            Some(&bearer),
            r#"{"name":"@"}"#,
        ),
        (
            "POST",
            "/create-chat".into(),
            Some(&bearer),
            r#"{"groupName":"@","creatorId":1}"#,
        ),
        (
            "POST",
            "/messages".into(),
            Some(&bearer),
            r#"{"userId":1,"groupId":1,"content":"@"}"#,
        ),
    ];
    for (method, path, auth, template) in routes {
        for bad in [
            &b"\xff"[..],
            b"\xc3\x28",
            b"\xed\xa0\x80",
            b"\xc0\xaf",
            b"Jos\xe9",
        ] {
            let (head, tail) = template.split_once('@').unwrap();
            let body = [head.as_bytes(), bad, tail.as_bytes()].concat();
            let (status, answer) = send_bytes(method, &s.at(&path), auth, &body);
            assert_json_error(
                &format!("{method} {path} {bad:?}"),
                status,
                &answer,
                &[400, 422],
            );
        }
    }
}

#[test]
fn sql_metacharacters_and_a_7_kb_term_are_searched_through_nginx() {
    let s = stack();
    for t in [
        "' OR 1=1 --",
        "%",
        "_",
        "\\",
        "%_\\",
        ";DROP TABLE pessoas;",
        "'); DROP TABLE pessoas; --",
        "\u{FFFD}",
    ] {
        let r = get(&s.at(&format!("/pessoas?t={}", percent(t))));
        assert_eq!(r.status, 200, "t={t:?}: {r:?}");
        let people = r.json();
        for p in people
            .as_array()
            .unwrap_or_else(|| panic!("t={t:?}: {r:?}"))
        {
            let text = p.to_string().to_lowercase();
            let escaped = serde_json::to_string(&t.to_lowercase()).unwrap();
            assert!(
                text.contains(escaped.trim_matches('"')),
                "t={t:?} found {p} without the term"
            );
        }
    }
    // Unencoded `%` that does not start an escape, and escapes of invalid UTF-8: decoded
    // leniently, searched, answered.
    for q in ["t=%", "t=%ZZ", "t=%FF%FE", "t=100%25"] {
        let r = get(&s.at(&format!("/pessoas?{q}")));
        assert_eq!(r.status, 200, "{q}: {r:?}");
        assert!(r.json().is_array(), "{q}: {r:?}");
    }
    // nginx's default request-line buffer is 8 KB: 7 KB of term fits.
    let r = get(&s.at(&format!("/pessoas?t={}", "x".repeat(7 * 1024))));
    assert_eq!((r.status, r.json()), (200, serde_json::json!([])), "{r:?}");
    // Still a table to count.
    let r = get(&s.at("/contagem-pessoas"));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.trim().parse::<i64>().is_ok(), "{r:?}");
}

#[test]
fn a_10_kb_search_term_is_answered_through_nginx() {
    let s = stack();
    for t in ["x".repeat(10 * 1024), "%_'".repeat(3414)] {
        let r = get(&s.at(&format!("/pessoas?t={}", percent(&t))));
        assert_eq!(r.status, 200, "{} bytes of term: {r:?}", t.len());
        assert!(r.json().is_array());
    }
}

#[test]
fn huge_negative_and_overflowing_ids_are_4xx_through_nginx() {
    let s = stack();
    for (path, want) in [
        ("/users/99999999999999999999", 404),
        ("/users/-1", 404),
        ("/transactions/99999999999999999999", 404),
        ("/transactions/-1", 404),
        ("/clientes/99999999999999999999/extrato", 404),
        ("/clientes/-1/extrato", 404),
        ("/clientes/2147483648/extrato", 404),
        ("/pessoas/99999999999999999999", 404),
        ("/transactions?limit=-1", 400),
        ("/transactions?limit=99999999999999999999", 400),
        ("/transactions?before=-1", 400),
        ("/transactions?cliente_id=2147483648", 400),
        ("/users?limit=-1", 400),
        ("/users?offset=-1", 400),
        ("/users?offset=99999999999999999999", 400),
        ("/chats?userId=-1", 400),
        ("/group-users?groupId=99999999999999999999", 400),
        ("/subscribe/status?timeout=-1", 400),
        ("/contagem-pessoas?wait=abc", 400),
    ] {
        let r = get(&s.at(path));
        assert_json_error(path, r.status, &r.body, &[want]);
    }
    let r = ureq::post(&s.at("/clientes/99999999999999999999/transacoes"))
        .set("content-type", "application/json")
        .send_string(r#"{"valor":1,"tipo":"c","descricao":"x"}"#);
    match r {
        Err(ureq::Error::Status(404, _)) => {}
        other => panic!("an overflowing account id: {other:?}"),
    }
}

/// `host:port` of the stack's base URL, for raw TCP.
fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Sends `request` as raw bytes on a fresh connection to `addr` and waits up to `limit` for
/// the server to close it: what it said, or `None` if still open.
fn send_raw(addr: &str, request: &[u8], limit: Duration) -> Option<(Duration, String)> {
    let mut c = TcpStream::connect(addr).expect("nginx listens");
    c.write_all(request).unwrap();
    closed_within(c, limit)
}

/// Waits up to `limit` for the server to close `s`; what it said, or `None` if still open.
fn closed_within(mut s: TcpStream, limit: Duration) -> Option<(Duration, String)> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some((start.elapsed(), String::from_utf8_lossy(&got).into_owned())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some((start.elapsed(), String::from_utf8_lossy(&got).into_owned())),
        }
    }
    None
}

/// nginx waits 60 s (client_header_timeout, client_body_timeout) for a client that stopped
/// sending; 100 s leaves room for a loaded machine.
const LIMIT: Duration = Duration::from_secs(100);

#[test]
fn clients_that_stop_mid_request_are_let_go_by_nginx() {
    let s = stack();
    let addr = host_port(&s.url);
    let requests: [&[u8]; 3] = [
        b"GET /ping HTT",
        b"GET /ping HTTP/1.1\r\nHost: x\r\n",
        b"POST /pessoas HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    ];
    // Side by side: one wait of nginx's timeout for all three.
    std::thread::scope(|scope| {
        let waits: Vec<_> = requests
            .iter()
            .map(|request| {
                let addr = addr.clone();
                scope.spawn(move || (request, send_raw(&addr, request, LIMIT)))
            })
            .collect();
        for wait in waits {
            let (request, closed) = wait.join().unwrap();
            let what = String::from_utf8_lossy(request);
            let (after, answer) =
                closed.unwrap_or_else(|| panic!("{what:?}: still open after {LIMIT:?}"));
            // nginx closes without a word, or with a 408.
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "{what:?}: {answer}"
            );
            eprintln!("{what:?}: closed after {after:?}");
        }
    });
    assert_eq!(get(&s.at("/ping")).status, 200);
}

/// What nginx refuses before any replica sees it (a broken request line, a URI or header past
/// its buffers, TRACE, an unknown transfer coding, another HTTP version) is answered with a JSON
/// error body like everything else (SPEC: every error body is JSON), not nginx's HTML page.
#[test]
fn requests_nginx_refuses_itself_get_a_json_error() {
    let s = stack();
    let addr = host_port(&s.url);
    let long_uri = [
        b"GET /pessoas?t=".as_slice(),
        &[b'a'; 140_000],
        b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    .concat();
    let long_header = [
        b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ".as_slice(),
        &[b'a'; 40_000],
        b"\r\n\r\n",
    ]
    .concat();
    let cases: [(&[u8], u16); 7] = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
        (&long_uri, 414),
        (&long_header, 400),
        (b"TRACE /ping HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (
            b"POST /pessoas HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
        (b"GET /ping HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ];
    for (request, want) in cases {
        let what = String::from_utf8_lossy(&request[..40.min(request.len())]).into_owned();
        let (_, answer) = send_raw(&addr, request, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{what:?}: still open"));
        let status: u16 = answer
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{what:?}: {answer:?}"));
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{what:?}: {head}"
        );
        assert_json_error(&what, status, body, &[want]);
    }
    assert_eq!(get(&s.at("/ping")).status, 200);
}
