-- 003_accounts.sql - accounts: the customer that owns keys
-- (docs/policy.md "Accounts", docs/sql.md "Accounts").
--
-- One schema for SQLite and PostgreSQL, applied by `keygate db migrate`
-- in one transaction with its row in keygate_schema: a crash or an
-- error leaves the version-2 schema and its keys as they were.
--
-- keygate_keys.account_id names the key's account.  It is a reference
-- kept by the store, not a FOREIGN KEY constraint: a revoked key keeps
-- the id of an account deleted after it (docs/plugins.md "Accounts"),
-- which a constraint would refuse.  The store checks in the transaction
-- that writes a key that its account exists; a key whose account is
-- gone is refused by a check unless revoked.

CREATE TABLE keygate_accounts (
    id            TEXT PRIMARY KEY,          -- acct_... or given
    external_id   TEXT UNIQUE,               -- the operator's id; NULL: none
    name          TEXT NOT NULL,
    plan          TEXT NOT NULL,
    limits        TEXT NOT NULL DEFAULT '',  -- "name count window burst", one per line
    allowed_cidrs TEXT NOT NULL DEFAULT '',  -- the keys' ceiling, one per line
    permissions   TEXT NOT NULL DEFAULT '',  -- the keys' ceiling, one per line
    status        TEXT NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'suspended')),
    created_at    BIGINT NOT NULL,           -- Unix seconds
    updated_at    BIGINT NOT NULL,           -- Unix seconds
    metadata      TEXT                       -- one JSON object, <= 4096 bytes
);

ALTER TABLE keygate_keys ADD COLUMN account_id TEXT;

-- Every key without an account gets one of its own, as the file store
-- does on its next write: id "acct_" + the key id after "k_", the key's
-- name (its id if it has none), plan and created, the key's limit
-- overrides moved to the account (they were the plan's limits for this
-- key; the plan's limits are now counted per account), so every key
-- keeps working with its limits.  A key id without "k_" whose "k_" form
-- is another key's id gets ".1" after it, so that the two stay apart.
INSERT INTO keygate_accounts (id, name, plan, limits, created_at, updated_at)
    SELECT 'acct_' || CASE
               WHEN substr(k.id, 1, 2) = 'k_' THEN substr(k.id, 3)
               WHEN EXISTS (SELECT 1 FROM keygate_keys o WHERE o.id = 'k_' || k.id)
                   THEN k.id || '.1'
               ELSE k.id END,
           COALESCE(k.name, k.id), k.plan, k.limits, k.created_at, k.created_at
    FROM keygate_keys k WHERE k.account_id IS NULL;

UPDATE keygate_keys SET limits = '', account_id = 'acct_' || CASE
        WHEN substr(id, 1, 2) = 'k_' THEN substr(id, 3)
        WHEN EXISTS (SELECT 1 FROM keygate_keys o WHERE o.id = 'k_' || keygate_keys.id)
            THEN id || '.1'
        ELSE id END
    WHERE account_id IS NULL;

-- An account's keys (delete, and the count that refuses it).
CREATE INDEX keygate_keys_account ON keygate_keys (account_id);
