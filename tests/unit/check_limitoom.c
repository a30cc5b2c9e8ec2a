/*
 * check_limitoom.c - the memory limiter out of memory.  Limiter slots
 * come from 2 MiB chunks mapped with mmap() (core/cells.c
 * kg__hp_chunk_new): when none can be mapped, a key that needs a new
 * slot must get 503 auth_unavailable from every limiter kind (never be
 * admitted unlimited, never a 429, never a crash), while keys that have
 * slots keep being counted; once memory is back, so is the new key.
 *
 * This program defines mmap() itself (linked -export-dynamic, so that
 * libkeygate's calls come here) and fails anonymous mappings of 2 MiB or
 * more while `fail_big` is set; everything else goes to the kernel.
 * glibc's malloc maps through its own internal entry point, and
 * AddressSanitizer's allocator through raw system calls, so neither is
 * disturbed: the test runs under the sanitizers too.  Keys come from
 * the anykey store (every well-formed key exists); its records are
 * freed after each check, so their cells never need a new chunk.
 */
#include "testutil.h"

#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static atomic_int fail_big;

/* Default visibility: the suites are built with -fvisibility=hidden. */
__attribute__((visibility("default")))
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (atomic_load(&fail_big) && (flags & MAP_ANONYMOUS) &&
        len >= ((size_t)2 << 20)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static tu_clock clk;
static kg_context *ctx;
static kg_policy *pol;

static const char *const lines[] = {
    "{module: fixed_window, control: required, options: {name: n, count: 100, window: 1h}}",
    "{module: sliding_window, control: required, options: {name: n, count: 100, window: 1h}}",
    "{module: token_bucket, control: required, options: {name: n, count: 100, window: 1h}}",
    "{module: concurrency, control: required, options: {name: n, count: 100}}",
};

static void setup(void)
{
    atomic_store(&fail_big, 0);
    ck_assert_int_eq(kg_context_new(&ctx), KG_OK);
    tu_clock_install(ctx, &clk);
    tu_clock_set(&clk, 1800000000);
    pol = NULL;
}

static void teardown(void)
{
    atomic_store(&fail_big, 0);
    kg_policy_free(pol);
    kg_context_free(ctx);
}

static void load(int kind)
{
    pol = tu_policyf(ctx,
        "credential:\n"
        "  - {module: bearer, control: required}\n"
        "keystore:\n"
        "  - {module: anykey, options: {plan: p}}\n"
        "plans:\n"
        "  p:\n"
        "    limit:\n"
        "      - %s\n", lines[kind]);
}

/* Check a key that must be admitted; the limit's remaining count. */
static int64_t admitted(const char *key)
{
    kg_decision *d = tu_check_key(pol, key);
    int64_t rem = -1;
    ck_assert_msg(kg_decision_allowed(d), "%d %s", kg_decision_status(d),
                  kg_decision_message(d));
    ck_assert_int_eq(kg_decision_limit(d, 0, NULL, NULL, &rem, NULL, NULL), KG_OK);
    kg_decision_free(d);
    return rem;
}

/* Is this decision the limiter's 503? (Anything else fails the test.) */
static int limiter_unavailable(kg_decision *d)
{
    if (kg_decision_allowed(d))
        return 0;
    ck_assert_msg(kg_decision_status(d) == 503 &&
                  kg_decision_code(d) == KG_CODE_AUTH_UNAVAILABLE,
                  "%d %s", kg_decision_status(d), kg_decision_message(d));
    ck_assert_msg(strncmp(kg_decision_decided_by(d), "limit:", 6) == 0,
                  "decided by %s", kg_decision_decided_by(d));
    ck_assert_ptr_null(kg_decision_lease(d));
    return 1;
}

/*
 * With the first chunk mapped (the old key's), new keys take its slots
 * until it runs out (4,096 slots of 512 bytes): then the next new key
 * needs a chunk that cannot be mapped.
 */
START_TEST(new_key_unavailable_old_keys_counted)
{
    char old[KG_KEY_MAX], nk[KG_KEY_MAX];
    kg_decision *d;
    int i, found = 0;

    load(_i);
    ck_assert_int_eq(kg_key_generate("whizo", old, KG_KEY_MAX), KG_OK);
    ck_assert_int_eq(admitted(old), 99);
    atomic_store(&fail_big, 1);
    for (i = 0; i < 5000 && !found; i++) {
        ck_assert_int_eq(kg_key_generate("whizo", nk, KG_KEY_MAX), KG_OK);
        d = tu_check_key(pol, nk);
        found = limiter_unavailable(d);
        kg_decision_free(d);
    }
    ck_assert_msg(found, "no new key was refused with mmap failing");
    /* Asked again, still refused; never admitted. */
    d = tu_check_key(pol, nk);
    ck_assert(limiter_unavailable(d));
    kg_decision_free(d);
    /* The old key keeps its slot and its count. */
    ck_assert_int_eq(admitted(old), 98);
    ck_assert_int_eq(admitted(old), 97);
    /* Memory is back: the new key gets its slot. */
    atomic_store(&fail_big, 0);
    ck_assert_int_eq(admitted(nk), 99);
    ck_assert_int_eq(admitted(old), 96);
}
END_TEST

static Suite *limitoom_suite(void)
{
    Suite *s = suite_create("limitoom");
    TCase *tc = tcase_create("mmap fails");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, new_key_unavailable_old_keys_counted, 0,
                        (int)(sizeof(lines) / sizeof(lines[0])));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_run(limitoom_suite());
}
