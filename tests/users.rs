//! Users in-process against the real PostgreSQL: creation and registration with their 409s and
//! 422s, login and its tokens, the paginated list, and changes only a user's own token may make.
//! Every test makes users with names of its own, so the tests run in parallel.
mod common;

use arena::server::TestServer;
use common::{call, migrated_config, unique, user_with_token};
use serde_json::json;

fn app() -> TestServer {
    let mut config = migrated_config();
    config.pg_pool_size = 4;
    TestServer::start(config)
}

#[test]
fn a_created_user_is_answered_without_its_password_and_the_username_defaults_to_the_email() {
    let app = app();
    let email = format!("{}@Example.com", unique("ana"));
    let (status, body) = call(
        "POST",
        &app.url("/users"),
        None,
        Some(&json!({"name": "Ana", "email": email, "password": "s3cret!"})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["username"], email.to_lowercase());
    assert_eq!(body["email"], email.to_lowercase());
    assert_eq!(body["name"], "Ana");
    assert!(body["id"].as_i64().unwrap() > 0);
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());

    let url = migrated_config().database_url;
    let stored: String = arena::infra::block_on(async move {
        let client = arena::infra::postgres::connect(&url).await.unwrap();
        client
            .query_one(
                "SELECT password_hash FROM users WHERE email = $1",
                &[&email.to_lowercase()],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("s3cret!"));
}

#[test]
fn a_taken_username_or_email_is_409_whatever_the_email_case() {
    let app = app();
    let name = unique("bob");
    let email = format!("{name}@example.com");
    let first = json!({"name": "Bob", "email": email, "password": "x", "username": name});
    assert_eq!(call("POST", &app.url("/users"), None, Some(&first)).0, 201);
    let same_username =
        json!({"name": "B", "email": format!("other-{email}"), "password": "x", "username": name});
    let (status, body) = call("POST", &app.url("/users"), None, Some(&same_username));
    assert_eq!(
        (status, &body["field"]),
        (409, &json!("username")),
        "{body}"
    );
    let same_email = json!({"name": "B", "email": email.to_uppercase(), "password": "x", "username": unique("b2")});
    let (status, body) = call("POST", &app.url("/users"), None, Some(&same_email));
    assert_eq!((status, &body["field"]), (409, &json!("email")), "{body}");
    let register = json!({"username": name, "password": "x"});
    assert_eq!(
        call("POST", &app.url("/register"), None, Some(&register)).0,
        409
    );
}

#[test]
fn invalid_users_are_422_naming_the_field_and_a_body_that_is_not_json_is_400() {
    let app = app();
    let long = "x".repeat(101);
    let cases = [
        (
            json!({"name": "A", "email": "not-an-email", "password": "x"}),
            "email",
        ),
        (
            json!({"name": "A", "email": "a@example.com", "password": ""}),
            "password",
        ),
        (
            json!({"name": long, "email": "a@example.com", "password": "x"}),
            "name",
        ),
        (json!({"name": "A", "email": "a@example.com"}), "password"),
        (
            json!({"name": 7, "email": "a@example.com", "password": "x"}),
            "name",
        ),
        (json!({"email": "a@example.com", "password": "x"}), "name"),
    ];
    for (body, field) in cases {
        let (status, answer) = call("POST", &app.url("/users"), None, Some(&body));
        assert_eq!(
            (status, &answer["field"]),
            (422, &json!(field)),
            "{body} → {answer}"
        );
    }
    let (status, _) = call(
        "POST",
        &app.url("/register"),
        None,
        Some(&json!({"username": "", "password": "x"})),
    );
    assert_eq!(status, 422);
    let r = ureq::post(&app.url("/users"))
        .set("content-type", "application/json")
        .send_string("{not json");
    match r {
        Err(ureq::Error::Status(400, _)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn login_answers_a_token_for_the_right_pair_and_401_otherwise() {
    let app = app();
    let name = unique("carol");
    let (id, token) = user_with_token(&app.url(""), &name);
    assert!(id > 0 && !token.is_empty());
    // Any wrong pair is 401, whatever its shape (SPEC §4): an empty or over-long password, a
    // username no user can have.
    for wrong in [
        json!({"username": name, "password": "nope"}),
        json!({"username": unique("nobody"), "password": "pw-123456"}),
        json!({"username": name, "password": ""}),
        json!({"username": name, "password": "p".repeat(300)}),
        json!({"username": "a\u{0}b", "password": "pw-123456"}),
    ] {
        let (status, body) = call("POST", &app.url("/login"), None, Some(&wrong));
        assert_eq!(status, 401, "{body}");
        assert!(body.get("token").is_none());
    }
    let missing = json!({"username": name});
    assert_eq!(
        call("POST", &app.url("/login"), None, Some(&missing)).0,
        422
    );
}

#[test]
fn users_are_listed_a_page_at_a_time_and_found_by_id() {
    let app = app();
    let (a, _) = user_with_token(&app.url(""), &unique("pa"));
    let (status, page) = call("GET", &app.url("/users?limit=2&offset=0"), None, None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    let (status, found) = call("GET", &app.url(&format!("/users/{a}")), None, None);
    assert_eq!((status, found["id"].as_i64()), (200, Some(a)));
    assert_eq!(found["email"], json!(null));
    for bad in [
        "/users?limit=0",
        "/users?limit=201",
        "/users?offset=-1",
        "/users?limit=x",
    ] {
        assert_eq!(call("GET", &app.url(bad), None, None).0, 400, "{bad}");
    }
    for missing in ["/users/0", "/users/abc", "/users/999999999999"] {
        assert_eq!(
            call("GET", &app.url(missing), None, None).0,
            404,
            "{missing}"
        );
    }
}

#[test]
fn only_a_users_own_token_changes_or_deletes_it() {
    let app = app();
    let (me, mine) = user_with_token(&app.url(""), &unique("me"));
    let (_, theirs) = user_with_token(&app.url(""), &unique("them"));
    let url = app.url(&format!("/users/{me}"));
    let change = json!({"name": "New Name"});
    assert_eq!(call("PUT", &url, None, Some(&change)).0, 401);
    assert_eq!(
        call("PUT", &url, Some("forged.token.x"), Some(&change)).0,
        401
    );
    assert_eq!(call("PUT", &url, Some(&theirs), Some(&change)).0, 403);
    let (status, body) = call("PUT", &url, Some(&mine), Some(&change));
    assert_eq!((status, &body["name"]), (200, &json!("New Name")), "{body}");
    assert_eq!(call("PUT", &url, Some(&mine), Some(&json!({}))).0, 422);

    // A new password replaces the old one.
    let username = body["username"].as_str().unwrap().to_owned();
    assert_eq!(
        call(
            "PUT",
            &url,
            Some(&mine),
            Some(&json!({"password": "fresh-pw"}))
        )
        .0,
        200
    );
    let login = |password: &str| {
        call(
            "POST",
            &app.url("/login"),
            None,
            Some(&json!({"username": username, "password": password})),
        )
        .0
    };
    assert_eq!((login("pw-123456"), login("fresh-pw")), (401, 200));

    assert_eq!(call("DELETE", &url, Some(&theirs), None).0, 403);
    assert_eq!(call("DELETE", &url, Some(&mine), None).0, 204);
    assert_eq!(call("GET", &url, None, None).0, 404);
    assert_eq!(call("DELETE", &url, Some(&mine), None).0, 404);
}
