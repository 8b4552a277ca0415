//! Hostile input in-process against the real PostgreSQL, Redis and RabbitMQ (issue 10, item 4):
//! invalid UTF-8 bodies on every route that reads one, 10 KB search terms and SQL
//! metacharacters, huge, negative and overflowing ids in every path and query, garbage on the
//! wire and in WebSocket frames, and slow clients. Every answer must be a 4xx (or the success
//! the contract names), never a 5xx, never a panic, never a connection held open for good.
//! Each test starts its own server with a people queue of its own, so nothing here touches the
//! running stack's state.
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use arena::server::TestServer;
use common::{call, migrated_config, unique, user_with_token};
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

fn app() -> TestServer {
    let mut config = migrated_config();
    config.pg_pool_size = 4;
    // A queue of its own: nothing created here reaches the stack's inserter, and
    // /contagem-pessoas?wait= finds it drained at once.
    config.people_queue = format!("test.hostile.{}", uuid::Uuid::new_v4().simple());
    TestServer::start(config)
}

/// `body` sent as it is (any bytes) with a JSON content type; status and body text.
fn send_bytes(method: &str, url: &str, bearer: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut req = ureq::request(method, url).set("content-type", "application/json");
    if let Some(token) = bearer {
        req = req.set("authorization", &format!("Bearer {token}"));
    }
    match req.send_bytes(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap_or_default()),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

/// Asserts a refusal: a 4xx in `allowed` whose body is JSON with an `error` message.
fn assert_refused(what: &str, status: u16, body: &str, allowed: &[u16]) {
    assert!(
        allowed.contains(&status),
        "{what}: {status} (wanted one of {allowed:?}) {body}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body:?}"));
    assert!(v["error"].is_string(), "{what}: {body}");
}

/// Bytes that are not UTF-8: a lone continuation byte, a truncated sequence, an overlong `/`,
/// a UTF-16 surrogate in CESU-8, a code point past U+10FFFF, and Latin-1.
const NOT_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\x80",
    b"a\xe2\x82",
    b"\xc3\x28",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"Jos\xe9",
];

