/*
 * internal.h - declarations shared by the files of libkeygate and by
 * nothing else.  Names used across files are kg__name (double
 * underscore); they are not exported (-fvisibility=hidden).
 */
#ifndef KEYGATE_INTERNAL_H
#define KEYGATE_INTERNAL_H

#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <keygate/keygate.h>
#include <keygate/plugin.h>

#define KG__UNUSED __attribute__((unused))
#define KG__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* 1 when built with AddressSanitizer: the core's own free lists and
 * arenas step aside, so that a use after free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define KG__SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KG__SANITIZED 1
#endif
#endif
#ifndef KG__SANITIZED
#define KG__SANITIZED 0
#endif

/*
 * Memory the core maps itself (the limiter's slot chunks and homes, a
 * record table's places) holds pointers to heap blocks (a slot's extra entries, its leases, a
 * long key id).  LeakSanitizer does not look inside mappings, so under
 * ASan each one is registered as a root region for as long as it is
 * mapped: else every such block reads as leaked (fuzz_check found it).
 */
#if KG__SANITIZED
#include <sanitizer/lsan_interface.h>
#define KG__LSAN_ROOT(p, n) __lsan_register_root_region((p), (n))
#define KG__LSAN_UNROOT(p, n) __lsan_unregister_root_region((p), (n))
#else
#define KG__LSAN_ROOT(p, n) ((void)(p), (void)(n))
#define KG__LSAN_UNROOT(p, n) ((void)(p), (void)(n))
#endif

/* ---- cells.c: fixed-size cells on huge pages ------------------------ */

/* A 2 MiB aligned, 2 MiB chunk advised for huge pages; NULL if out of
 * memory. */
#define KG__HP_CHUNK ((size_t)2 << 20)
void *kg__hp_chunk_new(void);
void kg__hp_chunk_free(void *chunk);

/* Cells of one size (a power of two, at least 64: a cell is aligned to
 * its size); define one with KG__CELLS_INIT. */
typedef struct kg__cells {
    size_t size;
    pthread_mutex_t lock;
    struct chunk *partial;   /* chunks with free cells */
    struct chunk *spare;     /* an empty chunk kept for reuse */
    size_t used;             /* cells handed out */
    size_t chunks;           /* chunks mapped (not counting the spare) */
} kg__cells;
#define KG__CELLS_INIT(sz) { (sz), PTHREAD_MUTEX_INITIALIZER, NULL, NULL, 0, 0 }
void *kg__cells_alloc(kg__cells *c);   /* NULL if out of memory */
void kg__cells_free(kg__cells *c, void *p);
/* Cells in use, and chunks mapped (spare included). */
void kg__cells_stats(kg__cells *c, size_t *used_r, size_t *chunks_r);

/* ---- util.c ---------------------------------------------------------- */

