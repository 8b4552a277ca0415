//! The long-polls — `GET /subscribe/user` (a new message in any of the user's groups) and
//! `GET /subscribe/status` (this replica's liveness changed, or a `/notify` reached the poll's
//! group) — and `POST /notify/{group}`, which wakes status polls and room sockets on every
//! replica through the fan-out.
//!
//! A waiting poll holds no thread and no database connection: it is a registration in its
//! worker's hub and a future parked on a oneshot, a timer and the stop signal. On SIGTERM every
//! poll answers 204 at once, so the replica's drain of in-flight requests is not held up by them.
use ntex::http::StatusCode;
use ntex::web::{self, HttpRequest, HttpResponse};

use super::hub::Wake;
use super::model::{
    same_user, ChatError, Event, GroupId, Invalid, NotifyGroup, Said, Since, StatusChange,
    StatusPoll, Target, UserChange, UserPoll, RECENT_MESSAGES,
};
use super::{store, BIND_WAIT};
use crate::error::{ApiError, ErrorResponse};
use crate::json::respond;
use crate::server::{resource, AppState};
use crate::users::UserId;
use serde_json::value::RawValue;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/subscribe/user").route(web::get().to(user)))
        .service(resource("/subscribe/status").route(web::get().to(status)))
        .service(resource("/notify/{group}").route(web::post().to(notify)));
}

/// What every poll answers when nothing happened before its timeout (or the replica stops).
fn no_change() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

