//! Chat's SQL (sql/V5, V7): groups, members and messages. Every write is one transaction — one
//! statement where it can be — and reads check membership in the same round trip as the rows
//! they return (pipelined on one connection). Statements are prepared once per pooled
//! connection (`prepare_cached`).
use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;

use super::model::{
    Chat, ChatError, CreatedGroup, Event, GroupId, Member, Message, MessageId, MessagesQuery,
    NewGroup, NewMessage, Position, Since,
};
use crate::users::UserId;

async fn client(pool: &Pool) -> Result<Object, ChatError> {
    crate::infra::postgres::checkout(pool)
        .await
        .map_err(|e| ChatError::Unavailable(Box::new(e)))
}

/// A lost connection is worth a retry (503); anything else PostgreSQL says is our bug (500).
fn db(e: tokio_postgres::Error) -> ChatError {
    if crate::infra::postgres::is_transient(&e) {
        ChatError::Unavailable(Box::new(e))
    } else {
        ChatError::Database(e)
    }
}

fn member(row: &Row, id: usize, username: usize) -> Result<Member, ChatError> {
    Ok(Member {
        id: row.try_get(id).map_err(db)?,
        username: row.try_get(username).map_err(db)?,
    })
}

/// A message row as [`PAGE`] selects it: id, group, sender id and username, content, time.
fn message(row: &Row) -> Result<Message, ChatError> {
    Ok(Message {
        id: row.try_get(0).map_err(db)?,
        group_id: row.try_get(1).map_err(db)?,
        sender: member(row, 2, 3)?,
        content: row.try_get(4).map_err(db)?,
        timestamp: row.try_get(5).map_err(db)?,
    })
}

/// The creator must still exist (a token outlives a deleted user).
const CREATOR: &str = "SELECT username FROM users WHERE id = $1";
const INSERT_GROUP: &str =
    "INSERT INTO chat_groups (name, creator_id, max_members) VALUES ($1, $2, $3) RETURNING id";
const FIND_USERNAMES: &str = "SELECT id, username FROM users WHERE username = ANY($1)";
const INSERT_MEMBERS: &str = "INSERT INTO chat_members (group_id, user_id) \
     SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING";

/// Creates a group with its creator and the listed users who exist, in one transaction.
/// Usernames that match nobody come back in the warning; more members than `maxMembers` is a
/// 409 and nothing is written.
pub async fn create_group(pool: &Pool, new: &NewGroup) -> Result<CreatedGroup, ChatError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await.map_err(db)?;
    let creator = tx
        .query_opt(
            &tx.prepare_cached(CREATOR).await.map_err(db)?,
            &[&new.creator.get()],
        )
        .await
        .map_err(db)?
        .ok_or(ChatError::UnknownUser)?;
    let mut members = vec![Member {
        id: new.creator.get(),
        username: creator.try_get(0).map_err(db)?,
    }];
    let found = tx
        .query(
            &tx.prepare_cached(FIND_USERNAMES).await.map_err(db)?,
            &[&new.members],
        )
        .await
        .map_err(db)?;
    let mut missing = Vec::new();
    for username in &new.members {
        let row = found
            .iter()
            .find(|r| r.try_get::<_, &str>(1).is_ok_and(|u| u == username));
        match row {
            Some(row) => {
                let m = member(row, 0, 1)?;
                if !members.iter().any(|known| known.id == m.id) {
                    members.push(m);
                }
            }
            None => missing.push(username.as_str()),
        }
    }
    if new
        .max_members
        .is_some_and(|max| members.len() > max as usize)
    {
        return Err(ChatError::Full);
    }
    let group: i64 = tx
        .query_one(
            &tx.prepare_cached(INSERT_GROUP).await.map_err(db)?,
            &[&new.name, &new.creator.get(), &new.max_members],
        )
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
    tx.execute(
        &tx.prepare_cached(INSERT_MEMBERS).await.map_err(db)?,
        &[&group, &ids],
    )
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(CreatedGroup {
        group_id: group,
        group_name: new.name.clone(),
        creator_id: new.creator.get(),
        members,
        warning: (!missing.is_empty()).then(|| format!("Users not found: {}", missing.join(", "))),
    })
}

