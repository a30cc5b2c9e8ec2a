/*
 * alerts.c - the evaluator: what each rule knows of each account and key
 * (fed from the usage counters, the events and the limiters' reports),
 * and kg_alerts_run(), which turns conditions into outbox entries, once
 * per condition and window, and says when they clear (docs/alerts.md).
 *
 * State lives in a hash table of subjects ("a:<account>", "k:<key>"),
 * each holding one slot per rule of the policy it was built for; a
 * policy whose rules differ starts the slots afresh (the outbox's
 * unique message ids keep an alert already written from being written
 * twice).
 */
#include "alerts_eval.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

static void slot_free(const kg__alert_rule *r, struct kg__aslot *s)
{
    (void)r;
    free(s->ring);
    free(s->nets);
}

static void subj_free(kg_alerts *a, struct kg__subj *s)
{
    size_t i;
    if (s == NULL)
        return;
    for (i = 0; i < a->nslots && s->slots != NULL; i++)
        slot_free(NULL, &s->slots[i]);
    free(s->slots);
    free(s->quota);
    free(s->id);
    free(s->account_id);
    free(s->key_id);
    free(s->key_prefix);
    free(s);
}

static void drop_subjects(kg_alerts *a)
{
    size_t i;
    for (i = 0; i < a->cap; i++) {
        struct kg__subj *s = a->tab[i], *next;
        for (; s != NULL; s = next) {
            next = s->next;
            subj_free(a, s);
        }
        a->tab[i] = NULL;
    }
    a->n = 0;
}

kg_error kg_alerts_new(kg_alerts **a_r)
{
    kg_alerts *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return KG_ERR_NOMEM;
    a->cap = 1024;
    a->tab = calloc(a->cap, sizeof(*a->tab));
    if (a->tab == NULL) {
        free(a);
        return KG_ERR_NOMEM;
    }
    a->key_interval = 300;
    *a_r = a;
    return KG_OK;
}

static void overrides_clear(kg_alerts *a)
{
    size_t i;
    for (i = 0; i < a->nov; i++) {
        free(a->ov[i].account_id);
        free(a->ov[i].rule);
        free(a->ov[i].url);
        free(a->ov[i].secret_file);
    }
    free(a->ov);
    a->ov = NULL;
    a->nov = 0;
}

void kg_alerts_free(kg_alerts *a)
{
    if (a == NULL)
        return;
    drop_subjects(a);
    free(a->tab);
    free(a->sig);
    overrides_clear(a);
    free(a);
}

void kg_alerts_set_key_interval(kg_alerts *a, int64_t seconds)
{
    a->key_interval = seconds > 0 ? seconds : 300;
}

/* What identifies the rules' state: a policy with the same rules (a
 * reload that changed something else) keeps it. */
static char *signature(const kg__alerts_conf *c)
{
    kg__buf b;
    size_t i, j;
    kg__buf_init(&b);
    for (i = 0; c != NULL && i < c->nr; i++) {
        const kg__alert_rule *r = &c->rv[i];
        kg__buf_addf(&b, "%s|%d|%d|%g|%lld|%lld|%lld|%lld|%d|%d|%lld|", r->name,
                     r->kind, r->per_key, r->threshold, (long long)r->over,
                     (long long)r->baseline_days, (long long)r->min_requests,
                     (long long)r->within, r->prefix4, r->prefix6,
                     (long long)r->duration);
        for (j = 0; j < r->ncodes; j++)
            kg__buf_addf(&b, "%d,", (int)r->codes[j]);
        kg__buf_adds(&b, ";");
    }
    return kg__buf_take(&b);
}

kg_error kg__alerts_bind(kg_alerts *a, const kg_policy *p)
{
    const kg__alerts_conf *c = kg__alerts_conf_of(p);
    char *sig = signature(c);

    if (sig == NULL)
        return KG_ERR_NOMEM;
    a->conf = c;
    if (a->sig != NULL && strcmp(a->sig, sig) == 0) {
        free(sig);
        return KG_OK;
    }
    drop_subjects(a);
    free(a->sig);
    a->sig = sig;
    a->seed_until = 0;   /* their history is seeded again */
    a->nslots = c ? c->nr : 0;
    return KG_OK;
}

