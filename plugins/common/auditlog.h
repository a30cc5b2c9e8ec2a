/*
 * auditlog.h - an audit log kept as a JSON-lines file (one record a
 * line), for the key stores that have no table to keep it in: the file
 * store (beside its key file) and the ldap store (its audit_file
 * option).  docs/audit.md "The file".  Linked into those plugins; not
 * exported.
 */
#ifndef KEYGATE_AUDITLOG_H
#define KEYGATE_AUDITLOG_H

#include <keygate/plugin.h>

/* "keys.yaml" -> "keys.audit.jsonl" (".yml" too; any other name gets
 * ".audit.jsonl" appended).  malloc()ed; NULL if out of memory. */
char *kg__auditlog_beside(const char *path);

/*
 * Append r under the next id (the last line's id + 1): the file opened
 * O_APPEND (created 0600), an exclusive flock(2) on it for the id, one
 * write(2) of the whole line, fsync(2) before the lock is let go.  A
 * last line left without its newline by a crash is ended first.
 */
kg_error kg__auditlog_append(const char *path, const kg_audit_record *r,
                             kg_diag *diag);

/* The records of q, newest first (keygate/audit.h).  A missing file is
 * an empty log; a line that is not a record (torn by a crash, edited)
 * is skipped. */
kg_error kg__auditlog_query(const char *path, const kg_audit_query *q,
                            kg_audit_cb cb, void *ud, kg_diag *diag);

#endif