/// The group's cap, under its row lock: concurrent joins wait here, one at a time (and with
/// the group's posts, which take the same lock to order their ids — a join is one short
/// transaction). `FOR NO KEY UPDATE`, not `FOR UPDATE`: it does not conflict with the
/// `KEY SHARE` lock foreign keys take on the group row.
const LOCK_GROUP: &str = "SELECT max_members FROM chat_groups WHERE id = $1 FOR NO KEY UPDATE";
const COUNT_MEMBERS: &str = "SELECT count(*), coalesce(bool_or(user_id = $2), false) \
     FROM chat_members WHERE group_id = $1";
const JOIN: &str = "INSERT INTO chat_members (group_id, user_id) SELECT $1, id FROM users \
     WHERE id = $2 RETURNING (SELECT username FROM users WHERE id = $2)";

/// Adds `user` to `group` unless it is a member already or the group is full. Race-free: the
/// count happens under the group's row lock, so ten concurrent joins to a group with one seat
/// left admit exactly one.
pub async fn join(pool: &Pool, group: GroupId, user: UserId) -> Result<Member, ChatError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await.map_err(db)?;
    let cap: Option<i32> = tx
        .query_opt(
            &tx.prepare_cached(LOCK_GROUP).await.map_err(db)?,
            &[&group.get()],
        )
        .await
        .map_err(db)?
        .ok_or(ChatError::UnknownGroup)?
        .try_get(0)
        .map_err(db)?;
    let counted = tx
        .query_one(
            &tx.prepare_cached(COUNT_MEMBERS).await.map_err(db)?,
            &[&group.get(), &user.get()],
        )
        .await
        .map_err(db)?;
    let (members, already): (i64, bool) = (
        counted.try_get(0).map_err(db)?,
        counted.try_get(1).map_err(db)?,
    );
    if already {
        return Err(ChatError::AlreadyMember);
    }
    if cap.is_some_and(|cap| members >= i64::from(cap)) {
        return Err(ChatError::Full);
    }
    let row = tx
        .query_opt(
            &tx.prepare_cached(JOIN).await.map_err(db)?,
            &[&group.get(), &user.get()],
        )
        .await
        .map_err(db)?
        .ok_or(ChatError::UnknownUser)?;
    let username = row.try_get(0).map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(Member {
        id: user.get(),
        username,
    })
}

/// Posts and deletions hold this advisory lock shared until they commit; [`settled`] takes it
/// exclusively for an instant, after which every event id handed out so far has committed or
/// rolled back. (Within a group the row lock already orders ids; across groups only this does.)
const SETTLE_LOCK: i64 = 0x6172_656e_6100_0007;

/// One statement: inserts the message only if the sender is a member; says which of "no such
/// group", "not a member" or "stored" happened. No row: no group. `id` NULL: not a member.
/// The id comes from `chat_events_seq` under the group's row lock (sql/V7): `prior` is the
/// group's event before it. Each CTE reads the one before, so the locks are taken before the id.
const POST: &str = "\
WITH sender AS (
    SELECT u.username FROM chat_members m JOIN users u ON u.id = m.user_id
    WHERE m.group_id = $1 AND m.user_id = $2
), settling AS (
    SELECT pg_advisory_xact_lock_shared($4) FROM sender
), prior AS (
    SELECT g.last_event FROM chat_groups g, settling WHERE g.id = $1 FOR NO KEY UPDATE OF g
), seq AS (
    UPDATE chat_groups g SET last_event = nextval('chat_events_seq')
    FROM prior WHERE g.id = $1 RETURNING g.last_event
), stored AS (
    INSERT INTO chat_messages (id, group_id, sender_id, content)
    SELECT seq.last_event, $1, $2, $3 FROM seq
    RETURNING id, created_at
)
SELECT s.id, s.created_at, (SELECT username FROM sender), (SELECT last_event FROM prior)
FROM chat_groups g LEFT JOIN stored s ON true WHERE g.id = $1";