struct kg__subj *kg__alerts_subject(kg_alerts *a, int is_key, const char *id,
                                    int create)
{
    char tag = is_key ? 'k' : 'a';
    uint64_t h = hash_str(id) ^ (uint64_t)tag;
    size_t i = (size_t)(h & (a->cap - 1));
    struct kg__subj *s;

    for (s = a->tab[i]; s != NULL; s = s->next)
        if (s->is_key == is_key && strcmp(s->id, id) == 0)
            return s;
    if (!create || a->conf == NULL)
        return NULL;
    if (a->n >= a->cap * 2) {
        /* Grow: rehash every subject into twice the buckets. */
        size_t ncap = a->cap * 2, j;
        struct kg__subj **nt = calloc(ncap, sizeof(*nt));
        if (nt != NULL) {
            for (j = 0; j < a->cap; j++) {
                struct kg__subj *x = a->tab[j], *next;
                for (; x != NULL; x = next) {
                    size_t k = (size_t)(x->hash & (ncap - 1));
                    next = x->next;
                    x->next = nt[k];
                    nt[k] = x;
                }
            }
            free(a->tab);
            a->tab = nt;
            a->cap = ncap;
            i = (size_t)(h & (a->cap - 1));
        }
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->id = strdup(id)) == NULL ||
        (s->slots = calloc(a->nslots + 1, sizeof(*s->slots))) == NULL) {
        if (s)
            free(s->id);
        free(s);
        return NULL;
    }
    s->is_key = is_key;
    s->hash = h;
    s->next = a->tab[i];
    a->tab[i] = s;
    a->n++;
    return s;
}

static int set_str(char **dst, const char *v)
{
    char *c;
    if (v == NULL || v[0] == '\0' || (*dst != NULL && strcmp(*dst, v) == 0))
        return 0;
    if ((c = strdup(v)) == NULL)
        return -1;
    free(*dst);
    *dst = c;
    return 0;
}

/* The subject of a rule that counts per account (or per key: per_key,
 * or a key without an account).  `older`: the observation is older
 * than what the subject has seen (seeding, newest first), so it does
 * not replace the subject's last key. */
static struct kg__subj *subject_for(kg_alerts *a, int per_key,
                                    const char *account_id, const char *key_id,
                                    int older)
{
    struct kg__subj *s;
    int is_key = per_key || account_id == NULL || account_id[0] == '\0';
    const char *id = is_key ? (key_id ? key_id : "") : account_id;

    if (is_key && id[0] == '\0' && !per_key)
        is_key = 0;   /* nothing identified: the "" account */
    s = kg__alerts_subject(a, is_key, id, 1);
    if (s != NULL && (set_str(&s->account_id, account_id) != 0 ||
                      ((!older || s->key_id == NULL) &&
                       set_str(&s->key_id, key_id) != 0)))
        return NULL;
    return s;
}

/* The ring of `size` counters, advanced to period `p` (zeroing what it
 * skips); -1 if out of memory. */
int kg__ring_advance(struct kg__aslot *sl, size_t size, int64_t p)
{
    if (sl->ring == NULL) {
        if ((sl->ring = calloc(size, sizeof(*sl->ring))) == NULL)
            return -1;
        sl->nring = size;
        sl->cur = p;
        sl->first = p;
        return 0;
    }
    if (p <= sl->cur)
        return 0;
    if (p - sl->cur >= (int64_t)size) {
        memset(sl->ring, 0, size * sizeof(*sl->ring));
    } else {
        int64_t q;
        for (q = sl->cur + 1; q <= p; q++)
            sl->ring[q % (int64_t)size] = 0;
    }
    sl->cur = p;
    return 0;
}

static int code_matches(const kg__alert_rule *r, kg_code code)
{
    size_t i;
    if (code == KG_CODE_NONE)
        return 0;
    if (r->ncodes == 0)
        return 1;
    for (i = 0; i < r->ncodes; i++)
        if (r->codes[i] == code)
            return 1;
    return 0;
}

