/*
 * check_limitfile.c - the limiter state kept in a file shared by
 * processes (core/limits_shm.c, core/limits_file.c): N processes of M
 * threads against a limit L admit exactly L; a process killed holding a
 * shard's lock wedges no one; counts and leases outlive the processes; a
 * file of another version or size is refused and left as it is; a torn
 * one is started afresh, with a log line.  Keys come from the anykey test
 * keystore; every process sets the same injected clock.
 */
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../core/limits_shm.h"

#define NOW 1800000000          /* on the hour */

static char *dir, *state, *key;
static char logbuf[8192];

static void on_log(void *ud, const char *message)
{
    (void)ud;
    strncat(logbuf, message, sizeof(logbuf) - strlen(logbuf) - 2);
    strcat(logbuf, "\n");
}

static void setup(void)
{
    static char k[KG_KEY_MAX];
    dir = tu_tmpdir();
    state = tu_path(dir, "limits.state");
    ck_assert_int_eq(kg_key_generate("whizo", k, sizeof(k)), KG_OK);
    key = k;
    logbuf[0] = '\0';
}

static void teardown(void)
{
    tu_rmrf(dir);
    free(dir);
    free(state);
}

/* A plan `one` with an hour limit of `count` and `inflight` leases (0:
 * none), its state in the file (size `size`). */
static char *policy_text(const char *size, int count, int inflight)
{
    char *conc = inflight ? tu_fmt("      - {module: concurrency, control: requisite, "
                                   "options: {name: conc, count: %d}}\n", inflight)
                          : strdup("");
    char *y = tu_fmt(
        "credential:\n"
        "  - {module: bearer, control: required}\n"
        "keystore:\n"
        "  - {module: anykey, options: {plan: one}}\n"
        "limits: {state_file: %s, size: %s}\n"
        "plans:\n"
        "  one:\n"
        "    limit:\n"
        "      - {module: fixed_window, control: requisite, options: {name: hour, count: %d, window: 1h}}\n"
        "%s",
        state, size, count, conc);
    free(conc);
    return y;
}

struct proc {
    kg_context *ctx;
    kg_policy *pol;
    tu_clock clk;
};

static void proc_open(struct proc *p, const char *size, int count, int inflight)
{
    char *y = policy_text(size, count, inflight);
    ck_assert_int_eq(kg_context_new(&p->ctx), KG_OK);
    kg_context_set_log(p->ctx, on_log, NULL);
    tu_clock_install(p->ctx, &p->clk);
    tu_clock_set(&p->clk, NOW);
    p->pol = tu_policy(p->ctx, y);
    free(y);
}

static void proc_close(struct proc *p)
{
    kg_policy_free(p->pol);
    kg_context_free(p->ctx);
}

/* Check the key once: its status (200 admitted); the hour's remaining
 * count into *rem (if not NULL). */
static int check(struct proc *p, int64_t *rem)
{
    kg_decision *d = tu_check_key(p->pol, key);
    int st = kg_decision_status(d);
    if (rem != NULL) {
        size_t i, n = kg_decision_limit_count(d);
        const char *name;
        *rem = -1;
        for (i = 0; i < n; i++)
            if (kg_decision_limit(d, i, &name, NULL, rem, NULL, NULL) == KG_OK &&
                strcmp(name, "hour") == 0)
                break;
    }
    kg_decision_free(d);
    return st;
}

/* ---- N processes x M threads against L ------------------------------ */

#define NPROC 4
#define NTHREAD 4
#define TRIES 150

struct worker {
    struct proc *p;
    int admitted;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    int i;
    for (i = 0; i < TRIES; i++) {
        kg_decision *d = tu_check_key(w->p->pol, key);
        w->admitted += kg_decision_allowed(d);
        kg_decision_free(d);    /* leases are not released: held */
    }
    return NULL;
}

/* Fork NPROC processes of NTHREAD threads, each thread checking the key
 * TRIES times; the number admitted over all of them. */