/// Stores a message; returns it with its place in the group's order.
pub async fn post(pool: &Pool, new: &NewMessage) -> Result<(Message, Position), ChatError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(POST).await.map_err(db)?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &new.group.get(),
                &new.sender.get(),
                &new.content,
                &SETTLE_LOCK,
            ],
        )
        .await
        .map_err(db)?
        .ok_or(ChatError::UnknownGroup)?;
    let Some(id) = row.try_get::<_, Option<i64>>(0).map_err(db)? else {
        return Err(ChatError::NotMember);
    };
    let message = Message {
        id,
        group_id: new.group.get(),
        sender: Member {
            id: new.sender.get(),
            username: row.try_get(2).map_err(db)?,
        },
        content: new.content.clone(),
        timestamp: row.try_get(1).map_err(db)?,
    };
    let prev = row.try_get(3).map_err(db)?;
    Ok((message, Position { seq: id, prev }))
}

/// Deletes the message if `user` sent it, and records the deletion as the group's next event
/// (under the same locks as a post). No row: no such message; `mine` false: someone else's;
/// `seq` NULL with `mine` true: deleted meanwhile by a concurrent request.
const DELETE: &str = "\
WITH target AS (SELECT id, group_id, sender_id FROM chat_messages WHERE id = $1),
settling AS (SELECT pg_advisory_xact_lock_shared($3) FROM target WHERE sender_id = $2),
prior AS (
    SELECT g.last_event FROM chat_groups g JOIN target t ON g.id = t.group_id, settling
    FOR NO KEY UPDATE OF g
), deleted AS (
    DELETE FROM chat_messages m USING prior WHERE m.id = $1 RETURNING m.id, m.group_id
), seq AS (
    UPDATE chat_groups g SET last_event = nextval('chat_events_seq')
    FROM deleted d WHERE g.id = d.group_id RETURNING g.last_event
), logged AS (
    INSERT INTO chat_deletions (id, group_id, message_id)
    SELECT seq.last_event, d.group_id, d.id FROM seq, deleted d RETURNING id
)
SELECT t.group_id, t.sender_id = $2, (SELECT id FROM logged), (SELECT last_event FROM prior)
FROM target t";

/// Deletes a message of `user`'s; returns its group and the deletion's place in its order
/// (for the `message.deleted` event).
pub async fn delete(
    pool: &Pool,
    message: MessageId,
    user: UserId,
) -> Result<(GroupId, Position), ChatError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(DELETE).await.map_err(db)?;
    let row = client
        .query_opt(&stmt, &[&message.get(), &user.get(), &SETTLE_LOCK])
        .await
        .map_err(db)?
        .ok_or(ChatError::UnknownMessage)?;
    if !row.try_get::<_, bool>(1).map_err(db)? {
        return Err(ChatError::NotSender);
    }
    let seq: Option<i64> = row.try_get(2).map_err(db)?;
    let seq = seq.ok_or(ChatError::UnknownMessage)?;
    Ok((
        GroupId::from_db(row.try_get(0).map_err(db)?),
        Position {
            seq,
            prev: row.try_get(3).map_err(db)?,
        },
    ))
}

/// The group's newest event (NULL: no such group) and whether `user` is in it.
const MEMBERSHIP: &str = "SELECT (SELECT last_event FROM chat_groups WHERE id = $1), \
     EXISTS (SELECT 1 FROM chat_members WHERE group_id = $1 AND user_id = $2)";

/// The group's newest event id if `user` is a member of it.
async fn check_member(client: &Object, group: GroupId, user: UserId) -> Result<i64, ChatError> {
    let stmt = client.prepare_cached(MEMBERSHIP).await.map_err(db)?;
    let row = client
        .query_one(&stmt, &[&group.get(), &user.get()])
        .await
        .map_err(db)?;
    match (row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?) {
        (None, _) => Err(ChatError::UnknownGroup),
        (Some(_), false) => Err(ChatError::NotMember),
        (Some(last), true) => Ok(last),
    }
}

/// 404 for no such group, 403 for a non-member; the WebSocket upgrade asks before it upgrades.
/// Returns the group's newest event id: a socket without `since` is live from there.
pub async fn require_member(pool: &Pool, group: GroupId, user: UserId) -> Result<i64, ChatError> {
    check_member(&client(pool).await?, group, user).await
}

/// Group ids as a `bigint[]` parameter (`= ANY($1)`).
fn ids(groups: &[GroupId]) -> Vec<i64> {
    groups.iter().map(|g| g.get()).collect()
}

