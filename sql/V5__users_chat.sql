-- Users (SPEC §4) and chat (SPEC §5). PostgreSQL is the source of truth for both: the
-- real-time fan-out through RabbitMQ only tells live subscribers what was already committed.
--
-- Unique constraints carry names the users store maps to 409s (`users_username_key`,
-- `users_email_key`); emails are stored lowercased, so the plain UNIQUE is case-insensitive.
CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text        NOT NULL,
    name          text        NOT NULL,
    email         text,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_key UNIQUE (email)
);

-- `max_members` NULL means no cap. Joins take this row's lock (SELECT … FOR UPDATE) before they
-- count, so concurrent joins to a capped group are serialised and never pass the cap.
CREATE TABLE chat_groups (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL CHECK (name <> ''),
    creator_id  bigint      REFERENCES users (id) ON DELETE SET NULL,
    max_members integer     CHECK (max_members > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_members (
    group_id  bigint      NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_id   bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, user_id)
);
-- "Which groups is this user in" (GET /chats, /subscribe/user).
CREATE INDEX chat_members_user ON chat_members (user_id, group_id);

CREATE TABLE chat_messages (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id   bigint      NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    sender_id  bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content    text        NOT NULL CHECK (content <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
-- A group's pages walk this index backwards from a cursor (`before`).
CREATE INDEX chat_messages_group ON chat_messages (group_id, id);
