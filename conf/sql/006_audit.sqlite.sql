-- 006_audit.sqlite.sql - the audit log and a rotation's link, SQLite:
-- the id an INTEGER PRIMARY KEY AUTOINCREMENT (never used twice, even
-- after the newest rows are deleted).
--
-- keygate_audit: one row per change made to accounts and keys, or
-- refused (docs/audit.md); never a key or a key's hash (the library
-- refuses a record that holds a key, and `changes` is built without the
-- hash).  The id is the rows' order and the query cursor.  One schema
-- for both drivers but for the id column: 006_audit.sqlite.sql and
-- 006_audit.postgresql.sql differ only there.
--
-- keygate_keys.replaced_by / replaces: a rotated key names the key that
-- replaced it, and the new key the one it replaces (NULL: not linked;
-- docs/cli.md "Rotation").

ALTER TABLE keygate_keys ADD COLUMN replaced_by TEXT;
ALTER TABLE keygate_keys ADD COLUMN replaces TEXT;

CREATE TABLE keygate_audit (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms          BIGINT NOT NULL,            -- Unix milliseconds
    actor_key_id     TEXT NOT NULL DEFAULT '',   -- the calling key; '' for the CLI
    actor_account_id TEXT NOT NULL DEFAULT '',
    actor            TEXT NOT NULL,              -- key:k_..., cli:root
    client           TEXT NOT NULL DEFAULT '',   -- the caller's address
    action           TEXT NOT NULL,              -- key.rotate, account.create, ...
    target           TEXT NOT NULL DEFAULT '',   -- k_..., acct_...
    account_id       TEXT NOT NULL DEFAULT '',   -- the target's account
    changes          TEXT NOT NULL DEFAULT '{}', -- JSON {"field":{"before":..,"after":..}}
    result           TEXT NOT NULL               -- ok, not_found, conflict, ...
);
CREATE INDEX keygate_audit_account ON keygate_audit (account_id, id);
CREATE INDEX keygate_audit_target ON keygate_audit (target, id);
CREATE INDEX keygate_audit_time ON keygate_audit (time_ms);
