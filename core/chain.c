/*
 * chain.c - the stack engine: what a module's result does to its stage.
 *
 * This is Linux-PAM's _pam_dispatch_aux reduced to keygate's four
 * results, with no numeric jumps:
 *
 *   - a stack starts undecided ("impression" 0, status fail);
 *   - ok/done: if the stack is undecided, or positive so far, it becomes
 *     positive with this module's status; done then ends the stack if it
 *     is not negative (a sufficient module cannot override an earlier
 *     required failure);
 *   - bad/die: the first of them makes the stack negative with this
 *     module's status (fail or unavailable); die ends the stack;
 *   - ignore: nothing;
 *   - reset: forget everything so far.
 *
 * An IGNORE result never makes a stack positive, so a stack in which
 * every module answered ignore ends undecided, which fails.  If such a
 * stack saw a module answer unavailable (mapped to ignore, as sufficient
 * and optional do), it ends unavailable rather than failed: nobody gave
 * a definite no, and one module could not answer, so "invalid key" would
 * be a lie (docs/architecture.md: unavailable never turns into an invalid key).
 *
 * The keywords map onto actions as Linux-PAM's do (pam.conf(5)):
 *   required   [success=ok   ignore=ignore default=bad]
 *   requisite  [success=ok   ignore=ignore default=die]
 *   sufficient [success=done default=ignore]
 *   optional   [success=ok   default=ignore]
 * where keygate's "default" results are fail and unavailable.
 */
#include "internal.h"

#include <string.h>

const char *kg__action_name(kg__action a)
{
    switch (a) {
    case KG__ACT_IGNORE: return "ignore";
    case KG__ACT_OK: return "ok";
    case KG__ACT_DONE: return "done";
    case KG__ACT_BAD: return "bad";
    case KG__ACT_DIE: return "die";
    case KG__ACT_RESET: return "reset";
    }
    return "?";
}

int kg__action_parse(const char *s, kg__action *a_r)
{
    static const struct { const char *name; kg__action a; } t[] = {
        { "ignore", KG__ACT_IGNORE }, { "continue", KG__ACT_IGNORE },
        { "ok", KG__ACT_OK }, { "done", KG__ACT_DONE },
        { "bad", KG__ACT_BAD }, { "die", KG__ACT_DIE },
        { "reset", KG__ACT_RESET },
    };
    size_t i;
    for (i = 0; i < KG__ARRAY_LEN(t); i++) {
        if (strcmp(s, t[i].name) == 0) {
            *a_r = t[i].a;
            return 0;
        }
    }
    return -1;
}

const char *kg__result_name(kg_result r)
{
    switch (r) {
    case KG_RESULT_OK: return "ok";
    case KG_RESULT_FAIL: return "fail";
    case KG_RESULT_IGNORE: return "ignore";
    case KG_RESULT_UNAVAILABLE: return "unavailable";
    }
    return "?";
}

int kg__control_keyword(const char *s, kg__action a[4])
{
    if (strcmp(s, "required") == 0) {
        a[KG_RESULT_OK] = KG__ACT_OK;
        a[KG_RESULT_FAIL] = KG__ACT_BAD;
        a[KG_RESULT_IGNORE] = KG__ACT_IGNORE;
        a[KG_RESULT_UNAVAILABLE] = KG__ACT_BAD;
    } else if (strcmp(s, "requisite") == 0) {
        a[KG_RESULT_OK] = KG__ACT_OK;
        a[KG_RESULT_FAIL] = KG__ACT_DIE;
        a[KG_RESULT_IGNORE] = KG__ACT_IGNORE;
        a[KG_RESULT_UNAVAILABLE] = KG__ACT_DIE;
    } else if (strcmp(s, "sufficient") == 0) {
        a[KG_RESULT_OK] = KG__ACT_DONE;
        a[KG_RESULT_FAIL] = KG__ACT_IGNORE;
        a[KG_RESULT_IGNORE] = KG__ACT_IGNORE;
        a[KG_RESULT_UNAVAILABLE] = KG__ACT_IGNORE;
    } else if (strcmp(s, "optional") == 0) {
        a[KG_RESULT_OK] = KG__ACT_OK;
        a[KG_RESULT_FAIL] = KG__ACT_IGNORE;
        a[KG_RESULT_IGNORE] = KG__ACT_IGNORE;
        a[KG_RESULT_UNAVAILABLE] = KG__ACT_IGNORE;
    } else {
        return -1;
    }
    return 0;
}

void kg__chain_init(kg__chain *c)
{
    c->impression = 0;
    c->status = KG_RESULT_FAIL;
    c->decider = -1;
    c->unavailable = 0;
}

int kg__chain_step(kg__chain *c, const kg__action actions[4], kg_result r,
                   int index)
{
    kg__action a;

    if ((unsigned)r > KG_RESULT_UNAVAILABLE) {
        /* A plugin bug: fail closed, as PAM does with an out-of-range code. */
        r = KG_RESULT_FAIL;
        a = KG__ACT_BAD;
    } else {
        a = actions[r];
    }
    if (r == KG_RESULT_UNAVAILABLE && a != KG__ACT_RESET) {
        /* Until a module sets the status, the first one that could not
         * answer is the one to name if the stack ends unavailable. */
        if (c->impression == 0 && !c->unavailable)
            c->decider = index;
        c->unavailable = 1;
    }
    switch (a) {
    case KG__ACT_RESET:
        kg__chain_init(c);
        return 1;
    case KG__ACT_OK:
    case KG__ACT_DONE:
        if (c->impression == 0 ||
            (c->impression > 0 && c->status == KG_RESULT_OK)) {
            if (r != KG_RESULT_IGNORE) {
                c->impression = 1;
                c->status = r;
                c->decider = index;
            }
        }
        if (c->impression >= 0 && a == KG__ACT_DONE)
            return 0;
        return 1;
    case KG__ACT_BAD:
    case KG__ACT_DIE:
        if (c->impression >= 0) {
            c->impression = -1;
            /* An "ok" mapped to bad still fails the stack. */
            c->status = r == KG_RESULT_OK || r == KG_RESULT_IGNORE
                            ? KG_RESULT_FAIL : r;
            c->decider = index;
        }
        return a == KG__ACT_DIE ? 0 : 1;
    case KG__ACT_IGNORE:
        return 1;
    }
    return 1;
}

kg_result kg__chain_result(const kg__chain *c)
{
    /* "Could not answer" stays that, whatever the actions made of it:
     * a backend being down must never read as an invalid key. */
    if (c->impression != 0 && c->status == KG_RESULT_UNAVAILABLE)
        return KG_RESULT_UNAVAILABLE;
    if (c->impression > 0 && c->status == KG_RESULT_OK)
        return KG_RESULT_OK;
    if (c->impression == 0 && c->unavailable)
        return KG_RESULT_UNAVAILABLE;
    return KG_RESULT_FAIL;
}
