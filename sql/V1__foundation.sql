-- Foundation: extensions later migrations rely on. Each domain adds its own numbered file:
-- V2 people, V3 accounts, V4 connected users (fib), V5+ chat.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
