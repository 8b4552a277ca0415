//! The `users` table (sql/V5). One statement per operation, prepared once per pooled
//! connection; unique-constraint violations become 409s through [`on_constraint`], keyed by
//! the constraint's name, never by the message's text.
use deadpool_postgres::{Object, Pool};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use super::model::{
    Email, Name, NewUser, PageQuery, User, UserId, UserUpdate, Username, UsersError,
};

/// Every statement answers these columns, in this order (what [`user`] reads).
macro_rules! returning_user {
    ($sql:literal) => {
        concat!($sql, " id, username, name, email, created_at")
    };
}

const INSERT: &str = returning_user!(
    "INSERT INTO users (username, name, email, password_hash) VALUES ($1, $2, $3, $4) RETURNING"
);
const FIND: &str = concat!(returning_user!("SELECT"), " FROM users WHERE id = $1");
const LIST: &str = concat!(
    returning_user!("SELECT"),
    " FROM users ORDER BY id LIMIT $1 OFFSET $2"
);
const UPDATE: &str = returning_user!(
    "UPDATE users SET username = COALESCE($2, username), name = COALESCE($3, name), \
     email = COALESCE($4, email), password_hash = COALESCE($5, password_hash) \
     WHERE id = $1 RETURNING"
);
const DELETE: &str = "DELETE FROM users WHERE id = $1";
const CREDENTIALS: &str = "SELECT id, password_hash FROM users WHERE username = $1";

/// Empties users and everything chat keeps about them. Ids are not restarted: a login token
/// names its user by id for a day, and a reused id would let a token from before the reset
/// act as whoever registers next.
pub const RESET_SQL: &str =
    "TRUNCATE chat_deletions, chat_messages, chat_members, chat_groups, users";

async fn client(pool: &Pool) -> Result<Object, UsersError> {
    crate::infra::postgres::checkout(pool)
        .await
        .map_err(|e| UsersError::Unavailable(Box::new(e)))
}

/// A lost connection is worth a retry (503); anything else PostgreSQL says is a 409 when it is
/// a known constraint, our bug (500) otherwise.
fn db(e: tokio_postgres::Error) -> UsersError {
    if crate::infra::postgres::is_transient(&e) {
        return UsersError::Unavailable(Box::new(e));
    }
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        if let Some(taken) = e
            .as_db_error()
            .and_then(|d| d.constraint())
            .and_then(on_constraint)
        {
            return taken;
        }
    }
    UsersError::Database(e)
}

/// The answer a violated unique constraint stands for.
fn on_constraint(name: &str) -> Option<UsersError> {
    match name {
        "users_username_key" => Some(UsersError::UsernameTaken),
        "users_email_key" => Some(UsersError::EmailTaken),
        _ => None,
    }
}

fn user(row: &Row) -> Result<User, UsersError> {
    Ok(User {
        id: row.try_get(0).map_err(db)?,
        username: row.try_get(1).map_err(db)?,
        name: row.try_get(2).map_err(db)?,
        email: row.try_get(3).map_err(db)?,
        created_at: row.try_get(4).map_err(db)?,
    })
}

/// Inserts a user whose password is already hashed.
pub async fn insert(pool: &Pool, new: &NewUser, password_hash: &str) -> Result<User, UsersError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(INSERT).await.map_err(db)?;
    let row = client
        .query_one(
            &stmt,
            &[
                &new.username.as_str(),
                &new.name.as_str(),
                &new.email.as_ref().map(Email::as_str),
                &password_hash,
            ],
        )
        .await
        .map_err(db)?;
    user(&row)
}

pub async fn find(pool: &Pool, id: UserId) -> Result<User, UsersError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(FIND).await.map_err(db)?;
    let row = client.query_opt(&stmt, &[&id.get()]).await.map_err(db)?;
    user(&row.ok_or(UsersError::NotFound)?)
}

pub async fn list(pool: &Pool, page: PageQuery) -> Result<Vec<User>, UsersError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(LIST).await.map_err(db)?;
    let rows = client
        .query(&stmt, &[&page.limit, &page.offset])
        .await
        .map_err(db)?;
    rows.iter().map(user).collect()
}

/// Changes the fields `update` gives (the password already hashed); the others stay.
pub async fn update(
    pool: &Pool,
    id: UserId,
    update: &UserUpdate,
    password_hash: Option<&str>,
) -> Result<User, UsersError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(UPDATE).await.map_err(db)?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &id.get(),
                &update.username.as_ref().map(Username::as_str),
                &update.name.as_ref().map(Name::as_str),
                &update.email.as_ref().map(Email::as_str),
                &password_hash,
            ],
        )
        .await
        .map_err(db)?;
    user(&row.ok_or(UsersError::NotFound)?)
}

/// Deletes a user, its memberships and its messages (foreign keys cascade).
pub async fn delete(pool: &Pool, id: UserId) -> Result<(), UsersError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(DELETE).await.map_err(db)?;
    match client.execute(&stmt, &[&id.get()]).await.map_err(db)? {
        0 => Err(UsersError::NotFound),
        _ => Ok(()),
    }
}

/// The id and stored hash of `username`, if such a user exists.
pub async fn credentials(
    pool: &Pool,
    username: &str,
) -> Result<Option<(UserId, String)>, UsersError> {
    let client = client(pool).await?;
    let stmt = client.prepare_cached(CREDENTIALS).await.map_err(db)?;
    let Some(row) = client.query_opt(&stmt, &[&username]).await.map_err(db)? else {
        return Ok(None);
    };
    Ok(Some((
        UserId::from_db(row.try_get(0).map_err(db)?),
        row.try_get(1).map_err(db)?,
    )))
}