/// The groups' messages and deletions with `$2` < id ≤ `$3`, in id order, at most `$4`.
const EVENTS: &str = "\
SELECT * FROM (
    (SELECT m.id, m.group_id, m.sender_id, u.username, m.content, m.created_at, NULL::bigint
     FROM chat_messages m JOIN users u ON u.id = m.sender_id
     WHERE m.group_id = ANY($1) AND m.id > $2 AND m.id <= $3 ORDER BY m.id LIMIT $4)
    UNION ALL
    (SELECT d.id, d.group_id, NULL, NULL, NULL, d.deleted_at, d.message_id
     FROM chat_deletions d
     WHERE d.group_id = ANY($1) AND d.id > $2 AND d.id <= $3 ORDER BY d.id LIMIT $4)
) e ORDER BY 1 LIMIT $4";

/// Most events one read returns; a longer history is read page by page.
pub const EVENT_PAGE: i64 = 200;

/// The events of `groups` after `after` and up to `upto`, in id order, as the frames their
/// live subscribers got: `message.created` for every message still kept and
/// `message.deleted` for every deletion (also of messages posted after `after`: deleted
/// before this read, the reader never had them, and a deletion of an unknown id is a no-op).
/// Each event's `prev` is the one before it in its group here (or `after`).
pub async fn events_after(
    pool: &Pool,
    groups: &[GroupId],
    after: Since,
    upto: i64,
) -> Result<Vec<Event>, ChatError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(EVENTS).await.map_err(db)?;
    let rows = client
        .query(&stmt, &[&ids(groups), &after.get(), &upto, &EVENT_PAGE])
        .await
        .map_err(db)?;
    let mut prevs: Vec<(i64, i64)> = Vec::new();
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get(0).map_err(db)?;
        let group: i64 = row.try_get(1).map_err(db)?;
        let prev = match prevs.iter_mut().find(|(g, _)| *g == group) {
            Some((_, last)) => std::mem::replace(last, seq),
            None => {
                prevs.push((group, seq));
                after.get()
            }
        };
        let at = Position { seq, prev };
        let group = GroupId::from_db(group);
        events.push(match row.try_get::<_, Option<i64>>(6).map_err(db)? {
            Some(deleted) => Event::message_deleted(group, MessageId::from_db(deleted), at),
            None => {
                let json = serde_json::to_string(&message(row)?)
                    .expect("BUG: a message always serialises");
                Event::message_created(group, &json, at)
            }
        });
    }
    Ok(events)
}

/// Each group's newest event id.
const NEWEST: &str = "SELECT id, last_event FROM chat_groups WHERE id = ANY($1)";

pub async fn newest_events(
    pool: &Pool,
    groups: &[GroupId],
) -> Result<Vec<(GroupId, i64)>, ChatError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(NEWEST).await.map_err(db)?;
    let rows = client.query(&stmt, &[&ids(groups)]).await.map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok((
                GroupId::from_db(r.try_get(0).map_err(db)?),
                r.try_get(1).map_err(db)?,
            ))
        })
        .collect()
}

/// The newest event id such that every event up to it has committed or rolled back: waits
/// for the posts and deletions in flight (milliseconds), holding new ones back meanwhile.
const SETTLE: &str = "SELECT pg_advisory_xact_lock($1)";
const LAST_EVENT: &str = "SELECT last_value FROM chat_events_seq";

pub async fn settled(pool: &Pool) -> Result<i64, ChatError> {
    let mut client = client(pool).await?;
    let tx = client.transaction().await.map_err(db)?;
    let settle = tx.prepare_cached(SETTLE).await.map_err(db)?;
    let last = tx.prepare_cached(LAST_EVENT).await.map_err(db)?;
    tx.execute(&settle, &[&SETTLE_LOCK]).await.map_err(db)?;
    let last = tx
        .query_one(&last, &[])
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(last)
}

/// Newest first from the cursor; the caller turns the page around.
const PAGE: &str = "SELECT m.id, m.group_id, m.sender_id, u.username, m.content, m.created_at \
     FROM chat_messages m JOIN users u ON u.id = m.sender_id \
     WHERE m.group_id = $1 AND m.id < $2 ORDER BY m.id DESC LIMIT $3";

