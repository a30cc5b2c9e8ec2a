/*
 * check_limitoom.c - the memory limiter out of memory.  (And, outside
 * the sanitizer build, a decision's lease list that cannot grow: see
 * lease_list_out_of_memory.)  Limiter slots
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

/*
 * And malloc(), outside the sanitizer build (AddressSanitizer's own
 * malloc must stay the only one there): while `fail_from` is set, every
 * allocation of at least that many bytes fails; the others go to glibc.
 */
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define TEST_MALLOC 1
extern void *__libc_malloc(size_t size);
static atomic_size_t fail_from;

__attribute__((visibility("default")))
void *malloc(size_t size)
{
    size_t from = atomic_load(&fail_from);
    if (from != 0 && size >= from) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(size);
}
#endif

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

#ifdef TEST_MALLOC
/*
 * Ten concurrency limits of one lease each: the decision's lease list
 * outgrows its inline 512 bytes at the ninth lease and must move to the
 * heap.  With that allocation failing the check is 503 (it cannot hand
 * out a lease it took) and gives back the eight it holds; with memory
 * back, the same key is admitted with all ten, so none was kept.
 */
START_TEST(lease_list_out_of_memory)
{
    char key[KG_KEY_MAX], *text, *one, *save = NULL;
    kg_decision *d;
    int i, n = 0;

    text = strdup("credential:\n"
                  "  - {module: bearer, control: required}\n"
                  "keystore:\n"
                  "  - {module: anykey, options: {plan: p}}\n"
                  "plans:\n"
                  "  p:\n"
                  "    limit:\n");
    for (i = 0; i < 10; i++) {
        char *t = tu_fmt("%s      - {module: concurrency, control: requisite, "
                         "options: {name: c%d, count: 1}}\n", text, i);
        free(text);
        text = t;
    }
    pol = tu_policy(ctx, text);
    free(text);
    ck_assert_int_eq(kg_key_generate("whizo", key, KG_KEY_MAX), KG_OK);
    /* A first check of another key, so that the thread's decision is
     * made (and kept for reuse) before allocations fail. */
    {
        char other[KG_KEY_MAX];
        ck_assert_int_eq(kg_key_generate("whizo", other, KG_KEY_MAX), KG_OK);
        d = tu_check_key(pol, other);
        ck_assert(kg_decision_allowed(d));
        kg_decision_free(d);
    }
    atomic_store(&fail_from, 1024);
    d = tu_check_key(pol, key);
    atomic_store(&fail_from, 0);
    ck_assert(limiter_unavailable(d));
    kg_decision_free(d);
    d = tu_check_key(pol, key);
    ck_assert_msg(kg_decision_allowed(d), "%d %s", kg_decision_status(d),
                  kg_decision_message(d));
    ck_assert_uint_gt(strlen(kg_decision_lease(d)), 512);
    text = strdup(kg_decision_lease(d));
    for (one = strtok_r(text, ",", &save); one; one = strtok_r(NULL, ",", &save))
        n++;
    ck_assert_int_eq(n, 10);
    free(text);
    kg_decision_free(d);
}
END_TEST

/* A 429 rendered while no allocation succeeds still says Retry-After,
 * and a 401 WWW-Authenticate (issue 23 item 14): neither is allocated. */
START_TEST(denial_headers_without_memory)
{
    char key[KG_KEY_MAX];
    kg_decision *d;
    kg_request *r;
    const char *v;

    load(0);
    ck_assert_int_eq(kg_key_generate("whizo", key, KG_KEY_MAX), KG_OK);
    tu_clock_set(&clk, 1800000000);
    {
        int i;
        for (i = 0; i < 100; i++)
            (void)admitted(key);
    }
    d = tu_check_key(pol, key);
    ck_assert_int_eq(kg_decision_status(d), 429);
    atomic_store(&fail_from, 1);
    v = kg_decision_header_value(d, "Retry-After");
    atomic_store(&fail_from, 0);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(kg_decision_header_value(d, "Retry-After"), "3600");
    kg_decision_free(d);

    ck_assert_int_eq(kg_request_new(&r), KG_OK);
    d = tu_check(pol, r);
    ck_assert_int_eq(kg_decision_status(d), 401);
    atomic_store(&fail_from, 1);
    v = kg_decision_header_value(d, "WWW-Authenticate");
    atomic_store(&fail_from, 0);
    ck_assert_ptr_nonnull(v);
    kg_decision_free(d);
    kg_request_free(r);
}
END_TEST
#endif

static Suite *limitoom_suite(void)
{
    Suite *s = suite_create("limitoom");
    TCase *tc = tcase_create("mmap fails");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, new_key_unavailable_old_keys_counted, 0,
                        (int)(sizeof(lines) / sizeof(lines[0])));
    suite_add_tcase(s, tc);
#ifdef TEST_MALLOC
    tc = tcase_create("malloc fails");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, lease_list_out_of_memory);
    tcase_add_test(tc, denial_headers_without_memory);
    suite_add_tcase(s, tc);
#endif
    return s;
}

int main(void)
{
    return tu_run(limitoom_suite());
}
