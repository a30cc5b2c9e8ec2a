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

#include <keygate/plugin.h>

#define KG_ADMIN_PLAN "admin"               /* operators' plan */
#define KG_ADMIN_PERM "admin"               /* an operator key */
#define KG_ADMIN_PERM_MANAGE "account:manage"   /* a customer's own account */

/* 1 if perm is one of them (exactly: a wildcard is not); the library's
 * kg_permission_is_admin_api(), which account ceilings use too. */
#define kg_admin_api_permission(perm) kg_permission_is_admin_api(perm)

#endif