kg_error kg__alerts_add_count(kg_alerts *a, size_t i, const char *account_id,
                              const char *key_id, int64_t p, int64_t count,
                              int older)
{
    const kg__alert_rule *r = &a->conf->rv[i];
    struct kg__subj *s;
    struct kg__aslot *sl;
    size_t size;
    uint32_t c = (uint32_t)(count < 0 ? 0 : count > UINT32_MAX ? UINT32_MAX
                                                                : count);

    if (r->kind == KG__AR_SPIKE)
        size = (size_t)(r->baseline_days * (86400 / r->over) + 1);
    else
        size = (size_t)(r->within / 60);
    if ((s = subject_for(a, r->per_key, account_id, key_id, older)) == NULL)
        return KG_ERR_NOMEM;
    s->dirty = 1;
    sl = &s->slots[i];
    if (kg__ring_advance(sl, size, p) != 0)
        return KG_ERR_NOMEM;
    /* Counts of a period the ring has left behind are dropped; one
     * older than the first seen is history (a restart's seeding, a
     * late row): the subject's history starts there. */
    if (p <= sl->cur - (int64_t)size)
        return KG_OK;
    if (p < sl->first)
        sl->first = p;
    sl->ring[p % (int64_t)size] = UINT32_MAX - sl->ring[p % (int64_t)size] < c
        ? UINT32_MAX : sl->ring[p % (int64_t)size] + c;
    return KG_OK;
}

kg_error kg_alerts_observe_count(kg_alerts *a, const char *account_id,
                                 const char *key_id, int64_t minute_start,
                                 kg_code code, int64_t count)
{
    const kg__alerts_conf *c = a->conf;
    size_t i;
    kg_error e = KG_OK;

    for (i = 0; c != NULL && i < c->nr && e == KG_OK; i++) {
        const kg__alert_rule *r = &c->rv[i];
        if (r->kind == KG__AR_SPIKE)
            e = kg__alerts_add_count(a, i, account_id, key_id,
                                     minute_start / r->over, count, 0);
        else if (r->kind == KG__AR_DENIED && code_matches(r, code))
            e = kg__alerts_add_count(a, i, account_id, key_id,
                                     minute_start / 60, count, 0);
    }
    return e;
}