/// A page of a group's messages, oldest first, and the cursor of the older page. The
/// membership check and the page are sent together (pipelined) and the page is dropped if the
/// check fails: one round trip.
pub async fn page(
    pool: &Pool,
    q: &MessagesQuery,
    user: UserId,
) -> Result<(Vec<Message>, Option<i64>), ChatError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(PAGE).await.map_err(db)?;
    let before = q.before.map_or(i64::MAX, MessageId::get);
    // One more than asked tells whether an older page exists.
    let fetch = q.limit + 1;
    let (allowed, rows) = futures_util::future::join(
        check_member(&client, q.group, user),
        client.query(&stmt, &[&q.group.get(), &before, &fetch]),
    )
    .await;
    allowed?;
    let rows = rows.map_err(db)?;
    let more = rows.len() as i64 > q.limit;
    let mut messages = rows
        .iter()
        .take(q.limit as usize)
        .map(message)
        .collect::<Result<Vec<_>, _>>()?;
    let next = more.then(|| messages.last().map(|m| m.id)).flatten();
    messages.reverse();
    Ok((messages, next))
}

/// The newest messages of a group, oldest first (what a woken `/subscribe/user` shows).
pub async fn recent(pool: &Pool, group: GroupId, limit: i64) -> Result<Vec<Message>, ChatError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(PAGE).await.map_err(db)?;
    let rows = client
        .query(&stmt, &[&group.get(), &i64::MAX, &limit])
        .await
        .map_err(db)?;
    let mut messages = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
    messages.reverse();
    Ok(messages)
}

/// The groups `user` is in (a long-poll waits on them).
const GROUPS_OF: &str = "SELECT group_id FROM chat_members WHERE user_id = $1";

pub async fn groups_of(pool: &Pool, user: UserId) -> Result<Vec<GroupId>, ChatError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(GROUPS_OF).await.map_err(db)?;
    let rows = client.query(&stmt, &[&user.get()]).await.map_err(db)?;
    rows.iter()
        .map(|r| r.try_get(0).map(GroupId::from_db).map_err(db))
        .collect()
}

const USER_EXISTS: &str = "SELECT 1 FROM users WHERE id = $1";
/// Every group of the user with all its members, one row per (group, member).
const CHATS: &str = "SELECT g.id, g.name, u.id, u.username \
     FROM chat_members me \
     JOIN chat_groups g ON g.id = me.group_id \
     JOIN chat_members m ON m.group_id = g.id \
     JOIN users u ON u.id = m.user_id \
     WHERE me.user_id = $1 ORDER BY g.id, u.id";

pub async fn chats(pool: &Pool, user: UserId) -> Result<Vec<Chat>, ChatError> {
    let client = client(pool).await?;
    let exists = client.prepare_cached(USER_EXISTS).await.map_err(db)?;
    let stmt = client.prepare_cached(CHATS).await.map_err(db)?;
    let (exists, rows) = futures_util::future::join(
        client.query_opt(&exists, &[&user.get()]),
        client.query(&stmt, &[&user.get()]),
    )
    .await;
    exists.map_err(db)?.ok_or(ChatError::UnknownUser)?;
    let mut chats: Vec<Chat> = Vec::new();
    for row in &rows.map_err(db)? {
        let id: i64 = row.try_get(0).map_err(db)?;
        if chats.last().is_none_or(|c| c.id != id) {
            chats.push(Chat {
                id,
                name: row.try_get(1).map_err(db)?,
                members: Vec::new(),
            });
        }
        let chat = chats.last_mut().expect("BUG: a chat was pushed just above");
        chat.members.push(member(row, 2, 3)?);
    }
    Ok(chats)
}

const GROUP_EXISTS: &str = "SELECT 1 FROM chat_groups WHERE id = $1";
const GROUP_USERS: &str = "SELECT u.id, u.username FROM chat_members m \
     JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 ORDER BY u.id";

pub async fn group_users(pool: &Pool, group: GroupId) -> Result<Vec<Member>, ChatError> {
    let client = client(pool).await?;
    let exists = client.prepare_cached(GROUP_EXISTS).await.map_err(db)?;
    let stmt = client.prepare_cached(GROUP_USERS).await.map_err(db)?;
    let (exists, rows) = futures_util::future::join(
        client.query_opt(&exists, &[&group.get()]),
        client.query(&stmt, &[&group.get()]),
    )
    .await;
    exists.map_err(db)?.ok_or(ChatError::UnknownGroup)?;
    rows.map_err(db)?.iter().map(|r| member(r, 0, 1)).collect()
}
