/*
 * keygate/modutil.h - small helpers for plugins (in the spirit of PAM's
 * pam_modutil.h): what each plugin used to carry its own copy of.
 * docs/plugins.md "Helpers".  Every function here is thread-safe and
 * never aborts.
 */
#ifndef KEYGATE_MODUTIL_H
#define KEYGATE_MODUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <keygate/keygate.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma GCC visibility push(default)

/*
 * A duration in milliseconds: digits and a unit, "250ms", "2s", "1m",
 * "1h", or digits alone, which count `default_unit_ms` each (the caller
 * says what a bare number means: 1000 for seconds, as the ldap plugin's
 * timeouts, 1 for milliseconds, as the sql plugin's).  No sign, space
 * or fraction.  KG_OK and *ms_r set (0 is a duration: the caller checks
 * its own range); KG_ERR_INVALID, *ms_r untouched, for anything else,
 * an overflow of int64_t included.
 */
kg_error kg_modutil_duration_ms(const char *s, int64_t default_unit_ms,
                                int64_t *ms_r);

/* vasprintf into a malloc()ed string; NULL if out of memory. */
char *kg_modutil_asprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* `n` bytes as lower-case hex into `out` (2n + 1 bytes with the NUL). */
void kg_modutil_hex(const void *in, size_t n, char *out);

/*
 * `len` bytes of `s` as a JSON string, quotes included, malloc()ed
 * (NULL if out of memory).  '"', '\\', \n, \r and \t are escaped, other
 * control bytes and DEL as \u00XX.  Well-formed UTF-8 is copied; every
 * byte of anything else (a stray continuation byte, a truncated
 * sequence, an overlong form such as C0 AF for '/', a surrogate, a code
 * point above U+10FFFF) becomes \ufffd: RFC 3629 forbids those forms,
 * and a reader that decodes an overlong '/' or '"' leniently would see a
 * character the escaping never saw.
 */
char *kg_modutil_json_string(const char *s, size_t len);
/* The length of the well-formed UTF-8 sequence at `s` (`n` bytes left):
 * 1 for ASCII, 2 to 4 for the rest; 0 if there is none there (the
 * forms kg_modutil_json_string() replaces, or n == 0).  For an escaper
 * into a fixed buffer (keygated's access log). */
size_t kg_modutil_utf8_len(const void *s, size_t n);

/* Microseconds on CLOCK_MONOTONIC: for timeouts and intervals, never
 * for wall time (kg_call_now, kg_context_now). */
int64_t kg_modutil_mono_us(void);

/* Wipe a NUL-terminated secret (kg_wipe) and free it; NULL: nothing. */
void kg_modutil_wipe_free(char *secret);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
