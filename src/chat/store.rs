//! Chat's SQL (sql/V5): groups, members and messages. Every write is one transaction — one
//! statement where it can be — and reads check membership in the same round trip as the rows
//! they return (pipelined on one connection). Statements are prepared once per pooled
//! connection (`prepare_cached`).
use deadpool_postgres::{Object, Pool};
use tokio_postgres::Row;

use super::model::{
    Chat, ChatError, CreatedGroup, GroupId, Member, Message, MessageId, MessagesQuery, NewGroup,
    NewMessage,
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

/// The group's cap, under its row lock: concurrent joins wait here, one at a time.
/// `FOR NO KEY UPDATE`, not `FOR UPDATE`: it serialises joins just the same, but does not
/// conflict with the `KEY SHARE` lock a message insert's foreign key takes on the group row, so
/// posts to the group never wait for a join.
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

/// One statement: inserts the message only if the sender is a member; says which of "no such
/// group", "not a member" or "stored" happened. No row: no group. `id` NULL: not a member.
const POST: &str = "\
WITH sender AS (
    SELECT u.username FROM chat_members m JOIN users u ON u.id = m.user_id
    WHERE m.group_id = $1 AND m.user_id = $2
), stored AS (
    INSERT INTO chat_messages (group_id, sender_id, content)
    SELECT $1, $2, $3 FROM sender
    RETURNING id, created_at
)
SELECT s.id, s.created_at, (SELECT username FROM sender)
FROM chat_groups g LEFT JOIN stored s ON true WHERE g.id = $1";

pub async fn post(pool: &Pool, new: &NewMessage) -> Result<Message, ChatError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(POST).await.map_err(db)?;
    let row = client
        .query_opt(&stmt, &[&new.group.get(), &new.sender.get(), &new.content])
        .await
        .map_err(db)?
        .ok_or(ChatError::UnknownGroup)?;
    let Some(id) = row.try_get::<_, Option<i64>>(0).map_err(db)? else {
        return Err(ChatError::NotMember);
    };
    Ok(Message {
        id,
        group_id: new.group.get(),
        sender: Member {
            id: new.sender.get(),
            username: row.try_get(2).map_err(db)?,
        },
        content: new.content.clone(),
        timestamp: row.try_get(1).map_err(db)?,
    })
}

/// Deletes the message if `user` sent it. No row: no such message; `deleted` false: someone
/// else's.
const DELETE: &str = "\
WITH target AS (SELECT id, group_id, sender_id FROM chat_messages WHERE id = $1),
deleted AS (
    DELETE FROM chat_messages m USING target t
    WHERE m.id = t.id AND t.sender_id = $2 RETURNING m.id
)
SELECT t.group_id, EXISTS (SELECT 1 FROM deleted) FROM target t";

/// Deletes a message of `user`'s; returns its group (for the `message.deleted` event).
pub async fn delete(pool: &Pool, message: MessageId, user: UserId) -> Result<GroupId, ChatError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(DELETE).await.map_err(db)?;
    let row = client
        .query_opt(&stmt, &[&message.get(), &user.get()])
        .await
        .map_err(db)?
        .ok_or(ChatError::UnknownMessage)?;
    if !row.try_get::<_, bool>(1).map_err(db)? {
        return Err(ChatError::NotSender);
    }
    Ok(GroupId::from_db(row.try_get(0).map_err(db)?))
}

/// Whether the group exists and whether `user` is in it.
const MEMBERSHIP: &str = "SELECT EXISTS (SELECT 1 FROM chat_groups WHERE id = $1), \
     EXISTS (SELECT 1 FROM chat_members WHERE group_id = $1 AND user_id = $2)";

async fn check_member(client: &Object, group: GroupId, user: UserId) -> Result<(), ChatError> {
    let stmt = client.prepare_cached(MEMBERSHIP).await.map_err(db)?;
    let row = client
        .query_one(&stmt, &[&group.get(), &user.get()])
        .await
        .map_err(db)?;
    match (row.try_get(0).map_err(db)?, row.try_get(1).map_err(db)?) {
        (false, _) => Err(ChatError::UnknownGroup),
        (true, false) => Err(ChatError::NotMember),
        (true, true) => Ok(()),
    }
}

/// 404 for no such group, 403 for a non-member; the WebSocket upgrade asks before it upgrades.
pub async fn require_member(pool: &Pool, group: GroupId, user: UserId) -> Result<(), ChatError> {
    check_member(&client(pool).await?, group, user).await
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
