-- 004_reserved.sql - a placeholder for h/usql's usage tables (issue 18), which
-- holds this version number on another branch.  The migrations must be
-- numbered 1, 2, 3... (plugins/sql/migrate.c), and the audit log is 006:
-- this file keeps the numbers whole until that branch is merged, and is
-- deleted then (a second file of version 004 for every driver is refused
-- by the build's own check, so it cannot be forgotten).
SELECT 1;
