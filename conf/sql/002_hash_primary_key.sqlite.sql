-- 002_hash_primary_key.sqlite.sql - SQLite only: the key table keyed by
-- key_hash, WITHOUT ROWID.
--
-- In 001 a lookup by hash is two B-tree searches: the key_hash index
-- gives a rowid, and the rowid finds the row in the table (about 7 pages
-- touched with a million keys).  Here the rows live in the B-tree of
-- their hash, so a lookup is one search (about 4 pages), which is most
-- of what an uncached lookup costs once it makes no system call
-- (docs/sql.md, "Performance").  Same columns, same constraints (id and
-- key_hash each unique and not null), same statements: only the
-- storage changes.  PostgreSQL has no such storage choice (a heap and a
-- B-tree index is its one-probe lookup): for it, version 2 changes
-- nothing.
--
-- The rows are copied in key_hash order, which packs the new B-tree
-- densely; the whole rebuild is one transaction (with the version row),
-- so readers see the old table or the new one, never a half.

CREATE TABLE keygate_keys_new (
    id            TEXT NOT NULL,
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
    last_used_at  BIGINT,                    -- written behind, see docs/sql.md
    PRIMARY KEY (key_hash)
) WITHOUT ROWID;

INSERT INTO keygate_keys_new (id, key_hash, name, prefix, plan, status,
        permissions, allowed_cidrs, limits, created_at, expires_at, last_used_at)
    SELECT id, key_hash, name, prefix, plan, status, permissions,
           allowed_cidrs, limits, created_at, expires_at, last_used_at
    FROM keygate_keys ORDER BY key_hash;

DROP TABLE keygate_keys;
ALTER TABLE keygate_keys_new RENAME TO keygate_keys;

-- `keygate key show/update/revoke ID` finds a key by id.
CREATE UNIQUE INDEX keygate_keys_id ON keygate_keys (id);