static int storm(int count, int inflight)
{
    int fds[2], i, total = 0, status;
    pid_t pids[NPROC];

    ck_assert_int_eq(pipe(fds), 0);
    for (i = 0; i < NPROC; i++) {
        if ((pids[i] = fork()) == 0) {
            struct proc p;
            struct worker w[NTHREAD];
            pthread_t t[NTHREAD];
            int j, sum = 0;
            proc_open(&p, "8m", count, inflight);
            for (j = 0; j < NTHREAD; j++) {
                w[j].p = &p;
                w[j].admitted = 0;
                pthread_create(&t[j], NULL, worker_run, &w[j]);
            }
            for (j = 0; j < NTHREAD; j++) {
                pthread_join(t[j], NULL);
                sum += w[j].admitted;
            }
            proc_close(&p);
            _exit(write(fds[1], &sum, sizeof(sum)) == sizeof(sum) ? 0 : 1);
        }
        ck_assert_int_gt(pids[i], 0);
    }
    close(fds[1]);
    for (i = 0; i < NPROC; i++) {
        int n;
        ck_assert_int_eq(read(fds[0], &n, sizeof(n)), sizeof(n));
        total += n;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    close(fds[0]);
    return total;
}

START_TEST(processes_admit_exactly_the_limit)
{
    ck_assert_int_eq(storm(1000, 0), 1000);    /* 2,400 tries */
}
END_TEST

START_TEST(processes_hold_exactly_the_leases)
{
    ck_assert_int_eq(storm(100000, 7), 7);     /* none released */
}
END_TEST

/* ---- restarts ---------------------------------------------------------- */

/* A key at 10 of 10, and its one lease, are where they were after every
 * process closed the file and a new one opened it. */
START_TEST(counts_and_leases_outlive_the_processes)
{
    struct proc p;
    int64_t rem;
    int i;

    proc_open(&p, "2m", 10, 1);
    ck_assert_int_eq(check(&p, &rem), 200);     /* holds the lease */
    ck_assert_int_eq(rem, 9);
    proc_close(&p);
    proc_open(&p, "2m", 10, 1);
    ck_assert_int_eq(check(&p, NULL), 429);     /* the lease is still held */
    proc_close(&p);
    /* Rates on a key without the lease limit: 9 more, then 10 of 10. */
    proc_open(&p, "2m", 10, 0);
    for (i = 0; i < 9; i++)
        ck_assert_int_eq(check(&p, NULL), 200);
    proc_close(&p);
    proc_open(&p, "2m", 10, 0);
    ck_assert_int_eq(check(&p, &rem), 429);
    ck_assert_int_eq(rem, 0);
    ck_assert_ptr_null(strstr(logbuf, "afresh"));
    proc_close(&p);
}
END_TEST

/* ---- a process killed holding a lock ------------------------------------ */

START_TEST(killed_holder_wedges_no_one)
{
    struct proc p;
    int64_t rem;
    pid_t pid;
    int status;

    proc_open(&p, "2m", 10, 0);
    ck_assert_int_eq(check(&p, &rem), 200);
    ck_assert_int_eq(rem, 9);
    if ((pid = fork()) == 0) {
        kg_context *c;
        kg_policy *pol = NULL;
        kg_decision *d;
        char *y = tu_fmt("credential: [{module: bearer, control: required}]\n"
                         "keystore: [{module: anykey, options: {plan: one}}]\n"
                         "limits: {state_file: %s, size: 2m}\n"
                         "plans: {one: {limit: [{module: slotkill}]}}\n", state);
        if (kg_context_new(&c) != KG_OK ||
            kg_policy_load_string(c, y, "kill.yaml", &pol, NULL) != KG_OK)
            _exit(3);
        d = tu_check_key(pol, key);    /* dies holding the key's shard */
        (void)d;
        _exit(4);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "the child was to die by SIGKILL (status %d)", status);
    /* The same key (so the same shard): taken over, checked, counted on. */
    ck_assert_int_eq(check(&p, &rem), 200);
    ck_assert_int_eq(rem, 8);
    ck_assert_msg(strstr(logbuf, "stopped while holding shard") != NULL,
                  "no log line: %s", logbuf);
    proc_close(&p);
}
END_TEST

/* ---- files refused, files torn ----------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *b;
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    b = malloc(*len ? *len : 1);
    ck_assert_uint_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

/* Load the policy; it must fail, its message containing `want`, and the
 * file must be byte for byte as it was. */
static void refused(const char *size, const char *want)
{
    kg_context *c;
    kg_policy *pol = NULL;
    kg_diag d;
    char buf[1024], *y = policy_text(size, 10, 0), *before, *after;
    size_t n1, n2;

    before = slurp(state, &n1);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_context_new(&c), KG_OK);
    ck_assert_int_eq(kg_policy_load_string(c, y, "t.yaml", &pol, &d), KG_ERR_POLICY);
    kg_diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(strstr(buf, want) != NULL, "message: %s", buf);
    ck_assert_msg(strncmp(buf, "t.yaml:5:", 9) == 0, "not at the line: %s", buf);
    kg_context_free(c);
    after = slurp(state, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert(memcmp(before, after, n1) == 0);
    free(before);
    free(after);
    free(y);
}

static void poke(size_t off, const void *v, size_t n)
{
    int fd = open(state, O_RDWR);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, v, n, (off_t)off), (ssize_t)n);
    close(fd);
}

