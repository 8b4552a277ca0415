//! Chat through the running stack: users, groups and messages through nginx, and real-time
//! delivery across replicas — a room socket on api2's own port hears a post made on api1's, a
//! long-poll on api1 is woken by a post on api2, `/notify/all` wakes every replica's status
//! polls — plus the cap under concurrent joins and the 403s of a non-member.
use std::sync::Barrier;
use std::time::{Duration, Instant};

use advanced_tests::chat::{next_event, User};
use advanced_tests::{json, request, stack};

#[test]
fn a_room_socket_on_api2_hears_a_message_posted_on_api1_within_a_second() {
    let s = stack();
    let alice = User::new("alice");
    let bob = User::new("bob");
    let g = alice.group(&[&bob], None);
    let mut socket = bob.room(&s.replica(1, ""), g).expect("bob is a member");
    let sent = Instant::now();
    let r = alice.post(&s.replica(0, ""), g, "from api1");
    assert_eq!(r.status, 201, "{r:?}");
    let event = next_event(&mut socket, Duration::from_secs(1));
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(event["type"], "message.created");
    assert_eq!(event["message"], r.json());
}

#[test]
fn a_user_long_poll_on_api1_is_woken_by_a_post_on_api2() {
    let s = stack();
    let alice = User::new("alice");
    let bob = User::new("bob");
    let g = alice.group(&[&bob], None);
    let poll = s.replica(0, &format!("/subscribe/user?user_id={}&timeout=20", bob.id));
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| bob.call("GET", &poll, None));
        // The poll registers a moment after its request arrives: post until it answers.
        let started = Instant::now();
        let mut n = 0;
        while !waiting.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the poll never woke"
            );
            n += 1;
            assert_eq!(
                alice
                    .post(&s.replica(1, ""), g, &format!("from api2 #{n}"))
                    .status,
                201
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = waiting.join().unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let body = r.json();
        assert_eq!(body["notified_group"].as_i64(), Some(g));
        let recent = body["recent_messages"].as_array().unwrap();
        assert!(recent.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with("from api2"));
    });
}

#[test]
fn notify_all_wakes_the_status_polls_of_every_replica() {
    let s = stack();
    let group = format!("g{}", advanced_tests::unique());
    std::thread::scope(|scope| {
        let polls: Vec<_> = (0..s.replica_count())
            .flat_map(|i| [(i, "all"), (i, group.as_str())])
            .map(|(i, g)| {
                let url = s.replica(i, &format!("/subscribe/status?group={g}&timeout=20"));
                scope.spawn(move || (g, request("GET", &url, &[], None)))
            })
            .collect();
        let started = Instant::now();
        while !polls.iter().all(|p| p.is_finished()) {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "a status poll never woke"
            );
            assert_eq!(request("POST", &s.at("/notify/all"), &[], None).status, 200);
            std::thread::sleep(Duration::from_millis(100));
        }
        for poll in polls {
            let (g, r) = poll.join().unwrap();
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(
                r.json(),
                json!({"status": "alive", "active": true, "change": true, "group": g})
            );
        }
    });
}

#[test]
fn a_group_of_at_most_two_admits_exactly_two_under_ten_concurrent_joins() {
    let s = stack();
    let host = User::new("host");
    let g = host.group(&[], Some(2));
    let joiners: Vec<User> = (0..10).map(|i| User::new(&format!("j{i}"))).collect();
    let barrier = Barrier::new(joiners.len());
    let url = s.at(&format!("/chats/{g}/members"));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = joiners
            .iter()
            .map(|u| {
                let (barrier, url) = (&barrier, &url);
                scope.spawn(move || {
                    barrier.wait();
                    u.call("POST", url, Some(&json!({"userId": u.id}))).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        9,
        "{statuses:?}"
    );
    let r = request(
        "GET",
        &s.at(&format!("/group-users?groupId={g}")),
        &[],
        None,
    );
    assert_eq!(r.json()["users"].as_array().unwrap().len(), 2, "{r:?}");
}

#[test]
fn a_non_member_gets_403_on_read_write_and_subscribe_through_nginx() {
    let s = stack();
    let alice = User::new("alice");
    let mallory = User::new("mallory");
    let g = alice.group(&[], None);
    assert_eq!(mallory.post(&s.url, g, "let me in").status, 403);
    let read = mallory.call("GET", &s.at(&format!("/messages?groupId={g}")), None);
    assert_eq!(read.status, 403, "{read:?}");
    match mallory.room(&s.url, g) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        other => panic!(
            "expected a 403 refusal, got {:?}",
            other.map(|_| "a socket")
        ),
    }
    let anonymous = request("GET", &s.at(&format!("/messages?groupId={g}")), &[], None);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(anonymous.json()["error"].is_string());
}

#[test]
fn every_new_route_is_in_the_openapi_document_served_through_nginx() {
    let doc = request("GET", &stack().at("/api/openapi.json"), &[], None).json();
    for path in [
        "/users",
        "/users/{id}",
        "/register",
        "/login",
        "/create-chat",
        "/chats/{groupId}/members",
        "/chats",
        "/group-users",
        "/messages",
        "/messages/{id}",
        "/ws/updates/{groupId}",
        "/subscribe/user",
        "/subscribe/status",
        "/notify/{group}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is missing");
    }
}
