/*
 * check_loader - the plugin loader (core/loader.c) with real modules that
 * the build makes: a good one (scripted), a wrong ABI (badabi), an unknown
 * kind (wrongkind), no descriptor (nosym), and one whose library is absent
 * at run time (missingdep/missingdep.so needs libkgvanish.so.0).  Also the
 * search order, load-once, kg_plugin_scan, and every built plugin loaded
 * once with immediate binding (catches undefined symbols).
 */
#include "testutil.h"

#include <dlfcn.h>
#include <fcntl.h>

static const char *builddir;
static char *fixtures, *plugins, *dir;
static kg_context *ctx;
static char *saved_path;

static void setup(void)
{
    const char *p = getenv("KEYGATE_PLUGIN_PATH");
    builddir = getenv("KEYGATE_BUILDDIR");
    ck_assert_msg(builddir != NULL, "KEYGATE_BUILDDIR is not set (run through make check)");
    saved_path = p ? strdup(p) : NULL;
    fixtures = tu_path(builddir, "tests/fixtures");
    plugins = tu_path(builddir, "plugins");
    dir = tu_tmpdir();
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
}

static void teardown(void)
{
    kg_context_free(ctx);
    if (saved_path)
        setenv("KEYGATE_PLUGIN_PATH", saved_path, 1);
    else
        unsetenv("KEYGATE_PLUGIN_PATH");
    free(saved_path);
    tu_rmrf(dir);
    free(dir);
    free(fixtures);
    free(plugins);
}

/* Load a one-line policy whose account stage is `module`; KG_OK or the
 * error with the diag. */