void kg__diag_set(kg_diag *d, const char *file, unsigned line, unsigned col,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void kg__diag_vset(kg_diag *d, const char *file, unsigned line,
                   unsigned col, const char *fmt, va_list ap);
void kg__diag_clear(kg_diag *d);
char *kg__strdup(const char *s);
char *kg__strndup(const char *s, size_t n);
char *kg__asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int kg__strcaseeq(const char *a, const char *b);
/* Copy with truncation, always NUL-terminated (no printf on hot paths). */
void kg__strlcpy(char *dst, const char *src, size_t size);
/* *dst = a copy of s (NULL: none), the old one freed: KG_ERR_NOMEM
 * leaves it as it was. */
kg_error kg__str_set(char **dst, const char *s);
/* The same, into buf (size bytes, owned by the same object) when s fits:
 * no allocation, and no cache miss apart from the object's when a check
 * reads it. */
kg_error kg__str_set_inline(char **dst, char *buf, size_t size, const char *s);
/* Free a string after overwriting it. */
void kg__free_secret(char *s);
/* Room for one more element in the array *v of `size`-byte elements, n
 * of *cap used: doubled when full (from `first`).  0, or -1 when out of
 * memory (*v and *cap as they were). */
int kg__grow(void *v, size_t *cap, size_t n, size_t size, size_t first);

/* A growable string.  On allocation failure `oom` is set and further
 * appends are no-ops, so callers check once at the end. */
typedef struct kg__buf {
    char *p;
    size_t len;
    size_t cap;
    int oom;
    char *inl;   /* the caller's storage it started in (never freed) */
} kg__buf;

void kg__buf_init(kg__buf *b);
/* Start in the caller's storage (cap bytes); a string that outgrows it
 * moves to the heap (p then differs from mem; kg__buf_free frees only
 * that).  Never kg__buf_take such a buffer. */
void kg__buf_init_inline(kg__buf *b, char *mem, size_t cap);
/* A decimal integer, without printf. */
void kg__buf_addi(kg__buf *b, int64_t v);
/* v in decimal into out (NUL-terminated); its length. */
size_t kg__fmt_i64(char out[21], int64_t v);
void kg__buf_free(kg__buf *b);
/* kg__buf_add() where the string does not fit: grows, or sets oom. */
void kg__buf_add_grow(kg__buf *b, const char *s, size_t n);
/* Append n bytes.  Inline where they fit, which is nearly always: a
 * decision's headers are some thirty appends per check, and a call for
 * each showed in nginx's profile (docs/nginx.md "Speed"). */
static inline void kg__buf_add(kg__buf *b, const char *s, size_t n)
{
    if (b->len + n < b->cap && !b->oom) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
        return;
    }
    kg__buf_add_grow(b, s, n);
}
/* A NUL-terminated string (a literal's length is known when inlined). */
static inline void kg__buf_adds(kg__buf *b, const char *s)
{
    kg__buf_add(b, s, strlen(s));
}
void kg__buf_addf(kg__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append s as a JSON string literal (quotes included). */
void kg__buf_json_str(kg__buf *b, const char *s);
void kg__buf_json_strn(kg__buf *b, const char *s, size_t n);
/* Take the string out (caller frees); NULL if an allocation failed. */
char *kg__buf_take(kg__buf *b);

/* "1h" -> 3600 etc.  Returns 0 on success. */
int kg__parse_duration(const char *s, int64_t *seconds_r);
/* "2026-12-31", "2026-12-31T10:00:00Z" -> Unix seconds.  0 on success. */
int kg__parse_time(const char *s, int64_t *unix_r);
/* Unix seconds -> "2026-12-31T10:00:00Z". */
void kg__format_time(int64_t t, char out[32]);

/*
 * What libkeygate keeps per thread (util.c): made on a thread's first
 * use, freed when the thread exits (the lease ids wiped first).  NULL if
 * out of memory.
 */
#define KG__LEASE_IDS 2048
typedef struct kg__thread {
    /* leases.c: lease ids drawn from RAND_bytes() a block at a time */
    uint64_t lease_ids[KG__LEASE_IDS];
    unsigned lease_pos;
    /* decision.c: the last decisions this thread freed, for its next
     * (a server frees them in bursts: nginx's module keeps each until its
     * request ends, and ends several in one pass of its event loop; with
     * 64 connections more than 8 are in flight, so 32 are kept: at most
     * about 110 KB a thread) */
#define KG__SPARES 32
    struct kg_decision *spare[KG__SPARES];
    unsigned nspare;
    /* decision.c: the last RateLimit-Policy value this thread rendered
     * and the limits it was rendered from (the same on every check of a
     * plan) */
    struct {
        char text[200];
        size_t len;
        size_t n;                      /* 0: none kept */
        struct { char name[48]; int64_t limit, window; } l[4];
    } policy;
    /* usage.c: 1 + the shard this thread counts its decisions in; 0 until
     * it first counts one */
    unsigned usage_shard;
} kg__thread;
kg__thread *kg__thread_get(void);

/* ---- context.c ------------------------------------------------------- */

struct kg__loader;
struct kg__limits;

struct kg__releaser {
    kg_lease_release_fn fn;
    void *userdata;
};

/* log.c: who may say something again when, per backend name. */
#define KG__LOG_BACKENDS 64
struct kg__logslot {
    char name[128];
    int64_t last_us;      /* when a line of it was last passed on */
    uint64_t held;        /* lines held back since */
};
struct kg__log {
    pthread_mutex_t lock;
    kg_log_fn fn;         /* NULL: stderr */
    void *userdata;
    int64_t interval_us;
    struct kg__logslot slot[KG__LOG_BACKENDS];
    size_t n;
};
void kg__log_init(struct kg__log *l);
void kg__log_destroy(struct kg__log *l);

struct kg__shm;

struct kg_context {
    kg_clock_fn clock;
    void *clock_userdata;
    struct kg__loader *loader;
    struct kg__limits *limits;
    /* The limiter state file, when the context keeps its state there
     * (limits_shm.c): set once, by kg_context_set_state_file() or the
     * first policy naming one, and read by every check. */
    _Atomic(struct kg__shm *) shm;
    atomic_uint_least64_t stats[KG_STAT__LAST];
    /* Lease releasers of remote limiter backends (plugin.h). */
    pthread_rwlock_t rel_lock;
    struct kg__releaser *releasers;
    size_t nreleasers;
    struct kg__log log;
    struct kg__usage *usage;   /* metering (usage.c), across reloads */
    struct kg__quota_watch *quota;   /* the quota rules' view (alerts_quota.c) */
};
/* kg_context_now(), or for what is kept in seconds (a slot's idle mark
 * on a release) the kernel's coarse time, which costs no TSC read. */
int64_t kg__context_now_coarse(const kg_context *c);

/* Ask the registered releasers for one lease (no comma); KG_ERR_NOT_FOUND
 * if none holds it. */
kg_error kg__releasers_call(kg_context *ctx, const char *key_id,
                            const char *limit, const char *lease);

/* ---- loader.c -------------------------------------------------------- */

typedef struct kg__module {
    char *name;
    char *path;
    const kg_plugin *plugin;
} kg__module;

kg_error kg__loader_new(struct kg__loader **loader_r);
void kg__loader_free(struct kg__loader *loader);
/*
 * Find plugin `name` in `dirs` (then KEYGATE_PLUGIN_PATH, then the
 * compiled-in directory), load it once, check its ABI and that its kind
 * is `kind` (0: any).  The module stays loaded until the context is
 * freed.
 */
kg_error kg__loader_get(kg_context *ctx, const char *name, int kind,
                        char *const *dirs, size_t ndirs,
                        const kg__module **mod_r, char *err, size_t errlen);
/* The descriptor's usage operations where its ABI and size hold them
 * (whether or not complete), else NULL.  kg__loader_get() with
 * KG_PLUGIN_USAGE takes a plugin of any kind whose four are set. */
const struct kg_usage_ops *kg__plugin_usage(const kg_plugin *p);

/* ---- opts.c ---------------------------------------------------------- */

struct kg__ynode;
/* Build the options view of a policy line's mapping (NULL: empty). */
kg_opts *kg__opts_new(kg_context *ctx, const char *file, const char *dir,
                      struct kg__ynode *map, const char *plugin);
/* After create(): KG_OK, or the first error (type error or unknown key). */
kg_error kg__opts_finish(kg_opts *o, kg_diag *diag);
/* The string the plugin last read for its top-level `name` option (its
 * default if absent), or NULL if it never asked; valid while o is. */
const char *kg__opts_name(const kg_opts *o);
/* The `count` and `window` (seconds) the plugin read from its root
 * options, defaults included; returns which it read: KG__OPTS_COUNT |
 * KG__OPTS_WINDOW, 0 for neither (kg_policy_plan_limit_size). */
enum { KG__OPTS_COUNT = 1, KG__OPTS_WINDOW = 2 };
int kg__opts_size(const kg_opts *o, int64_t *count_r, int64_t *window_r);
/* What kg_opts_credential_hint() set, or NULL. */
const char *kg__opts_hint(const kg_opts *o);
/* What create() said with kg_opts_may_wait(): KG_WAITS_* bits. */
int kg__opts_may_wait(const kg_opts *o);
const char *kg__opts_scheme(const kg_opts *o);
/* What kg_opts_section() answers: the kind of the stage, or
 * KG_PLUGIN_USAGE for the usage: section. */
void kg__opts_set_section(kg_opts *o, int kind);
void kg__opts_free(kg_opts *o);

/* ---- yaml.c: a small tree over libyaml's events ---------------------- */

typedef enum { KG__Y_SCALAR, KG__Y_SEQ, KG__Y_MAP } kg__ytype;

typedef struct kg__ynode {
    kg__ytype type;
    unsigned line, column;   /* 1-based */
    char *value;             /* scalar, after ${ENV} expansion */
    size_t len;              /* of value */
    int quoted;              /* the scalar was quoted */
    struct kg__ynode **items;  /* seq: items; map: key, value, key, ... */
    size_t n;
    int used;                /* for unknown-key detection */
} kg__ynode;

/* Parse one YAML document.  Returns NULL with the diag filled on error. */
kg__ynode *kg__yaml_parse(const char *text, size_t len, const char *file,
                          kg_diag *diag);
void kg__yaml_free(kg__ynode *n);
/* Map lookup (marks the key used); NULL if absent. */
kg__ynode *kg__ymap_get(kg__ynode *map, const char *key);
/* Find the key node of `key` in map (for error positions). */
kg__ynode *kg__ymap_key(kg__ynode *map, const char *key);

/* ---- record.c -------------------------------------------------------- */

struct kg__limit_override {
    char *name;
    int64_t count;
    int64_t window;
    int64_t burst;
};

struct kg_record {
    /* What every check reads first, in the first two cache lines: at a
     * million keys each line of a record is a cache miss. */
    atomic_int refs;
    kg_key_status status;
    char *id;          /* idbuf, or the heap if longer */
    char *plan;        /* planbuf, or the heap if longer */
    int64_t expires;
    unsigned char hash[KG_HASH_LEN];
    char idbuf[20];    /* "k_" + 16 hex digits fits */
    uint32_t nlimits;
    char planbuf[16];
    struct kg__limit_override *limits;
    /* The key's account (kg_record_set_account), or NULL: a check reads
     * it right after the record (docs/policy.md "Accounts"). */
    struct kg_account *account;
    /* Raised by kg_record_touch() on a record checks share: the one
     * field that changes after a record is made, hence atomic, and here
     * in the second line, which a check has read already. */
    _Atomic int64_t last_used;
    /* Third line: what a check reads of the key's account, copied when
     * it is attached (an attached account never changes), so that the
     * check does not wait for the account's own cache line after the
     * record's: at a hundred thousand accounts that was a miss in a row
     * (the account's plan goes into `plan`, kg_record_set_account). */
    char acct_idbuf[24];     /* its id, when it fits ("acct_" + 16 hex) */
    uint32_t acct_nlimits;   /* its limit overrides: 0, none to look up */
    int acct_suspended;
    /* The rest. */
    /* The record table the record was placed in (rtable.c), or NULL for
     * a record of its own cell: read only when the last reference goes. */
    struct kg_record_table *table;
    /* The account's id: acct_idbuf (or the account's own string if
     * longer) while one is attached, else a copy (management: the
     * account a key is for). */
    char *account_id;
    char *name;
    char *prefix;
    int64_t created;
    char **perms;
    size_t nperms;
    char **cidrs;
    size_t ncidrs;
    /* cidrs parsed once when added, for ipacl's per-check match; the
     * strings that are not networks are left out (they match nothing). */
    kg_cidr *nets;
    size_t nnets;
    /* A rotation's link (plugin.h kg_record_set_replaced_by), or NULL:
     * apart, so that a record keeps to its cell (KG__RECORD_CELL). */
    struct kg__record_links {
        char *replaced_by, *replaces;
    } *links;
};

/* ---- record.c: lists shared by key records and accounts ------------- */

void kg__strv_free(char **v, size_t n);
/* Append a copy of s; KG_ERR_INVALID for NULL, KG_ERR_NOMEM. */
kg_error kg__strv_push(char ***v, size_t *n, const char *s);
/* Append a network as given (kept for writing back) and its parsed form
 * (none if it is not a network: it then matches nothing); all or
 * nothing. */
kg_error kg__nets_push(char ***cidrs, size_t *ncidrs, kg_cidr **nets,
                       size_t *nnets, const char *c);
void kg__nets_clear(char ***cidrs, size_t *ncidrs, kg_cidr **nets,
                    size_t *nnets);
/* Set the override of `name` (one per name: a second replaces it). */
kg_error kg__override_set(struct kg__limit_override **v, uint32_t *n,
                          const char *name, int64_t count, int64_t window,
                          int64_t burst);
void kg__overrides_free(struct kg__limit_override *v, uint32_t n);
/* The override of `name` in v, or NULL. */
const struct kg__limit_override *kg__override_find(
    const struct kg__limit_override *v, uint32_t n, const char *name);
/* Append the JSON of the lists: "[..]" of strings, "{name:{count..}}". */
void kg__json_strv(kg__buf *b, char *const *v, size_t n);
void kg__json_overrides(kg__buf *b, const struct kg__limit_override *v,
                        uint32_t n);
/* ,"key":"2026-..." or ,"key":null for 0. */
void kg__json_time(kg__buf *b, const char *key, int64_t t);

/* ---- account.c: account records ------------------------------------ */

struct kg_account {
    /* What a check reads, in the first cache line (the struct is 64-byte
     * aligned): at a hundred thousand accounts the account is a cache
     * miss behind its key's record, and its id (the limits' subject) and
     * plan each another if they lived apart. */
    atomic_int refs;
    kg_account_status status;
    char *id;                 /* idbuf, or the heap if longer */
    char *plan;               /* planbuf, or the heap if longer */
    char idbuf[24];           /* "acct_" + 16 hex digits fits */
    char planbuf[16];
    /* The rest. */
    char *external_id;
    char *name;
    char *metadata;           /* a JSON object, or NULL */
    int64_t created, updated;
    char **perms;
    size_t nperms;
    char **cidrs;
    size_t ncidrs;
    kg_cidr *nets;
    size_t nnets;
    struct kg__limit_override *limits;
    uint32_t nlimits;
};

/* metadata.c: json[0..len) as one JSON object, written again compactly
 * into *out_r (malloc()ed: what is kept and spliced into JSON output is
 * always valid JSON); libyaml reads it (JSON is YAML's flow style), and
 * what JSON does not allow (unquoted strings and keys, single quotes,
 * anchors, tags, block style) is refused: -1 with why in err. */
int kg__json_object_canon(const char *json, size_t len, char **out_r,
                          char *err, size_t errlen);
/* 1 if s is an account id or external id (KG_ACCOUNT_ID_MAX). */
int kg__account_id_valid(const char *s);

/* ---- record.c / rtable.c -------------------------------------------- */

/* Records take 256 bytes: a cell (cells.c), or a place in a record
 * table. */
#define KG__RECORD_CELL 256
/* Copy r's fields into c (zeroed, or holding only what this set); KG_OK
 * or the first error. */
kg_error kg__record_copy_fields(kg_record *c, const kg_record *r);
/* Free what a record holds outside its 256 bytes. */
void kg__record_clear(kg_record *r);
/* A placed record's last reference went: the table may go with it. */
void kg__record_table_unref(struct kg_record_table *t);

/* ---- cache.c --------------------------------------------------------- */

typedef struct kg__cache kg__cache;
typedef struct kg__cache_conf {
    int64_t ttl_us;
    int64_t negative_ttl_us;
    size_t max_entries;
} kg__cache_conf;

kg__cache *kg__cache_new(const kg__cache_conf *conf);
void kg__cache_free(kg__cache *c);
/* Start fetching the hash's bucket (check.c, before the lookup). */
void kg__cache_prefetch(kg__cache *c, const unsigned char *hash);
/*
 * Look a hash up.  Returns 1 and sets *rec_r (a new reference, NULL for a
 * cached "not found") if an entry is present; *fresh_r says whether it is
 * within its TTL.  Returns 0 if absent.
 */
int kg__cache_get(kg__cache *c, const unsigned char *hash, int64_t now,
                  kg_record **rec_r, int *fresh_r);
void kg__cache_put(kg__cache *c, const unsigned char *hash, kg_record *rec,
                   int64_t now);
void kg__cache_clear(kg__cache *c);
size_t kg__cache_size(kg__cache *c);

/* ---- limits.c, hints.c, leases.c: the memory limiter state ---------- */

kg_error kg__limits_new(struct kg__limits **l_r);
void kg__limits_free(struct kg__limits *l);
void kg__limits_set_capacity(struct kg__limits *l, size_t max);
size_t kg__limits_entries(struct kg__limits *l);
/* Slots ever made at their key's home (hints.c). */
uint64_t kg__limits_at_home(struct kg__limits *l);
/* A key's slot (all its limit entries and leases).  A check pins it the
 * first time it locks it (pin->slot caches it, so later locks skip the
 * search); kg__limits_unpin() lets it be evicted again.  A table indexed
 * by the key's hash remembers each key's slot between checks (pin->hint),
 * so a check usually finds it without a search, and can fetch it from
 * memory while the key store looks the key up (kg__limits_prefetch). */
struct kslot;
typedef struct kg__lpin {
    struct kslot *slot;
    _Atomic(uintptr_t) *hint;   /* the line of hints of the key's hash */
    uintptr_t tag;              /* its tag there */
    /* The key's home: the slot its hash names (hints.c), where a new
     * slot for it is placed if that is free. */
    struct kslot *home;
    struct hints *home_of;      /* the hint table the home belongs to */
    int home_dense;             /* this check made the homes dense */
} kg__lpin;
kg_slot *kg__limits_lock(struct kg__limits *l, const char *key_id,
                         const char *limit, int64_t now_s,
                         int64_t idle_seconds, kg__lpin *pin);
void kg__limits_unpin(kg__lpin *pin);
/* Two steps, so that the key store's fetch can start between them: the
 * first asks for the key's hint (no wait), the second reads it (waits
 * for it) and asks for the slot it names. */
void kg__limits_prefetch(struct kg__limits *l, const unsigned char hash[KG_HASH_LEN],
                         kg__lpin *pin);
void kg__limits_prefetch_slot(const kg__lpin *pin);
/* Where the memory state keeps a lease a decision took: its slot (slot
 * memory is never given back: leases.c) and its random id. */
#define KG__LEASE_HANDLES 2
struct kslot;
struct kg__lease_handle {
    struct kg__limits *limits;
    struct kslot *slot;
    uint64_t id;
};

/*
 * Take one of `max` leases of (key id, limit) for ttl_s: 1 and its id
 * written to `out` (KG_LEASE_SIZE(klen, nlen) bytes), 0 if all are held,
 * -1 if out of memory (no slot, no room for the lease).  *in_use_r gets
 * the number held after the call (-1 if out of memory).
 */
int kg__lease_acquire(struct kg__limits *l, const char *key_id, size_t klen,
                      const char *limit, size_t nlen, int64_t max,
                      int64_t ttl_s, int64_t now_us, char *out,
                      int64_t *in_use_r, kg__lpin *pin,
                      struct kg__lease_handle *h);
/* Release the leases of a decision: by their handles, the others by
 * their text (kg_decision_release()). */
kg_error kg__lease_release_decision(kg_context *ctx, kg_decision *d,
                                    int64_t now_us);
/* Forget the handle of lease id (undone by kg_call_lease_undo()). */
void kg__decision_lease_forget(kg_decision *d, uint64_t id);
/* Release a lease list ("a,b"): each from the memory state, else from
 * the context's releasers. */
kg_error kg__lease_release_any(kg_context *ctx, const char *lease,
                               int64_t now_us);
/* Release one lease (lease[0..len), no comma) known to be of (key_id,
 * NUL-terminated, klen bytes; limit): the memory state's, else the
 * releasers'. */
kg_error kg__lease_release_of(kg_context *ctx, const char *lease, size_t len,
                              const char *key_id, size_t klen,
                              const char *limit, int64_t now_us);
/* A new lease id of (key id, limit) into out (size bytes); 0 on success. */
int kg__lease_format(struct kg__limits *l, const char *key_id,
                     const char *limit, char *out, size_t size);
int64_t kg__lease_count(kg_context *ctx, const char *key_id,
                        const char *limit, int64_t now_us);
/*
 * Retry-After (s) for a request denied by a full concurrency limit: as
 * long as the youngest lease has been held (a request that has run for a
 * while is likely to run a while more), at least 1 s, and never past the
 * earliest lease's expiry (a lost release frees its slot then), rounded
 * up; of the leases of (key, limit) taken for ttl_s, 0 when none is held.
 */
int64_t kg__lease_retry_after(kg_context *ctx, const char *key_id,
                              const char *limit, int64_t ttl_s, int64_t now_us);

/* A random lease id (per-thread blocks of OpenSSL's RNG); 0 if none. */
int kg__lease_random(uint64_t *id_r);

/* ---- limits_shm.c, limits_file.c: the state in a shared file ---------- */

/* The context's state file, or NULL (the memory state). */
static inline struct kg__shm *kg__ctx_shm(const kg_context *c)
{
    return atomic_load_explicit(&((kg_context *)c)->shm, memory_order_acquire);
}
/* Open (create, check) the state file `path` of `size` bytes; refused
 * files are left untouched, with the reason in err. */
kg_error kg__shm_open(kg_context *ctx, const char *path, uint64_t size,
                      struct kg__shm **m_r, char *err, size_t errlen);
/* Close; the last process to close it marks it clean. */
void kg__shm_close(struct kg__shm *m);
/* Keep c's limiter state in `path` (`size` bytes) from now on: opened
 * and attached, or KG_OK if c already has that file; a context with
 * another file refuses (KG_ERR_EXISTS), the reason in err. */
kg_error kg__shm_attach(kg_context *c, const char *path, uint64_t size,
                        char *err, size_t errlen);
/* As kg__limits_lock(), kg__lease_acquire(), in the file. */
kg_slot *kg__shm_lock(struct kg__shm *m, const char *key_id, const char *limit,
                      int64_t now_s, int64_t idle_s);
int kg__shm_lease_acquire(struct kg__shm *m, const char *key_id, size_t klen,
                          const char *limit, size_t nlen, int64_t max,
                          int64_t ttl_s, int64_t now_us, char *out,
                          int64_t *in_use_r);
/* The leases of (key, limit) held at now_us, the earliest and the latest
 * expiry among them (0 when none). */
int64_t kg__shm_lease_span(struct kg__shm *m, const char *key_id,
                           const char *limit, int64_t now_us,
                           int64_t *first_r, int64_t *last_r);
kg_error kg__shm_lease_release(struct kg__shm *m, uint64_t id, const char *key,
                               size_t klen, const char *limit, int64_t now_us);
size_t kg__shm_entries(struct kg__shm *m);

/* ---- leaseid.c: "<16 hex id>.<hex of key id, 0x1f, limit name>" ------ */

/* Write a lease id (KG_LEASE_SIZE(klen, nlen) bytes with the NUL). */
void kg__lease_id_format(uint64_t id, const char *key, size_t klen,
                         const char *name, size_t nlen, char *out);
/* The random id of a lease id (lease[0..len)); -1 if it is not one. */
int kg__lease_id_random(const char *lease, size_t len, uint64_t *id_r);
/* After kg__lease_id_random(): decode "<key id>\x1f<limit>" into key
 * ((len - 17) / 2 + 1 bytes, NUL-terminated); -1 if it is not hex or
 * holds a NUL. */
int kg__lease_id_key(const char *lease, size_t len, char *key);
/* Is lease[0..len) a lease id of exactly (key_id, klen bytes; limit)? */
int kg__lease_id_names(const char *lease, size_t len, const char *key_id,
                       size_t klen, const char *limit);

/* ---- chain.c --------------------------------------------------------- */

/* What a result does to a stage (Linux-PAM's actions). */
typedef enum kg__action {
    KG__ACT_IGNORE = 0,
    KG__ACT_OK,
    KG__ACT_DONE,
    KG__ACT_BAD,
    KG__ACT_DIE,
    KG__ACT_RESET
} kg__action;

const char *kg__action_name(kg__action a);
int kg__action_parse(const char *s, kg__action *a_r);
/* Fill actions[4] (indexed by kg_result) for a PAM keyword; 0 on success. */
int kg__control_keyword(const char *s, kg__action actions[4]);
const char *kg__result_name(kg_result r);

typedef struct kg__line {
    /* What a check reads of a line, first and in the line itself, set
     * when the policy is loaded (line_hot(), policy_line.c): a check
     * calls the plugin through them, one cache line away, rather than
     * through line -> module -> plugin -> ops, three cold loads deep
     * behind each other (docs/nginx.md "Speed"). */
    void *inst;
    union {
        kg_result (*extract)(void *inst, kg_call *call, const char **key_r,
                             size_t *len_r);                 /* credential */
        kg_result (*lookup)(void *inst, kg_call *call,
                            const unsigned char hash[KG_HASH_LEN],
                            kg_record **rec_r);              /* keystore */
        kg_result (*check)(void *inst, kg_call *call);       /* account */
        kg_result (*acquire)(void *inst, kg_call *call);     /* limit */
    } run;
    /* keystore lines: the plugin's prefetch (ABI 1.2) and touch, or NULL */
    void (*prefetch)(void *inst, const unsigned char hash[KG_HASH_LEN]);
    void (*touch)(void *inst, const kg_record *rec, int64_t when);
    /* limit lines that batch() may decide (check.c): the plugin's
     * batch_key() for the instance, else NULL */
    const char *batch_key;
    kg__action actions[4];
    const kg__module *mod;
    char *label;          /* "stage:module" */
    char *control;        /* as written, for explain */
    kg__cache *cache;     /* keystore lines only */
    /* limit lines: the limit's name as the plugin read it (its `name`
     * option), NULL if it reads none (kg_policy_plan_limit_name) */
    char *limit_name;
    /* limit lines: `per: key` (counted per key, not per account) */
    int per_key;
    /* limit lines: the `count` and `window` (s) the plugin read, and
     * which it read (KG__OPTS_COUNT | KG__OPTS_WINDOW; kg__opts_size) */
    int64_t limit_count, limit_window;
    int limit_sized;
    /* credential lines: where the key goes and the auth scheme, as the
     * plugin said (kg_opts_credential_hint), else NULL */
    char *hint, *scheme;
    /* kg_opts_may_wait(): KG_WAITS_* bits, 0 for a line that never waits */
    int may_wait;
    unsigned line, column;
} kg__line;

typedef struct kg__stack {
    const char *stage;
    kg__line **lines;
    size_t n;
} kg__stack;

/*
 * The running state of one stack: feed it each module's result, it
 * says when to stop.  Exactly Linux-PAM's _pam_dispatch_aux.
 */
typedef struct kg__chain {
    int impression;  /* 0 undecided, 1 positive, -1 negative */
    kg_result status;
    int decider;     /* index of the line that set the status */
    int unavailable; /* a module answered unavailable (since the last reset) */
} kg__chain;

void kg__chain_init(kg__chain *c);
/* Returns 1 to go on, 0 to stop now. */
int kg__chain_step(kg__chain *c, const kg__action actions[4], kg_result r,
                   int index);
/* The stack's result: KG_RESULT_OK, _FAIL or _UNAVAILABLE. */
kg_result kg__chain_result(const kg__chain *c);

/* ---- target.c, request.c: the method and target --------------------- */

/* What a request's target is, as kg_check() reads it: a bad method or
 * target, and what servers read differently (docs/policy.md "Request
 * targets"); the last three are the policy's `paths:` to allow. */
#define KG__TARGET_MALFORMED 0x1u
#define KG__TARGET_SEMICOLON 0x2u      /* ";" on a ".", ".." or empty segment */
#define KG__TARGET_BACKSLASH 0x4u      /* "\" or "%5C" */
#define KG__TARGET_DOUBLE_SLASH 0x8u   /* ".." over an empty segment */

#define KG__METHOD_MAX 32
/* 1 if m is an HTTP method token (RFC 9110) of at most KG__METHOD_MAX. */
int kg__method_valid(const char *m);
/*
 * The path of the target `in` (len bytes, query and fragment dropped)
 * normalized into out, which has room for len + 2 bytes; *flags_r gets
 * the KG__TARGET_* flags of what servers read differently.  Returns 0,
 * or -1 if it is no path (no leading '/', a control character, a '%'
 * that starts no escape, an encoded NUL, control character or '/').
 */
int kg__target_normalize(const char *in, size_t len, char *out,
                         unsigned *flags_r);
/* Why kg_check() refuses a target in this state (KG__TARGET_* bits), or
 * NULL if it does not. */
const char *kg__target_refusal(unsigned state);
/* The request's KG__TARGET_* bits. */
unsigned kg__request_target_state(const kg_request *req);
/* The policy's missing_key message and auth_scheme, from its credential
 * lines' hints (policy_line.c): "missing API key (send A or B)", the
 * first scheme a line names, else "APIKey".  KG_ERR_NOMEM or KG_OK. */
kg_error kg__credential_hints(kg_policy *p);
/* kg_request_set_no_lease() was called with 1. */
int kg__request_no_lease(const kg_request *req);
/* kg_request_set_nowait() was called with 1. */
int kg__request_nowait(const kg_request *req);

/* ---- policy.c -------------------------------------------------------- */

typedef struct kg__plan {
    char *name;
    char *extends;
    int priority;
    int64_t lease_ttl;
    kg__stack account;
    kg__stack limit;
    int has_account, has_limit, has_priority, has_lease_ttl;
    unsigned line, column;
} kg__plan;

struct kg_policy {
    kg_context *ctx;
    char *source;
    char *dir;
    char *key_prefix;
    char *realm;
    char **plugin_path;
    size_t nplugin_path;
    kg__stack credential;
    kg__stack keystore;
    kg__plan *plans;
    size_t nplans;
    kg__line **all;   /* every line, for freeing */
    size_t nall;
    void *signers;    /* webhook signers (webhook.c) */
    int memory_limits;  /* some plan has a limiter whose state is in memory */
    unsigned paths_allow;   /* KG__TARGET_* the policy's paths: allows */
    /* A 401 for no key: its message ("missing API key (send ...)", from
     * the credential lines' hints) and WWW-Authenticate's scheme. */
    char *missing_key;
    char auth_scheme[32];
    struct kg__usage_conf *usage;   /* the usage: section, or NULL */
    /* admin_listen: keygated's admin listener (docs/admin-api.md); the
     * library only keeps it. */
    char *admin_listen;
    struct kg__alerts_conf *alerts;   /* notifiers: and alerts: (alerts_policy.c) */
};

const kg__plan *kg__policy_plan(const kg_policy *p, const char *name);

/* A policy being loaded: what the parsers of policy.c and policy_line.c
 * report their errors against. */
typedef struct kg__pload {
    kg_policy *p;
    kg_diag *diag;
    const char *file;
} kg__pload;

/* Set L's diag to file:line:column of n (0:0 without n): KG_ERR_POLICY. */
kg_error kg__err_at(kg__pload *L, const kg__ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The policy's `paths:` mapping (target.c): the KG__TARGET_* bits it
 * allows are or-ed into *allow_r. */
kg_error kg__paths_load(kg__pload *L, kg__ynode *map, unsigned *allow_r);
/* Report the first key of `map` not marked used. */
kg_error kg__check_unknown(kg__pload *L, kg__ynode *map,
                           const char *where, const char *allowed);
/* n as a whole number in [lo, hi] into *v_r; else KG_ERR_POLICY, the
 * diag naming `what` and the range. */
kg_error kg__parse_int(kg__pload *L, kg__ynode *n, const char *what,
                       long long lo, long long hi, long long *v_r);
/* KG_ERR_POLICY (and the diag) unless n is a single value. */
kg_error kg__want_scalar(kg__pload *L, kg__ynode *n, const char *what);
/* A policy's `plugin_path:` node (a folder or a list of them) into
 * *dirs_r (malloc()ed strings in a malloc()ed array, *n_r of them, the
 * caller's to free, also the part made before an error). */
kg_error kg__parse_plugin_path(kg__pload *L, kg__ynode *v, char ***dirs_r,
                               size_t *n_r);
/* A policy file's text, NUL-terminated, into *text_r (the caller frees
 * it); KG_ERR_IO, _POLICY (too large, a NUL byte) or _NOMEM with the
 * diag filled. */
kg_error kg__read_policy_file(const char *path, char **text_r, size_t *len_r,
                              kg_diag *diag);

/* policy_limits.c: the policy's `limits:` section (attaches its state
 * file to the context). */
kg_error kg__limits_section(kg__pload *L, kg__ynode *v);

/* ---- policy_line.c: a stage's module lines ---------------------------- */

/*
 * Load the module lines of a stage (n: a list, or NULL / empty for
 * none) into st, each plugin instance created.  Every line is also
 * added to L->p->all, so kg_policy_free frees them, also on error.
 */
kg_error kg__parse_stack(kg__pload *L, kg__ynode *n, const char *stage,
                         int kind, kg__stack *st);
/* Destroy the line's instance and free it (NULL: nothing). */
void kg__line_free(kg__line *l);
/* Load plugin `mod` (a scalar node) of `kind` and make the view of its
 * options v (NULL: none) for create(): KG_OK with *mod_r and *opts_r
 * (kg__opts_free it), else the policy error at mod. */
kg_error kg__line_plugin(kg__pload *L, kg__ynode *mod, kg__ynode *v, int kind,
                         const kg__module **mod_r, kg_opts **opts_r);

/* ---- keys.c, accounts.c: management ---------------------------------- */

/* The checks of kg_keys_create() and kg_accounts_create(), the diag
 * naming `field`: a name (one line of printable text), a plan of the
 * policy, networks and permissions as stores keep them. */
kg_error kg__check_name(const char *field, const char *name, kg_diag *diag);
kg_error kg__check_plan(kg_policy *p, const char *plan, kg_diag *diag);
kg_error kg__check_nets_perms(char *const *cidrs, size_t ncidrs,
                              char *const *perms, size_t nperms,
                              kg_diag *diag);
/* Empty every keystore line's record cache (a management write). */
void kg__clear_caches(kg_policy *p);
/* The first keystore line that keeps accounts, or NULL (diag says so). */
const kg__line *kg__account_store(kg_policy *p, kg_diag *diag);
/* KG_OK if r's permissions and networks are within a's ceiling, else
 * KG_ERR_INVALID with the diag naming the first that is not. */
kg_error kg__key_within_account(const kg_record *r, const kg_account *a,
                                kg_diag *diag);
/* A new account id, "acct_" and 16 hex digits. */
kg_error kg__account_new_id(char out[32]);

/* ---- usage_policy.c, usage.c: metering (docs/usage.md) -------------- */

/* The policy's usage: section. */
typedef struct kg__usage_conf {
    const kg__module *mod;
    const struct kg_usage_ops *ops;
    void *inst;
    int64_t flush_interval;   /* seconds */
    uint32_t sample_ppm;      /* allowed decisions kept as events, per 10^6 */
    uint64_t seed;            /* of the sample */
    size_t max_pending;       /* rows (and events) held at most */
    int may_wait;             /* kg_opts_may_wait(): its flush waits */
} kg__usage_conf;

/* Parse and load the usage: section n into p->usage. */
kg_error kg__usage_section_load(kg__pload *L, kg__ynode *n);
void kg__usage_section_free(kg_policy *p);
/* The policy's section, or NULL with the diag saying it has none. */
const kg__usage_conf *kg__usage_section(const kg_policy *p, kg_diag *diag);
/* The context's metering state. */
kg_error kg__usage_new(struct kg__usage **u_r);
void kg__usage_free(struct kg__usage *u);
/* Once a check has its record: the calling thread's shard, and the
 * record's bucket asked for from memory (check.c); pass the result to
 * kg__usage_count(). */
void *kg__usage_prefetch(const kg_policy *p, const kg_record *rec,
                         int64_t now_us);
/* Count the decision d of req, made at now_us (check.c, not for a peek);
 * shard: what kg__usage_prefetch() gave, or NULL. */
void kg__usage_count(const kg_policy *p, const kg_request *req,
                     const kg_decision *d, int64_t now_us, void *shard);

/* ---- webhook.c: the policy's signers: section ------------------------- */
kg_error kg__signers_load(kg_policy *p, kg__ynode *n, const char *file,
                          kg_diag *diag);
void kg__signers_free(kg_policy *p);
/* The signers, for kg_policy_explain(). */
void kg__signers_explain(const kg_policy *p, kg__buf *b);

/* ---- alerts_policy.c: the notifiers: and alerts: sections ------------ */
kg_error kg__notifiers_load(kg__pload *L, kg__ynode *n);
kg_error kg__alerts_load(kg__pload *L, kg__ynode *n);
void kg__alerts_free(kg_policy *p);

/* ---- decision.c ------------------------------------------------------ */

#define KG__MAX_LIMITS 16
#define KG__MAX_HEADERS 16
/* A limit's name: the bytes of kg__limit_report.name but its NUL. */
#define KG__LIMIT_NAME_MAX 47
/* Lines in one stage's stack (check.c's per-line arrays): a load error
 * past it (policy_line.c). */
#define KG__MAX_LINES 64

struct kg__limit_report {
    char name[48];
    int64_t limit, remaining, reset, window, retry_after;
    int64_t reset_in;   /* seconds from the decision to reset */
};

struct kg_decision {
    /* Set on every check (kg__decision_new clears only these). */
    kg_code code;
    int status;
    int priority;
    int denied_limit;   /* index of the limit that denied, or -1 */
    int no_key;         /* 401 because no credential was presented */
    int rendered;       /* 0, 1 rendering, 2 rendered (atomic: render()) */
    size_t nlimits;
    size_t nheaders;
    kg_record *record;
    const char *plan;   /* the record's plan (the decision holds the record) */
    /* The rendered header values and body, each NUL-terminated: htext,
     * or the heap once they outgrow it (many limits, long names). */
    char *hmem;
    size_t body_off;    /* offset + 1 of the body in hmem; 0: none */
    /* While rendering: the limit nearest exhaustion (X-RateLimit-*). */
    const struct kg__limit_report *nearest;
    /* The lease ids handed out ("a,b"): lease_inl, or the heap once the
     * list outgrows it (long key ids, many concurrency limits). */
    char *lease;
    size_t lease_len, lease_cap;
    /* The first KG__LEASE_HANDLES memory leases of `lease`, and whether
     * kg_decision_release() ran. */
    struct kg__lease_handle lh[KG__LEASE_HANDLES];
    int nlh;
    int nlease;         /* leases in `lease` */
    int released;
    char message[256];
    char decided_by[96];
    char realm[128];    /* 401 only: WWW-Authenticate */
    char scheme[32];    /* 401 only: its auth scheme */
    char lease_inl[512];
    /* Valid below nlimits / nheaders. */
    struct kg__limit_report limits[KG__MAX_LIMITS];
    const char *hname[KG__MAX_HEADERS];
    size_t hvoff[KG__MAX_HEADERS];   /* each value's offset in hmem */
    char htext[1024];
};

kg_decision *kg__decision_new(void);
void kg__decision_deny(kg_decision *d, kg_code code, const char *message,
                       const char *decided_by);
/*
 * Room at the end of the lease list for one more lease of `len` bytes
 * (with its comma and NUL), moving the list to the heap if it must:
 * where to write the lease, or NULL if out of memory (the list is as it
 * was).  kg__decision_lease_commit(d, len) then appends what was written.
 */
char *kg__decision_lease_room(kg_decision *d, size_t len);
void kg__decision_lease_commit(kg_decision *d, size_t len);
/* Take the lease at p (len bytes, inside the list) out of the list. */
void kg__decision_lease_remove(kg_decision *d, char *p, size_t len);

/* ---- check.c, call.c ------------------------------------------------- */

struct kg_call {
    const kg_policy *policy;
    const kg_request *req;
    kg_decision *d;
    const kg_record *record;
    const char *plan;
    const kg__plan *planp;
    int64_t now_us;
    int peek;
    kg_code deny_code;
    const char *deny_message;
    int lease_count;
    const char *ok_by;   /* label of the module that made the last stage pass */
    const kg_account *account;   /* the record's account, or NULL */
    /* What the running limit line counts under (kg_call_subject): the
     * account id, or the key id (a `per: key` line, no account). */
    const char *subject;
    int per_key;         /* the running limit line counts per key */
    kg__lpin lpin;       /* the key's limiter slot, pinned (hints.c) */
    void *ushard;        /* the usage shard, once prefetched (usage.c) */
    int nowait;          /* kg_request_set_nowait(): never wait on a store */
    int blocked;         /* a store said it would wait (kg_call_would_block) */
    /* Last: written before it is read, so a check clears the call only
     * up to here. */
    char deny_buf[256];
};

#endif
