//! People (SPEC §2) through nginx against the running stack: the contract, read-your-write
//! across both replicas, the 64 KiB limit, and the count once the queue has drained.
use advanced_tests::{get, post, request, stack, unique, Value};

fn body(apelido: &str) -> String {
    format!(
        r#"{{"apelido":"{apelido}","nome":"José Roberto","nascimento":"2000-10-01","stack":["C#","Node","Oracle"]}}"#
    )
}

#[test]
fn a_created_person_has_a_location_and_the_same_body_on_both_replicas() {
    let s = stack();
    let apelido = unique();
    let created = post(&s.at("/pessoas"), &body(&apelido));
    assert_eq!(created.status, 201, "{created:?}");
    let location = created.location.clone().expect("Location");
    assert!(location.starts_with("/pessoas/"), "{location}");
    let v = created.json();
    assert_eq!(v["apelido"], apelido.as_str());
    assert_eq!(v["nascimento"], "2000-10-01");
    assert_eq!(v["stack"], advanced_tests::json!(["C#", "Node", "Oracle"]));
    assert_eq!(location, format!("/pessoas/{}", v["id"].as_str().unwrap()));
    for i in 0..s.replica_count() {
        let read = get(&s.replica(i, &location));
        assert_eq!(read.status, 200, "replica {i}: {read:?}");
        assert_eq!(read.json(), v);
    }
    let through_nginx = get(&s.at(&location));
    assert_eq!(through_nginx.json(), v);
}

#[test]
fn a_post_on_one_replica_is_readable_at_once_on_the_other() {
    let s = stack();
    for _ in 0..20 {
        let created = post(&s.replica(0, "/pessoas"), &body(&unique()));
        assert_eq!(created.status, 201, "{created:?}");
        let read = get(&s.replica(1, created.location.as_deref().unwrap()));
        assert_eq!(read.status, 200, "{read:?}");
    }
}

/// simd-json recurses without limit: before the depth guard, this body aborted the replica
/// (stack overflow), and nginx replayed it on the next one.
#[test]
fn a_deeply_nested_body_is_400_on_every_replica_and_kills_none() {
    let s = stack();
    let people = format!(
        r#"{{"apelido":"{}","nome":"n","nascimento":"2000-01-01","stack":{}"#,
        unique(),
        "[".repeat(20_000)
    );
    let transaction = format!(
        r#"{{"valor":1,"tipo":"c","descricao":{}"#,
        "[".repeat(20_000)
    );
    for i in 0..2 {
        let r = post(&s.replica(i, "/pessoas"), &people);
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.json()["error"].is_string(), "{r:?}");
        let r = post(&s.replica(i, "/clientes/1/transacoes"), &transaction);
        assert_eq!(r.status, 422, "{r:?}");
        assert_eq!(
            get(&s.replica(i, "/ping")).status,
            200,
            "replica {i} still up"
        );
    }
    assert_eq!(post(&s.at("/pessoas"), &people).status, 400);
}

#[test]
fn a_search_term_holding_nul_is_400_not_a_database_error() {
    let s = stack();
    let r = get(&s.at("/pessoas?t=a%00b"));
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["field"], "t", "{r:?}");
}

#[test]
fn a_duplicate_apelido_is_422_even_on_the_other_replica() {
    let s = stack();
    let apelido = unique();
    assert_eq!(post(&s.replica(0, "/pessoas"), &body(&apelido)).status, 201);
    let dup = post(&s.replica(1, "/pessoas"), &body(&apelido));
    assert_eq!(dup.status, 422);
    assert!(dup.json()["error"].is_string());
}

