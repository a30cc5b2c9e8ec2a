-- 007_usage_by_account.postgresql.sql - PostgreSQL: the usage bucket
-- tables' index by account made covering.
--
-- In 004 a query by account (the admin API's usage route, `keygate
-- usage --account`) walks (account_id, start) and then reads each row
-- from the heap, which is in write order (start order): a 7-day hourly
-- query is 168 heap reads scattered over the table.  With every column
-- the query returns in the index, PostgreSQL answers it by an
-- index-only scan, the heap read only for pages the visibility map does
-- not yet mark all-visible (the current hours, which are in memory).
-- count is an INCLUDE column: carried in the leaves, not part of the
-- key.  A heap has no clustered order that lasts (CLUSTER is a one-time
-- rewrite), hence an index; SQLite's tables are rebuilt in account
-- order instead (007_usage_by_account.sqlite.sql).
--
-- CREATE INDEX locks the table against writes while it runs (in the
-- migration's transaction): on a large store that is minutes, during
-- which flushes wait (docs/sql.md "Schema and migrations").

DROP INDEX keygate_usage_minute_account;
CREATE INDEX keygate_usage_minute_account ON keygate_usage_minute
    (account_id, start, key_id, code) INCLUDE (count);
DROP INDEX keygate_usage_hour_account;
CREATE INDEX keygate_usage_hour_account ON keygate_usage_hour
    (account_id, start, key_id, code) INCLUDE (count);
DROP INDEX keygate_usage_day_account;
CREATE INDEX keygate_usage_day_account ON keygate_usage_day
    (account_id, start, key_id, code) INCLUDE (count);
