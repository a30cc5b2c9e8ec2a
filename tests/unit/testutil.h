/*
 * testutil.h - helpers shared by the Check suites (unit and integration):
 * a scratch folder, files written in one call, a fake clock, a key file
 * holding one valid key, keys made through the key management API,
 * policies loaded from text or a template, requests built in one call,
 * the usual fixture and the runner.
 *
 * Header-only on purpose: every suite is one program, and the helpers are
 * small.  Everything is `static` and marked unused so that a suite that
 * needs only some of them builds without warnings.
 */
#ifndef KEYGATE_TESTUTIL_H
#define KEYGATE_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

#define TU_UNUSED __attribute__((unused))

/* ---- files ----------------------------------------------------------- */

/* A new empty folder under $TMPDIR (or /tmp); malloc()ed path. */
static TU_UNUSED char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *p;
    if (base == NULL || *base == '\0')
        base = "/tmp";
    ck_assert(asprintf(&p, "%s/kgtest.XXXXXX", base) > 0);
    ck_assert_msg(mkdtemp(p) != NULL, "mkdtemp: %s", strerror(errno));
    return p;
}

/* The newest SQL schema version: the highest NNN of conf/sql/NNN_*.sql
 * in the source tree (so that a new migration needs no test changed). */
static TU_UNUSED int tu_schema_latest(void)
{
    const char *src = getenv("KEYGATE_SRCDIR");
    char path[600];
    struct dirent *e;
    DIR *d;
    int v = 0;

    ck_assert_msg(src != NULL, "KEYGATE_SRCDIR is not set (run through make check)");
    snprintf(path, sizeof(path), "%s/conf/sql", src);
    ck_assert_ptr_nonnull(d = opendir(path));
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && atoi(e->d_name) > v)
            v = atoi(e->d_name);
    closedir(d);
    ck_assert_int_ge(v, 4);
    return v;
}