static kg_error load_with(kg_context *c, const char *plugin_path,
                          const char *stage_yaml, kg_diag *d, kg_policy **p_r)
{
    char *keys = tu_path(dir, "keys.yaml");
    char *t = tu_fmt("%s%s%s"
                     "credential: [{module: bearer}]\n"
                     "keystore: [{module: file, options: {path: \"%s\"}}]\n"
                     "plans:\n  p:\n    account:\n%s",
                     plugin_path ? "plugin_path: [\"" : "",
                     plugin_path ? plugin_path : "",
                     plugin_path ? "\"]\n" : "", keys, stage_yaml);
    kg_error e;
    kg_policy *p = NULL;
    memset(d, 0, sizeof(*d));
    e = kg_policy_load_string(c, t, "loader.yaml", &p, d);
    if (p_r != NULL)
        *p_r = p;
    else
        kg_policy_free(p);
    free(t);
    free(keys);
    return e;
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out;
    char buf[65536];
    size_t n;
    ck_assert_msg(in != NULL, "%s: %s", from, strerror(errno));
    out = fopen(to, "wb");
    ck_assert_ptr_nonnull(out);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

/* ---- good and broken modules --------------------------------------------- */

START_TEST(good_plugin_loads)
{
    kg_diag d;
    kg_policy *p = NULL;
    char buf[2048];
    kg_error e = load_with(ctx, NULL,
                           "      - {module: scripted, options: {result: ok}}\n", &d, &p);
    ck_assert_msg(e == KG_OK, "%s", kg_diag_format(&d, buf, sizeof(buf)));
    ck_assert_ptr_nonnull(p);
    kg_policy_free(p);
}
END_TEST

START_TEST(wrong_abi_refused)
{
    kg_diag d;
    kg_error e = load_with(ctx, NULL, "      - {module: badabi}\n", &d, NULL);
    ck_assert_int_eq(e, KG_ERR_PLUGIN);
    /* names the file, the found and the expected ABI */
    ck_assert_ptr_nonnull(strstr(d.message, "badabi.la"));
    ck_assert_ptr_nonnull(strstr(d.message, "ABI 99.0"));
    ck_assert_ptr_nonnull(strstr(d.message, "expected 1.x"));
    ck_assert_str_eq(d.file, "loader.yaml");
    ck_assert_uint_eq(d.line, 6);
    ck_assert_uint_eq(d.column, 18);
}
END_TEST

START_TEST(unknown_kind_refused)
{
    kg_diag d;
    ck_assert_int_eq(load_with(ctx, NULL, "      - {module: wrongkind}\n", &d, NULL),
                     KG_ERR_PLUGIN);
    ck_assert_ptr_nonnull(strstr(d.message, "wrongkind.la"));
    ck_assert_ptr_nonnull(strstr(d.message, "unknown plugin kind 42"));
}
END_TEST

START_TEST(wrong_kind_for_the_stage)
{
    kg_diag d;
    ck_assert_int_eq(load_with(ctx, NULL, "      - {module: bearer}\n", &d, NULL),
                     KG_ERR_PLUGIN);
    ck_assert_ptr_nonnull(strstr(d.message, "bearer.la"));
    ck_assert_ptr_nonnull(strstr(d.message, "is a credential plugin"));
    ck_assert_ptr_nonnull(strstr(d.message, "account plugin"));
}
END_TEST

START_TEST(missing_symbol_refused)
{
    kg_diag d;
    ck_assert_int_eq(load_with(ctx, NULL, "      - {module: nosym}\n", &d, NULL),
                     KG_ERR_PLUGIN);
    ck_assert_ptr_nonnull(strstr(d.message, "nosym.la"));
    ck_assert_ptr_nonnull(strstr(d.message, "nosym_LTX_keygate_plugin"));
}
END_TEST

START_TEST(missing_dependency_named)
{
    kg_diag d;
    char *md = tu_path(fixtures, "missingdep");
    ck_assert_int_eq(load_with(ctx, md, "      - {module: missingdep}\n", &d, NULL),
                     KG_ERR_PLUGIN);
    ck_assert_ptr_nonnull(strstr(d.message, "missingdep.so"));
    ck_assert_msg(strstr(d.message, "libkgvanish.so.0") != NULL,
                  "does not name the missing library: %s", d.message);
    ck_assert_msg(strstr(d.message, "file not found") == NULL,
                  "says file not found: %s", d.message);
    free(md);
}
END_TEST

START_TEST(not_found_lists_the_path)
{
    kg_diag d;
    char *env = tu_fmt("/nonexistent/a:%s:/nonexistent/b", plugins);
    setenv("KEYGATE_PLUGIN_PATH", env, 1);
    free(env);
    ck_assert_int_eq(load_with(ctx, "/nonexistent/first", "      - {module: scripted}\n",
                               &d, NULL), KG_ERR_PLUGIN);
    ck_assert_ptr_nonnull(strstr(d.message, "plugin 'scripted' not found"));
    /* in search order: plugin_path, then the variable, then built in */
    {
        const char *a = strstr(d.message, "/nonexistent/first");
        const char *b = strstr(d.message, "/nonexistent/a");
        const char *c = strstr(d.message, "/nonexistent/b");
        const char *z = strstr(d.message, kg_plugin_default_dir());
        ck_assert(a && b && c && z && a < b && b < c && c < z);
    }
}
END_TEST

/* ---- search order --------------------------------------------------------- */

/* dirA/scripted.so is broken (a copy of nosym), dirB/scripted.so works. */
static void two_dirs(char **a_r, char **b_r)
{
    char *a = tu_path(dir, "A"), *b = tu_path(dir, "B");
    char *good = tu_path(fixtures, ".libs/scripted.so");
    char *bad = tu_path(fixtures, ".libs/nosym.so");
    char *t;
    ck_assert_int_eq(mkdir(a, 0700), 0);
    ck_assert_int_eq(mkdir(b, 0700), 0);
    t = tu_path(a, "scripted.so");
    copy_file(bad, t);
    free(t);
    t = tu_path(b, "scripted.so");
    copy_file(good, t);
    free(t);
    free(good);
    free(bad);
    *a_r = a;
    *b_r = b;
}

START_TEST(plugin_path_before_environment)
{
    char *a, *b, *env;
    kg_diag d;
    kg_context *c2;
    two_dirs(&a, &b);
    const char *line = "      - {module: scripted, options: {result: ok}}\n";

    /* plugin_path (broken copy) wins over KEYGATE_PLUGIN_PATH (good) */
    env = tu_fmt("%s:%s", b, plugins);
    setenv("KEYGATE_PLUGIN_PATH", env, 1);
    free(env);
    ck_assert_int_eq(load_with(ctx, a, line, &d, NULL), KG_ERR_PLUGIN);
    ck_assert_ptr_nonnull(strstr(d.message, a));

    /* and the other way round */
    ck_assert_int_eq(kg_context_new(&c2), KG_OK);
    env = tu_fmt("%s:%s", a, plugins);
    setenv("KEYGATE_PLUGIN_PATH", env, 1);
    free(env);
    ck_assert_int_eq(load_with(c2, b, line, &d, NULL), KG_OK);
    kg_context_free(c2);

    /* within KEYGATE_PLUGIN_PATH, the first folder wins */
    ck_assert_int_eq(kg_context_new(&c2), KG_OK);
    env = tu_fmt("%s:%s:%s", b, a, plugins);
    setenv("KEYGATE_PLUGIN_PATH", env, 1);
    free(env);
    ck_assert_int_eq(load_with(c2, NULL, line, &d, NULL), KG_OK);
    kg_context_free(c2);
    ck_assert_int_eq(kg_context_new(&c2), KG_OK);
    env = tu_fmt("%s:%s:%s", a, b, plugins);
    setenv("KEYGATE_PLUGIN_PATH", env, 1);
    free(env);
    ck_assert_int_eq(load_with(c2, NULL, line, &d, NULL), KG_ERR_PLUGIN);
    ck_assert_ptr_nonnull(strstr(d.message, a));
    kg_context_free(c2);
    free(a);
    free(b);
}
END_TEST

START_TEST(loaded_once_per_file)
{
    /* The same plugin on several lines with different options: separate
     * instances of one resident module.  Once loaded, the module stays for
     * the context's life, even after the policy that loaded it is freed:
     * replacing the file on disk with a broken one changes nothing for
     * this context (had the module been unloaded with the policy, the next
     * load would read the broken file and fail). */
    char *x = tu_path(dir, "X"), *so, *bad, *good, *tmp, *env;
    kg_diag d;
    kg_policy *p = NULL;
    kg_decision *dec;
    char key[KG_KEY_MAX];
    char *keys;

    ck_assert_int_eq(mkdir(x, 0700), 0);
    so = tu_path(x, "scripted.so");
    good = tu_path(fixtures, ".libs/scripted.so");
    bad = tu_path(fixtures, ".libs/nosym.so");
    copy_file(good, so);
    env = tu_fmt("%s:%s", x, plugins);
    setenv("KEYGATE_PLUGIN_PATH", env, 1);
    keys = tu_keyfile(dir, "p", key);
    ck_assert_int_eq(load_with(ctx, NULL,
        "      - {module: scripted, control: optional, options: {result: ok}}\n"
        "      - {module: scripted, options: {result: fail, code: ip_not_allowed, message: second}}\n"
        "      - {module: scripted, options: {result: ok}}\n", &d, &p), KG_OK);
    dec = tu_check_key(p, key);
    ck_assert_int_eq(kg_decision_status(dec), 403);
    ck_assert_str_eq(kg_decision_message(dec), "second");
    kg_decision_free(dec);
    kg_policy_free(p);

    /* replace the file (new inode, same path) with a broken one */
    tmp = tu_path(x, "tmp.so");
    copy_file(bad, tmp);
    ck_assert_int_eq(rename(tmp, so), 0);
    ck_assert_int_eq(load_with(ctx, NULL, "      - {module: scripted}\n", &d, NULL), KG_OK);
    free(x);
    free(so);
    free(bad);
    free(good);
    free(tmp);
    free(env);
    free(keys);
}
END_TEST

/* ---- scan ----------------------------------------------------------------- */

#define SEEN_MAX 64
struct seen {
    char name[SEEN_MAX][32];
    char kind[SEEN_MAX][16];
    char error[SEEN_MAX][1024];
    int n;
};

static void scan_cb(const kg_plugin_info *i, void *ud)
{
    struct seen *s = ud;
    ck_assert_msg(s->n < SEEN_MAX, "more than %d plugins: raise SEEN_MAX", SEEN_MAX);
    snprintf(s->name[s->n], sizeof(s->name[0]), "%s", i->name);
    snprintf(s->kind[s->n], sizeof(s->kind[0]), "%s", i->kind ? i->kind : "");
    snprintf(s->error[s->n], sizeof(s->error[0]), "%s", i->error ? i->error : "");
    if (i->error == NULL) {
        ck_assert_uint_eq(i->abi_major, KG_PLUGIN_ABI_MAJOR);
        ck_assert_ptr_nonnull(i->path);
    }
    s->n++;
}

static int find(const struct seen *s, const char *name)
{
    int i;
    for (i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0)
            return i;
    return -1;
}

START_TEST(scan_reports_every_plugin)
{
    struct seen s;
    char *md = tu_path(fixtures, "missingdep");
    char *dirs[3] = { plugins, fixtures, md };
    int i;

    unsetenv("KEYGATE_PLUGIN_PATH");
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(kg_plugin_scan(ctx, dirs, 3, scan_cb, &s), KG_OK);
    /* good ones, with their kind */
    ck_assert_int_ge(i = find(&s, "bearer"), 0);
    ck_assert_str_eq(s.kind[i], "credential");
    ck_assert_str_eq(s.error[i], "");
    ck_assert_int_ge(i = find(&s, "header"), 0);
    ck_assert_str_eq(s.kind[i], "credential");
    ck_assert_int_ge(i = find(&s, "file"), 0);
    ck_assert_str_eq(s.kind[i], "keystore");
    ck_assert_int_ge(i = find(&s, "scripted"), 0);
    ck_assert_str_eq(s.kind[i], "account");
    ck_assert_int_ge(i = find(&s, "flaky"), 0);
    ck_assert_str_eq(s.kind[i], "keystore");
    /* broken ones, each with its reason */
    ck_assert_int_ge(i = find(&s, "badabi"), 0);
    ck_assert_ptr_nonnull(strstr(s.error[i], "ABI 99.0"));
    ck_assert_int_ge(i = find(&s, "wrongkind"), 0);
    ck_assert_ptr_nonnull(strstr(s.error[i], "unknown plugin kind"));
    ck_assert_int_ge(i = find(&s, "nosym"), 0);
    ck_assert_ptr_nonnull(strstr(s.error[i], "nosym_LTX_keygate_plugin"));
    ck_assert_int_ge(i = find(&s, "missingdep"), 0);
    ck_assert_ptr_nonnull(strstr(s.error[i], "libkgvanish.so.0"));
    /* each name once */
    for (i = 0; i < s.n; i++)
        ck_assert_int_eq(find(&s, s.name[i]), i);
    free(md);
}
END_TEST

START_TEST(scan_first_of_a_name_wins)
{
    char *a, *b;
    struct seen s;
    char *dirs[2];
    int i;
    two_dirs(&a, &b);
    unsetenv("KEYGATE_PLUGIN_PATH");
    dirs[0] = b;
    dirs[1] = a;
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(kg_plugin_scan(ctx, dirs, 2, scan_cb, &s), KG_OK);
    ck_assert_int_ge(i = find(&s, "scripted"), 0);
    ck_assert_str_eq(s.error[i], "");
    free(a);
    free(b);
}
END_TEST

/* ---- every built plugin, once -------------------------------------------- */

START_TEST(every_built_plugin_loads)
{
    DIR *d = opendir(plugins);
    struct dirent *de;
    int n = 0;
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        char name[64], *so, *t;
        kg_diag diag;
        kg_policy *p = NULL;
        void *h;
        char *dirs[1] = { plugins };
        struct seen s;

        if (len < 4 || strcmp(de->d_name + len - 3, ".la") != 0 || len - 3 >= sizeof(name))
            continue;
        memcpy(name, de->d_name, len - 3);
        name[len - 3] = '\0';
        /* Immediate binding: an undefined symbol fails here, not later. */
        so = tu_fmt("%s/.libs/%s.so", plugins, name);
        h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
        ck_assert_msg(h != NULL, "%s: %s", so, dlerror());
        t = tu_fmt("%s_LTX_keygate_plugin", name);
        ck_assert_msg(dlsym(h, t) != NULL, "%s does not export %s", so, t);
        dlclose(h);
        free(t);
        free(so);
        /* And through the loader, which checks the descriptor. */
        memset(&s, 0, sizeof(s));
        ck_assert_int_eq(kg_plugin_scan(ctx, dirs, 1, scan_cb, &s), KG_OK);
        ck_assert_int_ge(find(&s, name), 0);
        ck_assert_msg(s.error[find(&s, name)][0] == '\0', "%s: %s", name,
                      s.error[find(&s, name)]);
        (void)diag;
        (void)p;
        n++;
    }
    closedir(d);
    /* at least bearer, header and file */
    ck_assert_int_ge(n, 3);
}
END_TEST

