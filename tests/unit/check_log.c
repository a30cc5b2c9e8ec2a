/*
 * check_log - messages for the operator (core/log.c): one line per
 * backend per interval, the lines held back counted, one line whatever
 * a server's diagnostic holds, stderr without a log function.  The fake
 * clock drives the interval.
 */
#include "testutil.h"

#include <fcntl.h>

static kg_context *ctx;
static tu_clock clk;
static char got[16][1400];
static int ngot;

static void collect(void *ud, const char *message)
{
    ck_assert_ptr_eq(ud, &ngot);
    if (ngot < 16)
        snprintf(got[ngot], sizeof(got[ngot]), "%s", message);
    ngot++;
}

static void setup(void)
{
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    tu_clock_install(ctx, &clk);
    kg_context_set_log(ctx, collect, &ngot);
    ngot = 0;
}

static void teardown(void)
{
    kg_context_free(ctx);
}

START_TEST(once_per_backend_per_interval)
{
    int i;
    for (i = 0; i < 1000; i++)
        kg_context_log_backend(ctx, "ldaps://a/", "TLS: attempt %d", i);
    ck_assert_int_eq(ngot, 1);
    ck_assert_str_eq(got[0], "ldaps://a/: TLS: attempt 0");
    /* another backend has its own interval */
    kg_context_log_backend(ctx, "ldap://b/", "refused");
    ck_assert_int_eq(ngot, 2);
    ck_assert_str_eq(got[1], "ldap://b/: refused");
    /* 9 s later: still within the default 10 s */
    tu_clock_advance(&clk, 9);
    kg_context_log_backend(ctx, "ldaps://a/", "TLS: later");
    ck_assert_int_eq(ngot, 2);
    /* 10 s after it spoke: once more, saying how many were held back */
    tu_clock_advance(&clk, 1);
    kg_context_log_backend(ctx, "ldaps://a/", "TLS: again");
    kg_context_log_backend(ctx, "ldaps://a/", "TLS: and again");
    ck_assert_int_eq(ngot, 3);
    ck_assert_str_eq(got[2], "ldaps://a/: TLS: again (and 1000 more in the last 10 s)");
    /* nothing held back: no count */
    tu_clock_advance(&clk, 30);
    kg_context_log_backend(ctx, "ldap://b/", "timeout");
    ck_assert_str_eq(got[3], "ldap://b/: timeout");
}
END_TEST

START_TEST(interval_is_settable)
{
    kg_context_set_log_interval(ctx, 60);
    kg_context_log_backend(ctx, "pg", "down");
    tu_clock_advance(&clk, 59);
    kg_context_log_backend(ctx, "pg", "down");
    ck_assert_int_eq(ngot, 1);
    tu_clock_advance(&clk, 1);
    kg_context_log_backend(ctx, "pg", "down");
    ck_assert_int_eq(ngot, 2);
    ck_assert_str_eq(got[1], "pg: down (and 1 more in the last 60 s)");
    /* 0: the default again */
    kg_context_set_log_interval(ctx, 0);
    tu_clock_advance(&clk, 10);
    kg_context_log_backend(ctx, "pg", "down");
    ck_assert_int_eq(ngot, 3);
}
END_TEST

START_TEST(one_line_whatever_the_server_says)
{
    kg_context_log_backend(ctx, "redis://r/", "said \"%s\"", "a\nfake line\r\x1b[31m");
    ck_assert_int_eq(ngot, 1);
    ck_assert_str_eq(got[0], "redis://r/: said \"a fake line  [31m\"");
}
END_TEST

START_TEST(many_backends)
{
    char name[32];
    int i;
    /* More backends than the table holds: each still speaks, once. */
    for (i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "ldap://%d/", i);
        kg_context_log_backend(ctx, name, "down");
        kg_context_log_backend(ctx, name, "down");
    }
    ck_assert_int_eq(ngot, 200);
}
END_TEST

START_TEST(stderr_without_a_log_function)
{
    char *dir = tu_tmpdir(), *path = tu_path(dir, "err"), buf[256];
    int fd, saved;
    FILE *f;
    size_t n;

    kg_context_set_log(ctx, NULL, NULL);
    fflush(stderr);
    saved = dup(2);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    dup2(fd, 2);
    close(fd);
    kg_context_log_backend(ctx, "ldap://x/", "bind refused");
    kg_context_log_backend(ctx, "ldap://x/", "bind refused");
    dup2(saved, 2);
    close(saved);
    f = fopen(path, "r");
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    ck_assert_str_eq(buf, "keygate: ldap://x/: bind refused\n");
    ck_assert_int_eq(ngot, 0);
    tu_rmrf(dir);
    free(dir);
    free(path);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("backend");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, once_per_backend_per_interval);
    tcase_add_test(tc, interval_is_settable);
    tcase_add_test(tc, one_line_whatever_the_server_says);
    tcase_add_test(tc, many_backends);
    tcase_add_test(tc, stderr_without_a_log_function);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(log_suite());
}
