-- 007_usage_by_account.sqlite.sql - SQLite: the usage bucket tables
-- stored in account order, WITHOUT ROWID.
--
-- In 004 a bucket table is a rowid table in start order, and a query by
-- account (the admin API's usage route, `keygate usage --account`)
-- walks the (account_id, start) index and then looks up each row in the
-- table by its rowid: 168 rows of a 7-day hourly query are 168 lookups
-- scattered over the whole file, each a disk read once the file is
-- larger than the page cache.  Here each table is a B-tree keyed by
-- (account_id, start, key_id, code), so an account's rows over a time
-- range sit side by side in a few leaf pages: one search, then a scan.
-- Measured against a covering index on the 004 table (docs/sql.md,
-- "Usage: tables"): smaller file, a cheaper flush, the same query.
--
-- The key is the same four columns as before (the flush's ON CONFLICT
-- names them in any order); only their order changes.  Two indexes:
-- (start) for retention's DELETE ... WHERE start < ?, the queries over
-- every account and `top` (its entries end in the key, so they are in
-- (start, account_id, key_id, code) order, as those queries sort);
-- (key_id, start) for the queries by key (the count then read from the
-- table, at its account's rows).  PostgreSQL keeps its heap and gets a
-- covering index instead (007_usage_by_account.postgresql.sql).
--
-- The rows are copied in the new key order, which packs the B-trees;
-- the rebuild is one transaction with the version row, so readers see
-- the old tables or the new ones.  It reads and writes every row: on a
-- large store (tens of millions of rows) it takes minutes, during which
-- the usage store's writer waits (docs/sql.md "Schema and migrations").

CREATE TABLE keygate_usage_minute_new (
    start      BIGINT NOT NULL,      -- Unix seconds, a multiple of 60
    account_id TEXT NOT NULL,        -- '': none
    key_id     TEXT NOT NULL,        -- '': none
    code       TEXT NOT NULL,        -- 'allowed', 'rate_limited', ...
    count      BIGINT NOT NULL,
    PRIMARY KEY (account_id, start, key_id, code)
) WITHOUT ROWID;
INSERT INTO keygate_usage_minute_new (start, account_id, key_id, code, count)
    SELECT start, account_id, key_id, code, count FROM keygate_usage_minute
    ORDER BY account_id, start, key_id, code;
DROP TABLE keygate_usage_minute;
ALTER TABLE keygate_usage_minute_new RENAME TO keygate_usage_minute;
CREATE INDEX keygate_usage_minute_start ON keygate_usage_minute (start);
CREATE INDEX keygate_usage_minute_key ON keygate_usage_minute (key_id, start);

CREATE TABLE keygate_usage_hour_new (
    start      BIGINT NOT NULL,      -- a multiple of 3600
    account_id TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    code       TEXT NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (account_id, start, key_id, code)
) WITHOUT ROWID;
INSERT INTO keygate_usage_hour_new (start, account_id, key_id, code, count)
    SELECT start, account_id, key_id, code, count FROM keygate_usage_hour
    ORDER BY account_id, start, key_id, code;
DROP TABLE keygate_usage_hour;
ALTER TABLE keygate_usage_hour_new RENAME TO keygate_usage_hour;
CREATE INDEX keygate_usage_hour_start ON keygate_usage_hour (start);
CREATE INDEX keygate_usage_hour_key ON keygate_usage_hour (key_id, start);

CREATE TABLE keygate_usage_day_new (
    start      BIGINT NOT NULL,      -- a multiple of 86400 (UTC days)
    account_id TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    code       TEXT NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (account_id, start, key_id, code)
) WITHOUT ROWID;
INSERT INTO keygate_usage_day_new (start, account_id, key_id, code, count)
    SELECT start, account_id, key_id, code, count FROM keygate_usage_day
    ORDER BY account_id, start, key_id, code;
DROP TABLE keygate_usage_day;
ALTER TABLE keygate_usage_day_new RENAME TO keygate_usage_day;
CREATE INDEX keygate_usage_day_start ON keygate_usage_day (start);
CREATE INDEX keygate_usage_day_key ON keygate_usage_day (key_id, start);
