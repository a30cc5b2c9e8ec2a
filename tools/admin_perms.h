/*
 * admin_perms.h - the permissions keygated's admin API checks itself
 * (docs/admin-api.md, "Who may call it"), shared by keygated and the
 * keygate CLI: a key holding one means something on any plan, whether
 * or not the plan runs a scope line, so the CLI does not refuse them on
 * a plan without one (as it refuses permissions that would never be
 * enforced), and keygated reads them from the calling key's record.
 */
#ifndef KEYGATE_ADMIN_PERMS_H
#define KEYGATE_ADMIN_PERMS_H

#include <string.h>

#define KG_ADMIN_PLAN "admin"               /* operators' plan */
#define KG_ADMIN_PERM "admin"               /* an operator key */
#define KG_ADMIN_PERM_MANAGE "account:manage"   /* a customer's own account */

/* 1 if perm is one of them (exactly: a wildcard is not). */
static inline int kg_admin_api_permission(const char *perm)
{
    return strcmp(perm, KG_ADMIN_PERM) == 0 ||
           strcmp(perm, KG_ADMIN_PERM_MANAGE) == 0;
}

#endif