START_TEST(kind_names)
{
    ck_assert_str_eq(kg_plugin_kind_name(KG_PLUGIN_CREDENTIAL), "credential");
    ck_assert_str_eq(kg_plugin_kind_name(KG_PLUGIN_KEYSTORE), "keystore");
    ck_assert_str_eq(kg_plugin_kind_name(KG_PLUGIN_ACCOUNT), "account");
    ck_assert_str_eq(kg_plugin_kind_name(KG_PLUGIN_LIMIT), "limit");
    ck_assert_str_eq(kg_plugin_kind_name(KG_PLUGIN_SIGNER), "signer");
    ck_assert_str_eq(kg_plugin_kind_name(42), "unknown");
}
END_TEST

static Suite *loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc;

    tc = tcase_create("modules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, good_plugin_loads);
    tcase_add_test(tc, wrong_abi_refused);
    tcase_add_test(tc, unknown_kind_refused);
    tcase_add_test(tc, wrong_kind_for_the_stage);
    tcase_add_test(tc, missing_symbol_refused);
    tcase_add_test(tc, missing_dependency_named);
    tcase_add_test(tc, not_found_lists_the_path);
    tcase_add_test(tc, kind_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("search path");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, plugin_path_before_environment);
    tcase_add_test(tc, loaded_once_per_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("scan");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, scan_reports_every_plugin);
    tcase_add_test(tc, scan_first_of_a_name_wins);
    tcase_add_test(tc, every_built_plugin_loads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(loader_suite());
}
