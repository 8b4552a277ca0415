-- One row per open WebSocket on /ws/fibonacci/{username}: inserted before the upgrade, deleted
-- on close, `last_seen` refreshed by the owning replica every few seconds. Readers hide rows
-- whose last_seen is older than 30 s, so a replica killed with SIGKILL leaves no ghost users.
--
-- UNLOGGED: presence is rebuilt by the live sockets themselves, so skipping the WAL (cheaper
-- inserts, deletes and the periodic refresh) costs nothing worth keeping after a crash.
CREATE UNLOGGED TABLE IF NOT EXISTS connected_users (
    id           uuid PRIMARY KEY,
    username     text NOT NULL,
    instance     text NOT NULL,
    connected_at timestamptz NOT NULL DEFAULT now(),
    last_seen    timestamptz NOT NULL DEFAULT now()
);

-- A replica deletes its own rows at start and at shutdown.
CREATE INDEX IF NOT EXISTS connected_users_instance ON connected_users (instance);
-- GET /connected-users reads only the fresh rows.
CREATE INDEX IF NOT EXISTS connected_users_last_seen ON connected_users (last_seen);