START_TEST(other_size_or_version_refused)
{
    struct proc p;
    uint32_t v = 99;

    proc_open(&p, "2m", 10, 0);
    ck_assert_int_eq(check(&p, NULL), 200);
    proc_close(&p);
    refused("4m", "was made for size 2097152 bytes, the policy says 4194304");
    poke(offsetof(struct shm_header, version), &v, sizeof(v));
    refused("2m", "layout version 99; this keygate reads version 1");
    poke(0, "NOTMINE!", 8);
    refused("2m", "is not a keygate limiter state file");
}
END_TEST

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    while (n--) {
        h ^= *s++;
        h *= 1099511628211ULL;
    }
    return h;
}

/* A file at 10 of 10 */
static void ten_of_ten(void)
{
    struct proc p;
    int i;
    proc_open(&p, "2m", 10, 0);
    for (i = 0; i < 10; i++)
        ck_assert_int_eq(check(&p, NULL), 200);
    proc_close(&p);
}

/* Reopened: started afresh (the key at 9 of 10 after one check), the log
 * saying why. */
static void afresh(const char *why)
{
    struct proc p;
    int64_t rem;
    proc_open(&p, "2m", 10, 0);
    ck_assert_int_eq(check(&p, &rem), 200);
    ck_assert_int_eq(rem, 9);
    ck_assert_msg(strstr(logbuf, why) != NULL && strstr(logbuf, "started afresh"),
                  "log: %s", logbuf);
    proc_close(&p);
}

START_TEST(torn_header_started_afresh)
{
    uint64_t g = 12345;
    ten_of_ten();
    /* Half a header write: the generation changed, its checksum not. */
    poke(offsetof(struct shm_header, generation), &g, sizeof(g));
    afresh("checksum is wrong");
}
END_TEST

/* Left in use (not closed cleanly) by a boot that is not this one: its
 * pages may have been half written back when the power went. */