/// Waits for a new message in any group of the user (token required, `user_id` its own).
///
/// With `since` (the `seq` of the last event the client has), it answers at once if any of
/// the user's groups has events after it — every one of them in id order, at most 200 per
/// answer, under `events`, with the `since` of the next call under `next` — and otherwise
/// waits as without. Nothing is skipped across groups: the answer only goes up to an id every
/// post before which has committed.
#[utoipa::path(get, path = "/subscribe/user", tag = "chat", security(("user" = [])),
    params(("user_id" = i64, Query, minimum = 1, description = "the token's user"),
        ("timeout" = Option<u64>, Query, minimum = 1, maximum = 60, description = "seconds to wait, default 25"),
        ("since" = Option<i64>, Query, minimum = 0, description = "the `seq` of the last event seen (the previous answer's `next`)"),
        ("token" = Option<String>, Query, description = "the login token, for clients that cannot set headers")),
    responses((status = 200, description = "a message was posted to one of the user's groups (with since: events after it)", body = UserChange),
        (status = 204, description = "nothing before the timeout, the user is in no group, or the replica is stopping"),
        (status = 400, description = "user_id, timeout or since malformed", body = ErrorResponse),
        (status = 401, description = "missing, invalid or expired token", body = ErrorResponse),
        (status = 403, description = "user_id is not the token's user", body = ErrorResponse),
        (status = 503, description = "PostgreSQL unavailable, or replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn user(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let poll = UserPoll::parse(req.query_string())?;
    let actor = state
        .users
        .authenticate(&req, true)
        .map_err(ChatError::from)?;
    same_user(actor, poll.user, "user_id")?;
    let groups = store::groups_of(&state.pg, poll.user).await?;
    if groups.is_empty() {
        return Ok(no_change());
    }
    state.chat.fanout().bound(BIND_WAIT).await;
    // Registered before looking at PostgreSQL: a post committed after the look wakes it.
    let mut waiting = state.chat.wait_for_messages(&groups);
    if let Some(since) = poll.since {
        if let Some(change) = events_since(&state, poll.user, &groups, since).await? {
            return Ok(respond(StatusCode::OK, &change));
        }
    }
    let woken = tokio::select! {
        woken = waiting.woken() => woken,
        _ = tokio::time::sleep(poll.timeout) => None,
        _ = state.shutdown.stopped() => None,
    };
    drop(waiting);
    let Some(Wake::Message(group)) = woken else {
        return Ok(no_change());
    };
    if let Some(since) = poll.since {
        return Ok(
            match events_since(&state, poll.user, &groups, since).await? {
                Some(change) => respond(StatusCode::OK, &change),
                None => no_change(),
            },
        );
    }
    let recent_messages = store::recent(&state.pg, group, RECENT_MESSAGES).await?;
    Ok(respond(
        StatusCode::OK,
        &UserChange {
            change: true,
            user_id: poll.user.get(),
            notified_group: group.get(),
            recent_messages,
            events: None,
            next: None,
        },
    ))
}

/// The events of `groups` after `since` up to the settled horizon, as a `/subscribe/user`
/// answer; `None` when there are none yet.
async fn events_since(
    state: &AppState,
    user: UserId,
    groups: &[GroupId],
    since: Since,
) -> Result<Option<UserChange>, ChatError> {
    let horizon = store::settled(&state.pg).await?;
    if horizon <= since.get() {
        return Ok(None);
    }
    let events = store::events_after(&state.pg, groups, since, horizon).await?;
    let Some(first) = events.first() else {
        return Ok(None);
    };
    let group = match first.target {
        Target::Group(group, _) => group,
        Target::Notify(_) => return Ok(None),
    };
    let next = if events.len() as i64 >= store::EVENT_PAGE {
        events
            .last()
            .and_then(|e| e.position)
            .map_or(horizon, |at| at.seq)
    } else {
        horizon
    };
    let recent_messages = store::recent(&state.pg, group, RECENT_MESSAGES).await?;
    let events = events
        .into_iter()
        .map(|e| RawValue::from_string(e.frame.to_string()).expect("BUG: every frame is JSON"))
        .collect();
    Ok(Some(UserChange {
        change: true,
        user_id: user.get(),
        notified_group: group.get(),
        recent_messages,
        events: Some(events),
        next: Some(next),
    }))
}

/// Waits for this replica's status to change (`/fall`, `/revive`) or a `/notify` of the group
/// (or of `all`) on any replica.
#[utoipa::path(get, path = "/subscribe/status", tag = "operations",
    params(("group" = Option<String>, Query, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "notification group, default `all`: `all`, a group id, or a name of 1–64 [A-Za-z0-9_.-]"),
        ("timeout" = Option<u64>, Query, minimum = 1, maximum = 60, description = "seconds to wait, default 25")),
    responses((status = 200, description = "the status changed or the group was notified", body = StatusChange),
        (status = 204, description = "nothing before the timeout, or the replica is stopping"),
        (status = 400, description = "group or timeout malformed", body = ErrorResponse),
        (status = 503, description = "replica fallen (before the poll began)", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn status(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let poll = StatusPoll::parse(req.query_string())?;
    let mut liveness = state.liveness.watch();
    liveness.mark_unchanged();
    state.chat.fanout().bound(BIND_WAIT).await;
    let mut waiting = state.chat.wait_for_notify(poll.group.clone());
    let changed = tokio::select! {
        changed = liveness.changed() => changed.is_ok(),
        woken = waiting.woken() => woken.is_some(),
        _ = tokio::time::sleep(poll.timeout) => false,
        _ = state.shutdown.stopped() => false,
    };
    drop(waiting);
    if !changed {
        return Ok(no_change());
    }
    let active = state.liveness.is_alive();
    Ok(respond(
        StatusCode::OK,
        &StatusChange {
            status: if active { "alive" } else { "down" },
            active,
            change: true,
            group: poll.group.as_str(),
        },
    ))
}

/// Wakes the status polls of `group` (or all of them, for `all`) and sends `notify` to the room
/// sockets of that group id (every room, for `all`), on every replica.
#[utoipa::path(post, path = "/notify/{group}", tag = "operations",
    params(("group" = String, Path, pattern = "^[A-Za-z0-9_.-]{1,64}$", description = "`all`, a group id, or a name of 1–64 [A-Za-z0-9_.-]")),
    responses((status = 200, body = Said),
        (status = 400, description = "malformed group name", body = ErrorResponse),
        (status = 503, description = "replica fallen", body = ErrorResponse)))]
#[tracing::instrument(skip_all)]
async fn notify(
    req: HttpRequest,
    state: web::types::State<AppState>,
) -> Result<HttpResponse, ApiError> {
    let group = NotifyGroup::parse(req.match_info().get("group").unwrap_or("")).ok_or(
        ChatError::BadQuery(Invalid {
            field: "group",
            message: "must be 1-64 characters of A-Z a-z 0-9 _ . -",
        }),
    )?;
    let message = if group.is_all() {
        "notification sent to all groups".to_owned()
    } else {
        format!("notification sent to group {}", group.as_str())
    };
    state.chat.fanout().publish(Event::notify(group));
    Ok(respond(StatusCode::OK, &Said { message }))
}
