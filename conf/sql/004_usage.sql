-- 004_usage.sql - the usage store: decisions counted per bucket, and
-- events (docs/usage.md, docs/sql.md "Usage").
--
-- One schema for SQLite and PostgreSQL, in one transaction with its row
-- in keygate_schema.  A usage store (the usage: section of the policy)
-- applies it itself when it is created; a key store keeps
-- `keygate db migrate` (docs/sql.md "Schema and migrations").
--
-- Buckets: one table per span (60 s, 3600 s, 86400 s), the same columns.
-- A row is `count` decisions of `code` ('allowed' or the decision's
-- code, as kg_usage_code_name() spells it) for (account_id, key_id) in
-- [start, start + span); '' is "no account" / "no key" (a request
-- without an identified key).  Counts are only ever ADDED to (INSERT ...
-- ON CONFLICT DO UPDATE SET count = count + excluded.count), so that
-- several keygated writing into one database add up.  The primary key
-- leads with start: a flush writes the current minute (the B-tree's
-- end) and retention deletes the oldest rows (its beginning); the two
-- indexes answer the queries by account and by key over a time range.

CREATE TABLE keygate_usage_minute (
    start      BIGINT NOT NULL,      -- Unix seconds, a multiple of 60
    account_id TEXT NOT NULL,        -- '': none
    key_id     TEXT NOT NULL,        -- '': none
    code       TEXT NOT NULL,        -- 'allowed', 'rate_limited', ...
    count      BIGINT NOT NULL,
    PRIMARY KEY (start, account_id, key_id, code)
);
CREATE INDEX keygate_usage_minute_account ON keygate_usage_minute (account_id, start);
CREATE INDEX keygate_usage_minute_key ON keygate_usage_minute (key_id, start);

CREATE TABLE keygate_usage_hour (
    start      BIGINT NOT NULL,      -- a multiple of 3600
    account_id TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    code       TEXT NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (start, account_id, key_id, code)
);
CREATE INDEX keygate_usage_hour_account ON keygate_usage_hour (account_id, start);
CREATE INDEX keygate_usage_hour_key ON keygate_usage_hour (key_id, start);

CREATE TABLE keygate_usage_day (
    start      BIGINT NOT NULL,      -- a multiple of 86400 (UTC days)
    account_id TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    code       TEXT NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (start, account_id, key_id, code)
);
CREATE INDEX keygate_usage_day_account ON keygate_usage_day (account_id, start);
CREATE INDEX keygate_usage_day_key ON keygate_usage_day (key_id, start);

-- Events: each denial and a sample of allowed decisions; never a key,
-- only its 8-character display prefix.  The id is assigned by the store
-- from keygate_usage_state's next_event_id, which a write takes (a row
-- lock on PostgreSQL, the write lock on SQLite) until it commits: ids
-- grow in commit order across every instance, so "newest first" is id
-- order and a reader that has seen id N finds every later event above
-- N.  Hence the indexes end in id; time_ms has its own for the time
-- bounds and for retention.
CREATE TABLE keygate_usage_events (
    id         BIGINT PRIMARY KEY,
    time_ms    BIGINT NOT NULL,      -- Unix milliseconds
    account_id TEXT NOT NULL,        -- '': none
    key_id     TEXT NOT NULL,        -- '': none
    key_prefix TEXT NOT NULL,        -- '': none
    client     TEXT NOT NULL,        -- the client address; '': unknown
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    status     INTEGER NOT NULL,     -- the HTTP status of the decision
    code       TEXT NOT NULL,        -- as in the bucket tables
    decided_by TEXT NOT NULL
);
CREATE INDEX keygate_usage_events_account ON keygate_usage_events (account_id, id);
CREATE INDEX keygate_usage_events_key ON keygate_usage_events (key_id, id);
CREATE INDEX keygate_usage_events_time ON keygate_usage_events (time_ms);

-- The store's own counters: next_event_id.
CREATE TABLE keygate_usage_state (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO keygate_usage_state (name, value) VALUES ('next_event_id', 1);