/* rm -rf, for folders the tests made (no symlink following needed). */
static TU_UNUSED void tu_rmrf(const char *path)
{
    DIR *d;
    struct dirent *de;
    struct stat st;
    if (path == NULL || lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode) && (d = opendir(path)) != NULL) {
        while ((de = readdir(d)) != NULL) {
            char *c;
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            if (asprintf(&c, "%s/%s", path, de->d_name) > 0) {
                tu_rmrf(c);
                free(c);
            }
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Write a file whole, as keygate writes key files (a temporary file
 * renamed over it): a store refreshing in the background reads the old
 * text or the new, never half of one. */
static TU_UNUSED void tu_write(const char *path, const char *text)
{
    char tmp[4096];
    FILE *f;
    snprintf(tmp, sizeof(tmp), "%s.tu-tmp", path);
    f = fopen(tmp, "w");
    ck_assert_msg(f != NULL, "%s: %s", tmp, strerror(errno));
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_msg(rename(tmp, path) == 0, "%s: %s", path, strerror(errno));
}

/* The whole file as a malloc()ed string, or NULL if it cannot be read. */
static TU_UNUSED char *tu_read(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0;
    if (f == NULL)
        return NULL;
    {
        FILE *m = open_memstream(&buf, &len);
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            fwrite(chunk, 1, n, m);
        fclose(m);
    }
    fclose(f);
    return buf;
}

static TU_UNUSED char *tu_path(const char *dir, const char *name)
{
    char *p;
    ck_assert(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static TU_UNUSED char *tu_vfmt(const char *fmt, va_list ap)
    __attribute__((format(printf, 1, 0)));
static TU_UNUSED char *tu_vfmt(const char *fmt, va_list ap)
{
    char *p;
    ck_assert(vasprintf(&p, fmt, ap) >= 0);
    return p;
}

static TU_UNUSED char *tu_fmt(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static TU_UNUSED char *tu_fmt(const char *fmt, ...)
{
    va_list ap;
    char *p;
    va_start(ap, fmt);
    p = tu_vfmt(fmt, ap);
    va_end(ap);
    return p;
}

/* ---- the fake clock -------------------------------------------------- */

/*
 * Microseconds since the epoch; tests move it by hand.  Read and written
 * atomically: the limiter and pool tests read it from several threads.
 */
typedef struct tu_clock {
    int64_t now_us;
} tu_clock;

static TU_UNUSED int64_t tu_clock_fn(void *ud)
{
    return __atomic_load_n(&((tu_clock *)ud)->now_us, __ATOMIC_SEQ_CST);
}

/* 2026-01-01T00:00:00Z: far from 0, so "expires 0 = never" stays apart. */
#define TU_EPOCH_S INT64_C(1767225600)

static TU_UNUSED void tu_clock_install(kg_context *ctx, tu_clock *c)
{
    __atomic_store_n(&c->now_us, TU_EPOCH_S * 1000000, __ATOMIC_SEQ_CST);
    kg_context_set_clock(ctx, tu_clock_fn, c);
}

/* Set the clock to `seconds` since the epoch. */
static TU_UNUSED void tu_clock_set(tu_clock *c, int64_t seconds)
{
    __atomic_store_n(&c->now_us, seconds * 1000000, __ATOMIC_SEQ_CST);
}

static TU_UNUSED void tu_clock_advance_us(tu_clock *c, int64_t us)
{
    __atomic_add_fetch(&c->now_us, us, __ATOMIC_SEQ_CST);
}

static TU_UNUSED void tu_clock_advance(tu_clock *c, int64_t seconds)
{
    tu_clock_advance_us(c, seconds * 1000000);
}

/* ---- keys and key files ---------------------------------------------- */

/* One record of a key file for `key`, YAML text (malloc()ed). */
static TU_UNUSED char *tu_key_record(const char *id, const char *key,
                                     const char *plan, const char *extra)
{
    unsigned char h[KG_HASH_LEN];
    char hex[2 * KG_HASH_LEN + 1];
    kg_key_hash(key, strlen(key), h);
    kg_hash_to_hex(h, hex);
    return tu_fmt("  - id: %s\n    name: %s test key\n    prefix: \"%.8s\"\n"
                  "    hash: %s\n    plan: %s\n    status: active\n%s",
                  id, id, key, hex, plan, extra ? extra : "");
}

/*
 * Write `dir`/keys.yaml holding one active key on `plan` (id "k_test");
 * the key goes into key_out (KG_KEY_MAX bytes).  Returns the file's path.
 */
static TU_UNUSED char *tu_keyfile(const char *dir, const char *plan,
                                  char key_out[KG_KEY_MAX])
{
    char *path = tu_path(dir, "keys.yaml"), *rec, *text;
    ck_assert_int_eq(kg_key_generate("whizo", key_out, KG_KEY_MAX), KG_OK);
    rec = tu_key_record("k_test", key_out, plan, NULL);
    text = tu_fmt("keys:\n%s", rec);
    tu_write(path, text);
    free(rec);
    free(text);
    return path;
}

/*
 * kg_keys_create() that must succeed: r goes to the policy's writable
 * store, the key into key_out.  r stays the caller's.
 */
static TU_UNUSED void tu_keys_create(kg_policy *p, kg_record *r,
                                     char key_out[KG_KEY_MAX])
{
    kg_diag d;
    char buf[2048];
    kg_error e;
    memset(&d, 0, sizeof(d));
    e = kg_keys_create(p, r, key_out, KG_KEY_MAX, &d);
    ck_assert_msg(e == KG_OK, "key create (%s): %s", kg_strerror(e),
                  kg_diag_format(&d, buf, sizeof(buf)));
}

/*
 * A new key on `plan` named `name` through the key management API; the
 * key into key_out.  The record (with its new id) into *rec_r if not
 * NULL (the caller unrefs it).
 */
static TU_UNUSED void tu_key_new(kg_policy *p, const char *plan, const char *name,
                                 char key_out[KG_KEY_MAX], kg_record **rec_r)
{
    kg_record *r = kg_record_new();
    ck_assert_ptr_nonnull(r);
    kg_record_set_plan(r, plan);
    kg_record_set_name(r, name);
    tu_keys_create(p, r, key_out);
    if (rec_r != NULL)
        *rec_r = r;
    else
        kg_record_unref(r);
}

/* ---- policies -------------------------------------------------------- */

/* Load a policy from text; fail the test with the diag if it does not load. */
static TU_UNUSED kg_policy *tu_policy(kg_context *ctx, const char *yaml)
{
    kg_policy *p = NULL;
    kg_diag d;
    char buf[2048];
    kg_error e;
    memset(&d, 0, sizeof(d));
    e = kg_policy_load_string(ctx, yaml, "test.yaml", &p, &d);
    ck_assert_msg(e == KG_OK, "policy did not load (%s): %s\n---\n%s",
                  kg_strerror(e), kg_diag_format(&d, buf, sizeof(buf)), yaml);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* tu_policy() of a printf template. */
static TU_UNUSED kg_policy *tu_policyf(kg_context *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static TU_UNUSED kg_policy *tu_policyf(kg_context *ctx, const char *fmt, ...)
{
    va_list ap;
    char *yaml;
    kg_policy *p;
    va_start(ap, fmt);
    yaml = tu_vfmt(fmt, ap);
    va_end(ap);
    p = tu_policy(ctx, yaml);
    free(yaml);
    return p;
}

/* Load a policy that must fail; returns the error, fills d. */
static TU_UNUSED kg_error tu_policy_error(kg_context *ctx, const char *yaml,
                                          kg_diag *d)
{
    kg_policy *p = NULL;
    kg_error e;
    memset(d, 0, sizeof(*d));
    e = kg_policy_load_string(ctx, yaml, "bad.yaml", &p, d);
    ck_assert_msg(e != KG_OK, "policy loaded but should not have:\n%s", yaml);
    ck_assert_ptr_null(p);
    return e;
}

/* ---- requests -------------------------------------------------------- */

/*
 * A request with headers given as "Name: value" strings (NULL-terminated
 * list), GET /.
 */
static TU_UNUSED kg_request *tu_request(const char *first, ...)
{
    kg_request *r = NULL;
    va_list ap;
    const char *h;
    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    kg_request_set_method(r, "GET");
    kg_request_set_path(r, "/");
    kg_request_set_client(r, "192.0.2.10");
    va_start(ap, first);
    for (h = first; h != NULL; h = va_arg(ap, const char *)) {
        const char *colon = strchr(h, ':');
        const char *v;
        ck_assert_ptr_nonnull(colon);
        v = colon + 1;
        while (*v == ' ')
            v++;
        ck_assert_int_eq(kg_request_add_header_n(r, h, (size_t)(colon - h), v,
                                                 strlen(v)), KG_OK);
    }
    va_end(ap);
    return r;
}

/* Check a request and return the decision (never NULL). */
static TU_UNUSED kg_decision *tu_check(const kg_policy *p, const kg_request *r)
{
    kg_decision *d = NULL;
    ck_assert_int_eq(kg_check(p, r, &d), KG_OK);
    ck_assert_ptr_nonnull(d);
    return d;
}

/* "Authorization: Bearer <key>" as a malloc()ed header line. */
static TU_UNUSED char *tu_bearer(const char *key)
{
    return tu_fmt("Authorization: Bearer %s", key);
}

/*
 * A request with "Authorization: Bearer <key>", and the method, path and
 * client address that are not NULL (a NULL one is not set at all).
 */
static TU_UNUSED kg_request *tu_request_bearer(const char *key, const char *method,
                                               const char *path, const char *client)
{
    kg_request *r = NULL;
    char *auth = tu_fmt("Bearer %s", key);
    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    ck_assert_int_eq(kg_request_add_header(r, "Authorization", auth), KG_OK);
    if (method != NULL)
        kg_request_set_method(r, method);
    if (path != NULL)
        kg_request_set_path(r, path);
    if (client != NULL)
        kg_request_set_client(r, client);
    free(auth);
    return r;
}

/* tu_request_bearer() checked; the decision (never NULL). */
static TU_UNUSED kg_decision *tu_check_bearer(const kg_policy *p, const char *key,
                                              const char *method, const char *path,
                                              const char *client)
{
    kg_request *r = tu_request_bearer(key, method, path, client);
    kg_decision *d = tu_check(p, r);
    kg_request_free(r);
    return d;
}

/* Check with one bearer key, GET / from 192.0.2.10; returns the decision. */
static TU_UNUSED kg_decision *tu_check_key(const kg_policy *p, const char *key)
{
    return tu_check_bearer(p, key, "GET", "/", "192.0.2.10");
}

/* ---- the usual fixture ----------------------------------------------- */

/*
 * A scratch folder holding keys.yaml with one key on `plan` (the key into
 * key_out, id k_test) and a new context.  tu_teardown() undoes it.
 */
static TU_UNUSED void tu_setup(char **dir_r, char **keyfile_r, const char *plan,
                               char key_out[KG_KEY_MAX], kg_context **ctx_r)
{
    *dir_r = tu_tmpdir();
    *keyfile_r = tu_keyfile(*dir_r, plan, key_out);
    ck_assert_int_eq(kg_context_new(ctx_r), KG_OK);
}

/* Free the policy (may be NULL) and the context, remove the folder. */
static TU_UNUSED void tu_teardown(char *dir, char *keyfile, kg_context *ctx,
                                  kg_policy *pol)
{
    kg_policy_free(pol);
    kg_context_free(ctx);
    tu_rmrf(dir);
    free(dir);
    free(keyfile);
}

/* Run a suite; the exit status for main(). */
static TU_UNUSED int tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
