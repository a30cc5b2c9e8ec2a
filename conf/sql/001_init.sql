-- 001_init.sql - the key table.
--
-- One schema for SQLite and PostgreSQL: only portable types and
-- statements.  Applied by `keygate db migrate` inside one transaction,
-- together with its row in keygate_schema.  Never edit a released
-- migration: add the next numbered file instead.

CREATE TABLE keygate_keys (
    id            TEXT PRIMARY KEY,
    -- SHA-256 of the key as 64 lower-case hex digits; never the key.
    key_hash      TEXT NOT NULL,
    name          TEXT,
    prefix        TEXT,                 -- the 8-character display prefix
    plan          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'revoked')),
    permissions   TEXT NOT NULL DEFAULT '',  -- one per line
    allowed_cidrs TEXT NOT NULL DEFAULT '',  -- one per line
    limits        TEXT NOT NULL DEFAULT '',  -- "name count window burst", one per line
    created_at    BIGINT NOT NULL,           -- Unix seconds
    expires_at    BIGINT,                    -- Unix seconds; NULL: never
    last_used_at  BIGINT                     -- written behind, see docs/sql.md
);

-- A lookup is one probe of this index.
CREATE UNIQUE INDEX keygate_keys_hash ON keygate_keys (key_hash);