/// Every route that reads a body, with a body that would be accepted (or get past parsing) if
/// `@` were a plain character: `(method, path, bearer needed, template)`.
fn body_routes(me: i64, group: i64) -> Vec<(&'static str, String, bool, String)> {
    vec![
        (
            "POST",
            "/pessoas".into(),
            false,
            r#"{"apelido":"@","nome":"n","nascimento":"2000-01-01","stack":["@"]}"#.into(),
        ),
        (
            "POST",
            "/clientes/1/transacoes".into(),
            false,
            r#"{"valor":1,"tipo":"c","descricao":"@"}"#.into(),
        ),
        (
            "POST",
            "/users".into(),
            false,
            r#"{"name":"@","email":"a@example.com","password":"@"}"#.into(),
        ),
        (
            "POST",
            "/register".into(),
            false,
            r#"{"username":"@","password":"@"}"#.into(),
        ),
        (
            "POST",
            "/login".into(),
            false,
            r#"{"username":"@","password":"@"}"#.into(),
        ),
        (
            "PUT",
            format!("/users/{me}"),
            true,
            r#"{"name":"@"}"#.into(),
        ),
        (
            "POST",
            "/create-chat".into(),
            true,
            format!(r#"{{"groupName":"@","creatorId":{me},"members":["@"]}}"#),
        ),
        (
            "POST",
            format!("/chats/{group}/members"),
            true,
            format!(r#"{{"userId":{me},"@":1}}"#),
        ),
        (
            "POST",
            "/messages".into(),
            true,
            format!(r#"{{"userId":{me},"groupId":{group},"content":"@"}}"#),
        ),
        (
            "DELETE",
            "/messages".into(),
            true,
            r#"{"messageId":1,"@":"@"}"#.into(),
        ),
    ]
}

#[test]
fn invalid_utf8_bodies_are_a_json_400_or_422_on_every_route_that_reads_a_body() {
    let app = app();
    let (me, token) = user_with_token(&app.url(""), &unique("utf8"));
    let (status, group) = call(
        "POST",
        &app.url("/create-chat"),
        Some(&token),
        Some(&json!({"groupName": "hostile", "creatorId": me})),
    );
    assert_eq!(status, 201, "{group}");
    let group = group["group_id"].as_i64().unwrap();
    for (method, path, auth, template) in body_routes(me, group) {
        let bearer = auth.then_some(token.as_str());
        // Each bad sequence in place of every `@`.
        let mut bodies: Vec<Vec<u8>> = NOT_UTF8
            .iter()
            .map(|bad| {
                let mut out = Vec::new();
                for (i, part) in template.split('@').enumerate() {
                    if i > 0 {
                        out.extend_from_slice(bad);
                    }
                    out.extend_from_slice(part.as_bytes());
                }
                out
            })
            .collect();
        // Outside any string, and the whole body.
        bodies.push(b"{\xff:1}".to_vec());
        bodies.push(b"\xef\xbb\xbf{}".to_vec());
        bodies.extend(NOT_UTF8.iter().map(|b| b.to_vec()));
        for body in bodies {
            let what = format!("{method} {path} {}", String::from_utf8_lossy(&body));
            let (status, answer) = send_bytes(method, &app.url(&path), bearer, &body);
            assert_refused(&what, status, &answer, &[400, 422]);
        }
    }
    // Nothing above reached a store: the account's balance is untouched.
    let (status, extrato) = call("GET", &app.url("/clientes/1/extrato"), None, None);
    assert_eq!(status, 200, "{extrato}");
}

#[test]
fn a_10_kb_search_term_and_sql_metacharacters_are_searched_for_literally() {
    let app = app();
    let config = migrated_config();
    let marker = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    // Two people written straight into PostgreSQL (the inserter's table), so the search sees
    // them without a queue: one whose text an unescaped `_` or `%` would match, one that holds
    // the metacharacters themselves.
    let people: Vec<arena::people::model::Person> = [
        format!(r#"{{"apelido":"ha{marker}","nome":"x{marker}ab","nascimento":"2000-01-01"}}"#),
        format!(
            r#"{{"apelido":"hb{marker}","nome":"y{marker}%_\\' OR 1=1 --;DROP TABLE pessoas;","nascimento":"2000-01-01","stack":["C%"]}}"#
        ),
    ]
    .iter()
    .map(|b| {
        arena::people::model::NewPerson::parse(&mut b.clone().into_bytes())
            .unwrap()
            .with_id(uuid::Uuid::new_v4())
    })
    .collect();
    let ids: Vec<uuid::Uuid> = people.iter().map(|p| p.id).collect();
    let url = config.database_url.clone();
    arena::infra::block_on(async {
        let client = arena::infra::postgres::connect(&url).await.unwrap();
        for p in &people {
            client
                .execute(
                    "INSERT INTO pessoas (id, apelido, nome, nascimento, busca, json) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &p.id,
                        &p.person.apelido.as_str(),
                        &p.person.nome.as_str(),
                        &p.person.nascimento.date(),
                        &p.person.search_text(),
                        &String::from_utf8(p.json.clone()).unwrap(),
                    ],
                )
                .await
                .unwrap();
        }
    });
    let search = |t: &str| -> Vec<String> {
        let q = t.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        let (status, body) = call("GET", &app.url(&format!("/pessoas?t={q}")), None, None);
        assert_eq!(status, 200, "t={t:?}: {body}");
        let found = body.as_array().unwrap_or_else(|| panic!("t={t:?}: {body}"));
        let mut apelidos: Vec<String> = found
            .iter()
            .map(|p| p["apelido"].as_str().unwrap().to_owned())
            .collect();
        apelidos.sort();
        apelidos
    };
    let (a, b) = (format!("ha{marker}"), format!("hb{marker}"));
    assert_eq!(search(&marker), [a.clone(), b.clone()]);
    assert_eq!(
        search(&format!("{marker}AB")),
        [a.clone()],
        "case-insensitive"
    );
    // Unescaped, `_` and `%` would match `ab`: escaped, they match only themselves.
    assert_eq!(search(&format!("{marker}_b")), Vec::<String>::new());
    assert_eq!(search(&format!("{marker}%b")), Vec::<String>::new());
    assert_eq!(search(&format!("{marker}%_")), [b.clone()]);
    assert_eq!(search(&format!("{marker}%_\\' or 1=1 --")), [b.clone()]);
    assert_eq!(
        search(&format!("{marker}%_\\' OR 1=1 --;DROP TABLE pessoas;")),
        [b.clone()]
    );
    assert_eq!(search(&format!("{marker}\\")), Vec::<String>::new());
    // Terms that only an injection or an unescaped wildcard would answer with rows.
    for t in [
        "' OR 1=1 --",
        "' OR '1'='1",
        "%",
        "_",
        "\\",
        "%%",
        "\\%",
        ";DROP TABLE pessoas;",
        "'); DROP TABLE pessoas; --",
        "$1",
        "\"",
        "*",
        "\u{1F600}",
        "\u{FFFD}",
    ] {
        let (status, found) = call(
            "GET",
            &app.url(&format!("/pessoas?t={}", urlencode(t))),
            None,
            None,
        );
        assert_eq!(status, 200, "t={t:?}: {found}");
        for p in found
            .as_array()
            .unwrap_or_else(|| panic!("t={t:?}: {found}"))
        {
            // Whatever comes back holds the term itself (someone may have created one).
            let mut text = format!(
                "{}\n{}",
                p["apelido"].as_str().unwrap(),
                p["nome"].as_str().unwrap()
            );
            for item in p["stack"].as_array().into_iter().flatten() {
                text.push('\n');
                text.push_str(item.as_str().unwrap());
            }
            assert!(
                text.to_lowercase().contains(&t.to_lowercase()),
                "t={t:?} found {p}"
            );
        }
    }
    // Ten kilobytes of term, with and without metacharacters: an answer, not an error.
    for t in [
        "x".repeat(10 * 1024),
        "%_\\'".repeat(2600),
        "é".repeat(5 * 1024),
    ] {
        assert!(search(&t).is_empty(), "a 10 KB term matched");
    }
    // A NUL, or no term, is the contract's 400.
    for q in ["t=%00", "t=", "", "t=a%00b"] {
        let (status, body) = call("GET", &app.url(&format!("/pessoas?{q}")), None, None);
        assert_refused(q, status, &body.to_string(), &[400]);
    }
    // The table is still there, with our two people in it.
    let left: i64 = arena::infra::block_on(async {
        let client = arena::infra::postgres::connect(&url).await.unwrap();
        let n = client
            .query_one("SELECT count(*) FROM pessoas WHERE id = ANY($1)", &[&ids])
            .await
            .unwrap()
            .get(0);
        client
            .execute("DELETE FROM pessoas WHERE id = ANY($1)", &[&ids])
            .await
            .unwrap();
        n
    });
    assert_eq!(left, 2);
}

fn urlencode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn huge_negative_and_overflowing_ids_in_every_path_and_query_are_4xx() {
    let app = app();
    let (me, token) = user_with_token(&app.url(""), &unique("ids"));
    let huge = "99999999999999999999";
    let bearer = Some(token.as_str());
    let body = json!({"valor": 1, "tipo": "c", "descricao": "x"});
    let join = json!({"userId": me});
    let paths: Vec<(&str, String, Option<&str>, Option<&Value>, u16)> = [
        huge,
        "-1",
        "0",
        "1e3",
        "+1",
        "0x10",
        "9223372036854775808",
        "%20",
    ]
    .into_iter()
    .flat_map(|id| {
        [
            ("GET", format!("/users/{id}"), None, None, 404),
            ("PUT", format!("/users/{id}"), bearer, Some(&join), 404),
            ("DELETE", format!("/users/{id}"), bearer, None, 404),
            ("GET", format!("/transactions/{id}"), None, None, 404),
            ("GET", format!("/clientes/{id}/extrato"), None, None, 404),
            (
                "POST",
                format!("/clientes/{id}/transacoes"),
                None,
                Some(&body),
                404,
            ),
            ("GET", format!("/pessoas/{id}"), None, None, 404),
            ("DELETE", format!("/messages/{id}"), bearer, None, 404),
            (
                "POST",
                format!("/chats/{id}/members"),
                bearer,
                Some(&join),
                404,
            ),
            ("GET", format!("/ws/updates/{id}"), bearer, None, 404),
        ]
    })
    .collect();
    for (method, path, auth, body, want) in paths {
        let (status, answer) = call(method, &app.url(&path), auth, body);
        assert_refused(
            &format!("{method} {path}"),
            status,
            &answer.to_string(),
            &[want],
        );
    }
    for path in ["/clientes/2147483648/extrato", "/ws/fibonacci/a%20b"] {
        let (status, answer) = call("GET", &app.url(path), None, None);
        assert_refused(path, status, &answer.to_string(), &[400, 404]);
    }
    let queries = [
        ("/transactions?limit=-1", None),
        ("/transactions?limit=0", None),
        ("/transactions?limit=101", None),
        ("/transactions?limit=99999999999999999999", None),
        ("/transactions?before=-1", None),
        ("/transactions?before=99999999999999999999", None),
        ("/transactions?cliente_id=-1", None),
        ("/transactions?cliente_id=2147483648", None),
        ("/transactions?cliente_id=99999999999999999999", None),
        ("/users?limit=-1", None),
        ("/users?limit=99999999999999999999", None),
        ("/users?offset=-1", None),
        ("/users?offset=99999999999999999999", None),
        ("/messages?groupId=99999999999999999999", bearer),
        ("/messages?groupId=-1", bearer),
        ("/messages?groupId=1&limit=-1", bearer),
        ("/messages?groupId=1&before=-1", bearer),
        ("/messages?groupId=1&limit=99999999999999999999", bearer),
        ("/chats?userId=-1", None),
        ("/chats?userId=99999999999999999999", None),
        ("/chats", None),
        ("/group-users?groupId=-1", None),
        ("/group-users?groupId=1e400", None),
        ("/subscribe/user?user_id=-1", bearer),
        ("/subscribe/user?user_id=99999999999999999999", bearer),
        ("/subscribe/status?timeout=-1", None),
        ("/subscribe/status?timeout=0", None),
        ("/subscribe/status?timeout=99999999999999999999", None),
        ("/subscribe/status?group=%00", None),
        ("/contagem-pessoas?wait=abc", None),
    ];
    for (path, auth) in queries {
        let (status, answer) = call("GET", &app.url(path), auth, None);
        assert_refused(path, status, &answer.to_string(), &[400]);
    }
    let timeout = format!("/subscribe/user?user_id={me}&timeout=-1");
    let (status, answer) = call("GET", &app.url(&timeout), bearer, None);
    assert_refused(&timeout, status, &answer.to_string(), &[400]);
    // The largest values that are in range are answered, not refused.
    for path in [
        "/users?offset=9223372036854775807&limit=200",
        "/transactions?cliente_id=2147483647&before=9223372036854775807&limit=100",
        "/contagem-pessoas?wait=1e400",
        "/contagem-pessoas?wait=-1",
        "/contagem-pessoas?wait=NaN",
    ] {
        let (status, answer) = call("GET", &app.url(path), None, None);
        assert_eq!(status, 200, "{path}: {answer}");
    }
    // Ids in bodies: beyond 64 bits, negative, fractional, or a string of something else.
    for id in [
        json!(-1),
        json!(0),
        json!(1.5),
        json!("x"),
        json!("-1"),
        json!(huge),
        json!(u64::MAX),
    ] {
        for (path, body) in [
            (
                "/messages",
                json!({"userId": me, "groupId": id, "content": "x"}),
            ),
            ("/create-chat", json!({"groupName": "g", "creatorId": id})),
        ] {
            let (status, answer) = call("POST", &app.url(path), bearer, Some(&body));
            assert_refused(
                &format!("{path} {body}"),
                status,
                &answer.to_string(),
                &[400, 422],
            );
        }
    }
    let raw = format!(r#"{{"userId":{me},"groupId":{huge}{huge},"content":"x"}}"#);
    let (status, answer) = send_bytes("POST", &app.url("/messages"), bearer, raw.as_bytes());
    assert_refused(&raw, status, &answer, &[400, 422]);
}

#[test]
fn sql_metacharacters_and_nul_in_text_fields_are_stored_literally_or_refused() {
    let app = app();
    let sql = format!("'; DROP TABLE users; -- {}", unique("x"));
    let (status, body) = call(
        "POST",
        &app.url("/register"),
        None,
        Some(&json!({"username": sql, "password": "' OR '1'='1"})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        "POST",
        &app.url("/login"),
        None,
        Some(&json!({"username": sql, "password": "' OR '1'='1"})),
    );
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let me = body["user_id"].as_i64().unwrap();
    // The wrong password with an injection is still the wrong password.
    let (status, _) = call(
        "POST",
        &app.url("/login"),
        None,
        Some(&json!({"username": sql, "password": "x' OR '1'='1"})),
    );
    assert_eq!(status, 401);
    // NUL cannot be stored in PostgreSQL text: refused or unmatched, never a 500.
    for (method, path, body, allowed) in [
        (
            "POST",
            "/login".to_owned(),
            json!({"username": "a\u{0}b", "password": "x"}),
            &[401, 422][..],
        ),
        (
            "POST",
            "/register".to_owned(),
            json!({"username": "a\u{0}b", "password": "x"}),
            &[422][..],
        ),
        (
            "POST",
            "/users".to_owned(),
            json!({"name": "a\u{0}", "email": "n@x.io", "password": "x"}),
            &[422][..],
        ),
        (
            "PUT",
            format!("/users/{me}"),
            json!({"username": "a\u{0}b"}),
            &[422][..],
        ),
        (
            "PUT",
            format!("/users/{me}"),
            json!({"email": "a\u{0}@x.io"}),
            &[422][..],
        ),
        (
            "POST",
            "/create-chat".to_owned(),
            json!({"groupName": "g\u{0}", "creatorId": me}),
            &[422][..],
        ),
        (
            "POST",
            "/create-chat".to_owned(),
            json!({"groupName": "g", "creatorId": me, "members": ["a\u{0}b"]}),
            &[422][..],
        ),
        (
            "POST",
            "/clientes/1/transacoes".to_owned(),
            json!({"valor": 1, "tipo": "c", "descricao": "a\u{0}"}),
            &[422][..],
        ),
        (
            "POST",
            "/pessoas".to_owned(),
            json!({"apelido": "a\u{0}", "nome": "n", "nascimento": "2000-01-01"}),
            &[422][..],
        ),
    ] {
        let (status, answer) = call(method, &app.url(&path), Some(&token), Some(&body));
        assert_refused(
            &format!("{method} {path} {body}"),
            status,
            &answer.to_string(),
            allowed,
        );
    }
    // A group and a message made of metacharacters come back as sent.
    let name = "'); DELETE FROM chat_groups; --";
    let (status, group) = call(
        "POST",
        &app.url("/create-chat"),
        Some(&token),
        Some(&json!({"groupName": name, "creatorId": me, "members": ["' OR 1=1 --", "%", "_"]})),
    );
    assert_eq!(
        (status, group["group_name"].as_str()),
        (201, Some(name)),
        "{group}"
    );
    let group = group["group_id"].as_i64().unwrap();
    let content = "%_\\'\";--/* */ \u{1F600}";
    let (status, message) = call(
        "POST",
        &app.url("/messages"),
        Some(&token),
        Some(&json!({"userId": me, "groupId": group, "content": content})),
    );
    assert_eq!(
        (status, message["content"].as_str()),
        (201, Some(content)),
        "{message}"
    );
}

/// Sends `request` as raw bytes and reads the answer until the server closes (or 10 s):
/// the status line's code, or `None` when the connection closed without one.
fn exchange(addr: SocketAddr, request: &[u8]) -> (Option<u16>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before it has read everything: not an error here.
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    (status, text)
}

#[test]
fn garbage_on_the_wire_is_a_4xx_or_a_closed_connection_and_the_server_carries_on() {
    let app = app();
    let requests: Vec<Vec<u8>> = vec![
        b"GET /pessoas?t=\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /users/\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"PUT /users/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(),
        b"POST /pessoas HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n".to_vec(),
        b"POST /pessoas HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\nConnection: close\r\n\r\n".to_vec(),
        b"POST /pessoas HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\n{}".to_vec(),
        b"POST /pessoas HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n".to_vec(),
        b"POST /pessoas HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\0\0\0\0\0\0\0\0".to_vec(),
        b"\xff\xfe\xfd\r\n\r\n".to_vec(),
        b"GET /ping HTTP/9.9\r\n\r\n".to_vec(),
        [b"GET /ping HTTP/1.1\r\nHost: x\r\n".to_vec(), (0..200).flat_map(|i| format!("X-H{i}: v\r\n").into_bytes()).collect(), b"\r\n".to_vec()].concat(),
        [b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec(), vec![b'a'; 100_000], b"\r\n\r\n".to_vec()].concat(),
        [b"GET /".to_vec(), vec![b'a'; 70_000], b" HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()].concat(),
    ];
    for request in &requests {
        let (status, answer) = exchange(app.addr, request);
        let what = String::from_utf8_lossy(&request[..request.len().min(80)]).into_owned();
        if let Some(code) = status {
            assert!(
                (200..500).contains(&code),
                "{what}: {}",
                &answer[..answer.len().min(300)]
            );
        }
    }
    let (status, _) = call("GET", &app.url("/ping"), None, None);
    assert_eq!(status, 200, "the server answers after the garbage");
}

/// Connects a WebSocket to `path` on `addr` (a bearer token in the query when given).
fn websocket(addr: SocketAddr, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    tungstenite::client(format!("ws://{addr}{path}"), stream)
        .unwrap_or_else(|e| panic!("{path}: {e:?}"))
        .0
}

/// The next frame that is not a clock tick: a text frame's JSON, or `None` once closed.
fn next_answer(socket: &mut tungstenite::WebSocket<TcpStream>) -> Option<Value> {
    loop {
        match socket.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).expect("frames are JSON");
                if v["type"] != "time" {
                    return Some(v);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// A small deterministic generator: the same garbage every run, no extra dependency.
fn garbage(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed as u8
        })
        .collect()
}

#[test]
fn garbage_websocket_frames_get_an_error_or_a_close_and_the_replica_carries_on() {
    let app = app();
    let mut socket = websocket(app.addr, "/ws/fibonacci/hostile");
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    let mut frames: Vec<Vec<u8>> = NOT_UTF8.iter().map(|b| b.to_vec()).collect();
    frames.extend((0..40).map(|i| garbage(&mut seed, i * 7 % 300)));
    frames.extend(
        [
            "1e999999",
            "-0",
            "-0.0",
            "18446744073709551616",
            "{\"n\":1e400}",
            "[[[[[[[[[[[[",
            "{\"n\":",
            "\"\\ud800\"",
            "nul",
            "{\"n\":10,\"n\":11}",
        ]
        .map(|s| s.as_bytes().to_vec()),
    );
    frames.push(format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes());
    for frame in frames {
        let what = String::from_utf8_lossy(&frame[..frame.len().min(60)]).into_owned();
        // A text frame whatever its bytes: the client does not check them.
        socket
            .send(Message::Frame(Frame::message(
                frame,
                OpCode::Data(Data::Text),
                true,
            )))
            .unwrap();
        match next_answer(&mut socket) {
            Some(v) => assert!(v["type"] == "error" || v["type"] == "fib", "{what}: {v}"),
            // Invalid UTF-8 in a text frame may be closed on (1007): a new socket works.
            None => socket = websocket(app.addr, "/ws/fibonacci/hostile"),
        }
    }
    socket.send(Message::text("12")).unwrap();
    assert_eq!(next_answer(&mut socket).unwrap()["value"], "144");
    let (status, _) = call("GET", &app.url("/ping"), None, None);
    assert_eq!(status, 200);
}

/// Waits up to `limit` for the server to close `s`, reading whatever it says meanwhile; while
/// waiting, `tick` may send more bytes every 500 ms. Returns how long it took and what came, or
/// `None` if the connection was still open at `limit`.
fn closed_within(
    mut s: TcpStream,
    limit: Duration,
    mut tick: impl FnMut(&mut TcpStream) -> bool,
) -> Option<(Duration, String)> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
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
        if !tick(&mut s) {
            return Some((start.elapsed(), String::from_utf8_lossy(&got).into_owned()));
        }
    }
    None
}

/// ntex reads request headers under a rate (256 bytes per second, from 1 s up to 16 s in all)
/// and answers 408 past it. 60 s is far beyond that.
const HEADER_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_client_that_sends_half_a_request_line_then_nothing_is_disconnected() {
    let app = app();
    let mut s = TcpStream::connect(app.addr).unwrap();
    s.write_all(b"GET /ping HTT").unwrap();
    let (after, answer) = closed_within(s, HEADER_LIMIT, |_| true)
        .expect("a half request line held the connection open");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    eprintln!("half a request line: closed after {after:?}");
}

#[test]
fn a_client_that_trickles_its_headers_is_disconnected() {
    let app = app();
    let mut s = TcpStream::connect(app.addr).unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nX-Slow: ").unwrap();
    let (after, answer) = closed_within(s, HEADER_LIMIT, |s| s.write_all(b"a").is_ok())
        .expect("headers trickled a byte every 500 ms held the connection open");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    eprintln!("trickled headers: closed after {after:?}");
}

/// How long a client may take over its body before the server gives up on it: generous.
const BODY_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_client_that_stalls_its_body_is_disconnected() {
    let app = app();
    let mut s = TcpStream::connect(app.addr).unwrap();
    s.write_all(
        b"POST /pessoas HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    )
    .unwrap();
    let closed = closed_within(s, BODY_LIMIT, |_| true);
    assert!(
        closed.is_some(),
        "a stalled body held the connection open for {BODY_LIMIT:?}"
    );
}

#[test]
fn a_client_that_trickles_its_body_is_disconnected() {
    let app = app();
    let mut s = TcpStream::connect(app.addr).unwrap();
    s.write_all(
        b"POST /pessoas HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n",
    )
    .unwrap();
    let closed = closed_within(s, BODY_LIMIT, |s| s.write_all(b" ").is_ok());
    assert!(
        closed.is_some(),
        "a trickled body held the connection open for {BODY_LIMIT:?}"
    );
}