#[test]
fn invalid_people_get_400_or_422_with_a_json_error() {
    let s = stack();
    let cases: Vec<(String, u16)> = vec![
        ("not json".into(), 400),
        (
            r#"{"apelido":"a","nome":1,"nascimento":"2000-01-01"}"#.into(),
            400,
        ),
        (
            r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01","stack":[1,"PHP"]}"#.into(),
            400,
        ),
        (
            r#"{"apelido":"a","nome":"a","nascimento":"2000-01-01","stack":"x"}"#.into(),
            400,
        ),
        (
            r#"{"apelido":null,"nome":"a","nascimento":"2000-01-01"}"#.into(),
            422,
        ),
        (r#"{"nome":"a","nascimento":"2000-01-01"}"#.into(), 422),
        (
            r#"{"apelido":"a","nome":null,"nascimento":"2000-01-01"}"#.into(),
            422,
        ),
        (
            format!(
                r#"{{"apelido":"{}","nome":"a","nascimento":"2000-01-01"}}"#,
                "x".repeat(33)
            ),
            422,
        ),
        (
            format!(
                r#"{{"apelido":"a","nome":"{}","nascimento":"2000-01-01"}}"#,
                "x".repeat(101)
            ),
            422,
        ),
        (
            r#"{"apelido":"a","nome":"a","nascimento":"2000-13-01"}"#.into(),
            422,
        ),
        (
            r#"{"apelido":"a","nome":"a","nascimento":"2001-02-29"}"#.into(),
            422,
        ),
        // Unpaired surrogate escapes are not text: 400 whichever half is missing.
        (
            r#"{"apelido":"a\ud800","nome":"a","nascimento":"2000-01-01"}"#.into(),
            400,
        ),
        (
            r#"{"apelido":"a\udc00","nome":"a","nascimento":"2000-01-01"}"#.into(),
            400,
        ),
    ];
    for (b, status) in cases {
        let r = post(&s.at("/pessoas"), &b);
        assert_eq!(r.status, status, "{b} → {r:?}");
        assert!(r.json()["error"].is_string(), "{r:?}");
    }
    // Lengths are characters: 32 two-byte characters are a valid apelido.
    let r = post(
        &s.at("/pessoas"),
        &format!(
            r#"{{"apelido":"{}","nome":"ção","nascimento":"2000-01-01"}}"#,
            unique().chars().take(8).collect::<String>() + &"é".repeat(24)
        ),
    );
    assert_eq!(r.status, 201, "{r:?}");
}

#[test]
fn a_body_over_64_kib_is_413_with_a_json_error() {
    let s = stack();
    let big = format!(r#"{{"apelido":"{}"}}"#, "x".repeat(65 * 1024));
    let r = post(&s.at("/pessoas"), &big);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.json()["error"].is_string());
}

#[test]
fn unknown_and_malformed_ids_are_404() {
    let s = stack();
    for path in [
        "/pessoas/00000000-0000-4000-8000-000000000000",
        "/pessoas/not-a-uuid",
        "/pessoas/1",
    ] {
        let r = get(&s.at(path));
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"].is_string());
    }
}

#[test]
fn search_needs_a_term_and_finds_by_any_field_after_the_flush() {
    let s = stack();
    assert_eq!(get(&s.at("/pessoas")).status, 400);
    assert_eq!(get(&s.at("/pessoas?t=")).status, 400);
    let marker = unique();
    let created = post(
        &s.at("/pessoas"),
        &format!(
            r#"{{"apelido":"{}","nome":"n","nascimento":"1999-09-09","stack":["Lang{marker}"]}}"#,
            unique()
        ),
    );
    assert_eq!(created.status, 201);
    let count = get(&s.at("/contagem-pessoas?wait=20"));
    assert_eq!(count.status, 200);
    let found = get(&s.at(&format!("/pessoas?t={}", marker.to_uppercase())));
    assert_eq!(found.status, 200);
    let list: Vec<Value> = serde_json::from_str(&found.body).unwrap();
    assert_eq!(list.len(), 1, "{}", found.body);
    assert_eq!(list[0], created.json());
    let none = get(&s.at(&format!("/pessoas?t=nothing{marker}")));
    assert_eq!(none.body, "[]");
}

#[test]
fn the_count_is_plain_text_and_includes_every_person_once_drained() {
    let s = stack();
    let before: i64 = get(&s.at("/contagem-pessoas?wait=20"))
        .body
        .parse()
        .unwrap();
    for _ in 0..10 {
        assert_eq!(post(&s.at("/pessoas"), &body(&unique())).status, 201);
    }
    let r = get(&s.at("/contagem-pessoas?wait=20"));
    assert_eq!(r.status, 200);
    assert!(
        r.content_type
            .as_deref()
            .unwrap_or("")
            .starts_with("text/plain"),
        "{r:?}"
    );
    let after: i64 = r.body.trim().parse().unwrap();
    // Other test binaries do not run at once (they run one after another), but tests in this
    // file do: at least our ten are there.
    assert!(after >= before + 10, "{before} → {after}");
    assert_eq!(
        request("PUT", &s.at("/contagem-pessoas"), &[], None).status,
        405
    );
}
