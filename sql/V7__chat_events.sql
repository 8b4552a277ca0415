-- Chat events in one order per group, so a subscriber can resume from the last one it saw and
-- a replica can tell when it missed one (docs/API.md §5, "Resume and ordering").
--
-- Every message and every deletion takes its id from `chat_events_seq` while holding its
-- group's row lock (the UPDATE of `last_event`), and commits before the lock is released: within
-- a group, id order is commit order, so "everything of group g after id n" read at any moment
-- never skips an id that commits later. `last_event` is the group's newest event id; the event
-- before a new one (its `prev`) is read under the same lock, so a replica that receives an event
-- whose `prev` it has not delivered knows it missed something and re-reads PostgreSQL.
--
-- Deletions stay hard deletes of the message row; `chat_deletions` keeps the fact, so a
-- subscriber resuming from before a deletion hears of it.
-- The message ids' own sequence becomes the group events' sequence: a message inserted without
-- an id (an older replica during a rolling update) still takes an id no deletion holds.
CREATE SEQUENCE chat_events_seq AS bigint;
SELECT setval('chat_events_seq', greatest(
    (SELECT max(id) FROM chat_messages),
    (SELECT last_value FROM chat_messages_id_seq),
    1));
ALTER TABLE chat_messages ALTER COLUMN id DROP IDENTITY;
ALTER TABLE chat_messages ALTER COLUMN id SET DEFAULT nextval('chat_events_seq');
ALTER SEQUENCE chat_events_seq OWNED BY chat_messages.id;

ALTER TABLE chat_groups ADD COLUMN last_event bigint NOT NULL DEFAULT 0;
UPDATE chat_groups g SET last_event = m.last
FROM (SELECT group_id, max(id) AS last FROM chat_messages GROUP BY group_id) m
WHERE m.group_id = g.id;

CREATE TABLE chat_deletions (
    id         bigint      PRIMARY KEY,
    group_id   bigint      NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    message_id bigint      NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
-- A resume walks a group's events from a cursor forwards.
CREATE INDEX chat_deletions_group ON chat_deletions (group_id, id);