START_TEST(unclean_file_of_another_boot_started_afresh)
{
    struct shm_header h;
    int fd;
    ten_of_ten();
    fd = open(state, O_RDWR);
    ck_assert_int_eq(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
    ck_assert_uint_eq(h.clean, 1);
    h.clean = 0;
    memcpy(h.boot, "00000000-0000-0000-0000-000000000000", 37);
    h.checksum = fnv(&h, offsetof(struct shm_header, checksum));
    ck_assert_int_eq(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
    close(fd);
    afresh("power cut");
}
END_TEST

/* A process that opens the file just after the last user closed it
 * (clean, but the closer's exclusive lock kept it from being the first)
 * marks it in use: here another holder of a shared lock plays the part
 * of the processes still using it. */
START_TEST(opened_after_a_clean_close_is_marked_in_use)
{
    struct proc p;
    struct shm_header h;
    int fd;

    ten_of_ten();
    fd = open(state, O_RDWR);
    ck_assert_int_eq(flock(fd, LOCK_SH), 0);
    proc_open(&p, "2m", 10, 0);
    ck_assert_int_eq(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
    ck_assert_uint_eq(h.clean, 0);
    ck_assert(h.checksum == fnv(&h, offsetof(struct shm_header, checksum)));
    proc_close(&p);
    close(fd);
}
END_TEST

/* Left in use by a process of this boot that was killed: every page it
 * wrote is in the page cache, so the counts are kept. */
START_TEST(unclean_file_of_this_boot_kept)
{
    struct proc p;
    int64_t rem;
    pid_t pid;
    int status;

    if ((pid = fork()) == 0) {
        struct proc q;
        int i;
        proc_open(&q, "2m", 10, 0);
        for (i = 0; i < 10; i++)
            if (check(&q, NULL) != 200)
                _exit(2);
        kill(getpid(), SIGKILL);
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    proc_open(&p, "2m", 10, 0);
    ck_assert_int_eq(check(&p, &rem), 429);
    ck_assert_int_eq(rem, 0);
    ck_assert_msg(strstr(logbuf, "every shard checked and kept") != NULL,
                  "log: %s", logbuf);
    proc_close(&p);
}
END_TEST

/* The API: the same file twice is fine, another one is refused. */
START_TEST(api_attaches_once)
{
    kg_context *c;
    kg_diag d;
    char buf[1024], *other = tu_path(dir, "other.state");
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_context_new(&c), KG_OK);
    ck_assert_int_eq(kg_context_set_state_file(c, state, 1 << 20, &d), KG_OK);
    ck_assert_int_eq(kg_context_set_state_file(c, state, 1 << 20, &d), KG_OK);
    ck_assert_int_eq(kg_context_set_state_file(c, other, 1 << 20, &d), KG_ERR_EXISTS);
    ck_assert_msg(strstr(kg_diag_format(&d, buf, sizeof(buf)), "cannot move it") != NULL,
                  "%s", buf);
    ck_assert_int_eq(kg_context_set_state_file(c, other, 1000, &d), KG_ERR_EXISTS);
    kg_context_free(c);
    ck_assert_int_eq(kg_context_new(&c), KG_OK);
    ck_assert_int_eq(kg_context_set_state_file(c, other, 1000, &d), KG_ERR_INVALID);
    kg_context_free(c);
    free(other);
}
END_TEST

/* A reload naming another file (or size) is refused where it says so;
 * the same file again is fine, and the counts go on. */
START_TEST(reload_cannot_move_the_state)
{
    struct proc p;
    kg_policy *again = NULL;
    kg_diag d;
    char buf[1024], *y = policy_text("4m", 10, 0);
    int64_t rem;

    proc_open(&p, "2m", 10, 0);
    ck_assert_int_eq(check(&p, NULL), 200);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_policy_load_string(p.ctx, y, "r.yaml", &again, &d), KG_ERR_POLICY);
    kg_diag_format(&d, buf, sizeof(buf));
    ck_assert_msg(strncmp(buf, "r.yaml:5:", 9) == 0 && strstr(buf, "cannot move it") != NULL,
                  "%s", buf);
    free(y);
    y = policy_text("2m", 10, 0);
    ck_assert_int_eq(kg_policy_load_string(p.ctx, y, "r.yaml", &again, &d), KG_OK);
    kg_policy_free(p.pol);
    p.pol = again;
    ck_assert_int_eq(check(&p, &rem), 200);
    ck_assert_int_eq(rem, 8);
    free(y);
    proc_close(&p);
}
END_TEST

/* Made by root (nginx's master), the file goes to its folder's owner
 * (the workers' user).  Only meaningful as root. */
START_TEST(root_gives_the_file_to_the_folder_owner)
{
    kg_context *c;
    kg_diag d;
    struct stat st;
    char *sub = tu_path(dir, "workers"), *f = tu_path(sub, "limits.state");

    if (geteuid() != 0)
        return;
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    ck_assert_int_eq(chown(sub, 65534, 65534), 0);
    memset(&d, 0, sizeof(d));
    ck_assert_int_eq(kg_context_new(&c), KG_OK);
    ck_assert_int_eq(kg_context_set_state_file(c, f, 1 << 20, &d), KG_OK);
    ck_assert_int_eq(stat(f, &st), 0);
    ck_assert_uint_eq(st.st_uid, 65534);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    kg_context_free(c);
    free(f);
    free(sub);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("limitfile");
    TCase *t = tcase_create("processes");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, processes_admit_exactly_the_limit);
    tcase_add_test(t, processes_hold_exactly_the_leases);
    tcase_add_test(t, killed_holder_wedges_no_one);
    suite_add_tcase(s, t);
    t = tcase_create("file");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, counts_and_leases_outlive_the_processes);
    tcase_add_test(t, other_size_or_version_refused);
    tcase_add_test(t, torn_header_started_afresh);
    tcase_add_test(t, unclean_file_of_another_boot_started_afresh);
    tcase_add_test(t, unclean_file_of_this_boot_kept);
    tcase_add_test(t, opened_after_a_clean_close_is_marked_in_use);
    tcase_add_test(t, api_attaches_once);
    tcase_add_test(t, reload_cannot_move_the_state);
    tcase_add_test(t, root_gives_the_file_to_the_folder_owner);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return tu_run(suite());
}