/* The network of an address for rule r, as 16 bytes. */
static int mask_client(const kg__alert_rule *r, const char *client,
                       unsigned char out[16])
{
    static const unsigned char v4[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
    unsigned prefix, i;
    if (kg_addr_parse(client, out) != KG_OK)
        return -1;
    prefix = memcmp(out, v4, 12) == 0 ? 96 + (unsigned)r->prefix4
                                      : (unsigned)r->prefix6;
    for (i = 0; i < 16; i++) {
        unsigned bits = prefix > i * 8 ? prefix - i * 8 : 0;
        if (bits < 8)
            out[i] &= (unsigned char)(0xff00 >> bits);
    }
    return 0;
}

kg_error kg_alerts_observe_client(kg_alerts *a, const char *account_id,
                                  const char *key_id, const char *key_prefix,
                                  int64_t time_s, const char *client)
{
    const kg__alerts_conf *c = a->conf;
    size_t i, j;

    for (i = 0; c != NULL && i < c->nr; i++) {
        const kg__alert_rule *r = &c->rv[i];
        unsigned char net[16];
        struct kg__subj *s;
        struct kg__aslot *sl;

        if (r->kind != KG__AR_NEWNET || client == NULL ||
            mask_client(r, client, net) != 0)
            continue;
        /* Unidentified requests have no network of their own to learn. */
        if ((account_id == NULL || !account_id[0]) && (key_id == NULL || !key_id[0]))
            continue;
        if ((s = subject_for(a, 0, account_id, key_id, 0)) == NULL ||
            set_str(&s->key_prefix, key_prefix) != 0)
            return KG_ERR_NOMEM;
        sl = &s->slots[i];
        for (j = 0; j < sl->nnets; j++)
            if (memcmp(sl->nets[j].net, net, 16) == 0)
                break;
        if (j < sl->nnets)
            continue;
        if (sl->nnets == 0)
            sl->first = time_s;
        if (sl->nnets >= KG__MAX_NETS)
            continue;   /* docs/alerts.md: past this many, no more alerts */
        if (kg__grow(&sl->nets, &sl->capnets, sl->nnets, sizeof(*sl->nets),
                     4) != 0)
            return KG_ERR_NOMEM;
        memcpy(sl->nets[sl->nnets].net, net, 16);
        s->dirty = 1;
        /* Networks of the first day are learned, not new (docs). */
        sl->nets[sl->nnets].pending = time_s - sl->first >= KG__LEARN_SECONDS;
        sl->nets[sl->nnets].seen = time_s;
        sl->nnets++;
    }
    return KG_OK;
}

kg_error kg_alerts_observe_quota(kg_alerts *a, const char *subject,
                                 const char *limit_name, int64_t limit,
                                 int64_t used, int64_t reset, int64_t window)
{
    const kg__alerts_conf *c = a->conf;
    struct kg__subj *s;
    struct kg__quota *q;
    size_t i;

    if (c == NULL || !c->quota || limit <= 0)
        return KG_OK;
    if ((s = kg__alerts_subject(a, 0, subject, 1)) == NULL ||
        set_str(&s->account_id, subject) != 0)
        return KG_ERR_NOMEM;
    for (i = 0; i < s->nquota; i++)
        if (strcmp(s->quota[i].limit, limit_name) == 0)
            break;
    if (i == s->nquota) {
        void *nv = realloc(s->quota, (s->nquota + 1) * sizeof(*s->quota));
        if (nv == NULL)
            return KG_ERR_NOMEM;
        s->quota = nv;
        memset(&s->quota[i], 0, sizeof(s->quota[i]));
        kg__strlcpy(s->quota[i].limit, limit_name, sizeof(s->quota[i].limit));
        s->nquota++;
    }
    q = &s->quota[i];
    /* A later report of the same window only raises the figure; a new
     * window starts over. */
    if (reset != q->reset || used > q->used) {
        q->used = used;
        s->dirty = 1;
    }
    q->limit_n = limit;
    q->reset = reset;
    q->window = window;
    return KG_OK;
}

static void quota_cb(const char *subject, const char *limit, int64_t limit_n,
                     int64_t used, int64_t reset, int64_t window, void *ud)
{
    kg_alerts *a = ud;
    if (kg_alerts_observe_quota(a, subject, limit, limit_n, used, reset,
                                window) != KG_OK)
        a->oom = 1;
}

kg_error kg_alerts_observe_quotas(kg_alerts *a, kg_context *ctx)
{
    a->oom = 0;
    kg__quota_each(ctx, quota_cb, a);
    return a->oom ? KG_ERR_NOMEM : KG_OK;
}

kg_error kg_alerts_set_overrides(kg_alerts *a, const kg_alert_override *o,
                                 size_t n)
{
    size_t i;
    overrides_clear(a);
    if (n == 0)
        return KG_OK;
    if ((a->ov = calloc(n, sizeof(*a->ov))) == NULL)
        return KG_ERR_NOMEM;
    for (i = 0; i < n; i++) {
        struct kg__override *d = &a->ov[a->nov++];
        d->threshold = o[i].threshold;
        if ((d->account_id = strdup(o[i].account_id ? o[i].account_id : "")) == NULL ||
            (d->rule = strdup(o[i].rule ? o[i].rule : "")) == NULL ||
            (o[i].url && o[i].url[0] && (d->url = strdup(o[i].url)) == NULL) ||
            (o[i].secret_file && o[i].secret_file[0] &&
             (d->secret_file = strdup(o[i].secret_file)) == NULL))
            return KG_ERR_NOMEM;
    }
    return KG_OK;
}

struct ov_list {
    kg_alert_override *v;
    size_t n, cap;
    int oom;
};

/* A copy of each (the store's strings die with the callback). */
static int ov_cb(const kg_alert_override *o, void *ud)
{
    struct ov_list *l = ud;
    kg_alert_override *d;
    if (kg__grow(&l->v, &l->cap, l->n, sizeof(*l->v), 16) != 0) {
        l->oom = 1;
        return 1;
    }
    d = &l->v[l->n++];
    d->threshold = o->threshold;
    d->account_id = strdup(o->account_id ? o->account_id : "");
    d->rule = strdup(o->rule ? o->rule : "");
    d->url = strdup(o->url ? o->url : "");
    d->secret_file = strdup(o->secret_file ? o->secret_file : "");
    if (!d->account_id || !d->rule || !d->url || !d->secret_file)
        l->oom = 1;
    return l->oom;
}

kg_error kg_alerts_load_overrides(kg_alerts *a, const struct kg_outbox_ops *ops,
                                  void *store, kg_diag *diag)
{
    struct ov_list l = { NULL, 0, 0, 0 };
    kg_error e = ops->override_list(store, ov_cb, &l, diag);
    size_t i;

    if (e == KG_OK && l.oom)
        e = KG_ERR_NOMEM;
    if (e == KG_OK)
        e = kg_alerts_set_overrides(a, l.v, l.n);
    for (i = 0; i < l.n; i++) {
        free((char *)l.v[i].account_id);
        free((char *)l.v[i].rule);
        free((char *)l.v[i].url);
        free((char *)l.v[i].secret_file);
    }
    free(l.v);
    return e;
}

const struct kg__override *kg__alerts_override(const kg_alerts *a,
                                               const char *account_id,
                                               const char *rule)
{
    size_t i;
    if (account_id == NULL)
        return NULL;
    for (i = 0; i < a->nov; i++)
        if (strcmp(a->ov[i].account_id, account_id) == 0 &&
            strcmp(a->ov[i].rule, rule) == 0)
            return &a->ov[i];
    return NULL;
}

/* A message id that is the same whenever the same alert is written:
 * "msg_" and 27 base62 digits of SHA-256(what identifies it). */
static void message_id(const char *what, char out[KG_WEBHOOK_ID_LEN + 1])
{
    static const char b62[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char md[32];
    unsigned int mdlen = 0;
    size_t i;

    EVP_Digest(what, strlen(what), md, &mdlen, EVP_sha256(), NULL);
    memcpy(out, "msg_", 4);
    for (i = 0; i < 27; i++)
        out[4 + i] = b62[md[i] % 62];
    out[31] = '\0';
}

kg_error kg__alerts_emit(kg_alerts *a, const kg__alert_rule *r,
                         const char *type, const char *account_id,
                         const char *key_id, const char *key_prefix,
                         int64_t window, int64_t now, const char *figures,
                         const char *message)
{
    const kg__alerts_conf *c = a->conf;
    const struct kg__override *ov = kg__alerts_override(a, account_id, r->name);
    char *what = NULL, *payload = NULL, tbuf[32];
    char mid[KG_WEBHOOK_ID_LEN + 1];
    kg_outbox_entry e;
    kg__buf b;
    size_t i, nsend = r->nnotify + (ov && ov->url ? 1 : 0);
    kg_error err = KG_OK;

    for (i = 0; i < nsend && err == KG_OK; i++) {
        /* The account's own receiver goes through the rule's first
         * notifier (its scheme and timeouts) with the account's URL. */
        const kg__notifier *n = &c->nv[r->notify[i < r->nnotify ? i : 0]];
        int own = i >= r->nnotify, created = 0;

        what = kg__asprintf("%s|%s|%s|%s|%lld|%s%s", r->name, type,
                            account_id ? account_id : "",
                            key_id ? key_id : "", (long long)window, n->name,
                            own ? "|account" : "");
        if (what == NULL)
            return KG_ERR_NOMEM;
        message_id(what, mid);
        free(what);
        kg__format_time(now, tbuf);
        kg__buf_init(&b);
        kg__buf_adds(&b, "{\"type\":");
        kg__buf_json_str(&b, type);
        kg__buf_adds(&b, ",\"id\":");
        kg__buf_json_str(&b, mid);
        kg__buf_adds(&b, ",\"time\":");
        kg__buf_json_str(&b, tbuf);
        kg__buf_adds(&b, ",\"rule\":");
        kg__buf_json_str(&b, r->name);
        kg__buf_adds(&b, ",\"kind\":");
        kg__buf_json_str(&b, kg__alert_kind_name(r->kind));
        kg__buf_adds(&b, ",\"account\":");
        if (account_id && account_id[0])
            kg__buf_json_str(&b, account_id);
        else
            kg__buf_adds(&b, "null");
        kg__buf_adds(&b, ",\"key\":");
        if (key_id && key_id[0]) {
            kg__buf_adds(&b, "{\"id\":");
            kg__buf_json_str(&b, key_id);
            kg__buf_adds(&b, ",\"prefix\":");
            if (key_prefix && key_prefix[0])
                kg__buf_json_str(&b, key_prefix);
            else
                kg__buf_adds(&b, "null");
            kg__buf_adds(&b, "}");
        } else {
            kg__buf_adds(&b, "null");
        }
        kg__buf_adds(&b, ",\"figures\":");
        kg__buf_adds(&b, figures);
        kg__buf_adds(&b, ",\"message\":");
        kg__buf_json_str(&b, message);
        kg__buf_adds(&b, "}");
        if ((payload = kg__buf_take(&b)) == NULL)
            return KG_ERR_NOMEM;
        memset(&e, 0, sizeof(e));
        e.msg_id = mid;
        e.notifier = n->name;
        e.rule = r->name;
        e.account_id = account_id ? account_id : "";
        e.type = type;
        e.payload = payload;
        e.created = now;
        e.next_at = now;
        e.state = KG_OUTBOX_PENDING;
        e.last_error = "";
        e.url = own ? ov->url : NULL;
        e.secret_file = own ? ov->secret_file : NULL;
        err = a->ops->put(a->store, &e, &created, a->diag);
        free(payload);
        if (err == KG_OK && created)
            a->written++;
    }
    if (err == KG_OK) {
        if (strcmp(type, "alert.cleared") == 0)
            a->stats.cleared++;
        else
            a->stats.fired++;
    }
    return err;
}

kg_error kg_alerts_run(kg_alerts *a, const kg_policy *p, int64_t now,
                       const struct kg_outbox_ops *ops, void *store,
                       size_t *n_r, kg_diag *diag)
{
    kg_error e;
    size_t i;
    int full;

    kg__diag_clear(diag);
    if (n_r != NULL)
        *n_r = 0;
    if ((e = kg__alerts_bind(a, p)) != KG_OK)
        return e;
    if (a->conf == NULL || a->conf->nr == 0)
        return KG_OK;
    a->ops = ops;
    a->store = store;
    a->diag = diag;
    a->written = 0;
    /* Where the limits stand now, from the context's watch; and the
     * watch's floor: the lowest threshold of the rules and accounts. */
    if (a->conf->quota) {
        double floor = a->conf->quota_min;
        for (i = 0; i < a->nov; i++) {
            const kg__alert_rule *r = kg__alerts_rule(a->conf, a->ov[i].rule);
            if (r != NULL && r->kind == KG__AR_QUOTA && a->ov[i].threshold > 0 &&
                a->ov[i].threshold < floor)
                floor = a->ov[i].threshold;
        }
        kg__quota_floor_set(p->ctx, floor);
        if ((e = kg_alerts_observe_quotas(a, p->ctx)) != KG_OK)
            return e;
    }
    /* A subject is evaluated when something was observed of it, and
     * every subject once a minute (what clears with time: a window
     * that ended, denials that aged out, a quiet period). */
    full = now / 60 != a->last_full;
    for (i = 0; i < a->cap && e == KG_OK; i++) {
        struct kg__subj *s;
        for (s = a->tab[i]; s != NULL && e == KG_OK; s = s->next) {
            if (!full && !s->dirty)
                continue;
            if ((e = kg__alerts_eval_subject(a, s, now)) == KG_OK)
                s->dirty = 0;
        }
    }
    if (e == KG_OK && full)
        a->last_full = now / 60;
    if (e == KG_OK && (a->last_keys == 0 || now - a->last_keys >= a->key_interval)) {
        e = kg__alerts_eval_keys(a, p, now);
        if (e == KG_OK)
            a->last_keys = now;
    }
    if (n_r != NULL)
        *n_r = a->written;
    return e;
}

void kg_alerts_stats_get(const kg_alerts *a, kg_alerts_stats *st)
{
    *st = a->stats;
}
