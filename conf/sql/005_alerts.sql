-- 005_alerts.sql - the alerts' durable outbox and the per-account alert
-- settings (docs/alerts.md "Delivery", "Per-account rules").
--
-- One schema for SQLite and PostgreSQL, applied by `keygate db migrate`
-- after 004 (usage) in one transaction with its row in keygate_schema.
--
-- An alert is written here before it is sent, one row per notifier;
-- msg_id is its webhook-id, the same on every attempt and derived from
-- (rule, type, account, key, window, notifier), so that an evaluator
-- restarted in the middle of a window writes nothing twice (the insert
-- of a known msg_id is a no-op).  The sender takes the rows of state 0
-- (pending) whose next_at has come, and marks each: 1 sent, 2 failed
-- (refused by the receiver, or retried past 48 h), else pending again
-- at its backoff.  No secret is stored: an account's own receiver names
-- the file its signing secret is read from.

CREATE TABLE keygate_alert_outbox (
    id           BIGINT PRIMARY KEY,            -- from keygate_usage_state, as events' (004)
    msg_id       TEXT NOT NULL UNIQUE,          -- msg_...: webhook-id
    notifier     TEXT NOT NULL,                 -- the policy's notifiers: name
    rule         TEXT NOT NULL,
    account_id   TEXT NOT NULL DEFAULT '',
    type         TEXT NOT NULL,                 -- alert.fired, alert.cleared
    payload      TEXT NOT NULL,                 -- the JSON sent, byte for byte
    created      BIGINT NOT NULL,               -- Unix seconds
    next_at      BIGINT NOT NULL,               -- when it is due
    attempts     INTEGER NOT NULL DEFAULT 0,
    state        INTEGER NOT NULL DEFAULT 0,    -- 0 pending, 1 sent, 2 failed
    last_status  INTEGER NOT NULL DEFAULT 0,    -- HTTP status of the last attempt
    last_error   TEXT NOT NULL DEFAULT '',
    url          TEXT NOT NULL DEFAULT '',      -- an account's own receiver, or ''
    secret_file  TEXT NOT NULL DEFAULT ''
);
-- The sender's query: pending rows by due time.
CREATE INDEX keygate_alert_outbox_due ON keygate_alert_outbox (state, next_at);

CREATE TABLE keygate_alert_overrides (
    account_id   TEXT NOT NULL,
    rule         TEXT NOT NULL,
    threshold    DOUBLE PRECISION NOT NULL DEFAULT 0,  -- 0: the rule's; -1: off
    url          TEXT NOT NULL DEFAULT '',
    secret_file  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (account_id, rule)
);
INSERT INTO keygate_usage_state (name, value) VALUES ('next_outbox_id', 1);
