/*
 * fuzz.h - what the libFuzzer targets of fuzz/ share: a private
 * temporary folder (the only place a target may write), the plugin
 * path, and the filter that keeps a fuzzed policy inside that folder
 * and off the network.  See fuzz/README.md.
 */
#ifndef KEYGATE_FUZZ_H
#define KEYGATE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry points (the targets define them). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Once per process: create the private folder (under $TMPDIR, else
 * /dev/shm or /tmp; removed at exit, or by the next target to start if
 * this one crashed), clear the environment but
 * for KEYGATE_STATE_DIR (the folder, with a trailing '/') and KEYGATE_PLUGIN_PATH (the
 * build's plugins unless set).  Exits the process on failure: a target
 * that cannot confine itself must not run.
 */
void fz_init(void);
/*
 * Make the private folder the working directory (where a policy's
 * relative paths land), and go back to where libFuzzer runs (its corpus
 * and dictionary paths may be relative).
 */
void fz_enter(void);
void fz_leave(void);
/* The private folder (absolute). */
const char *fz_dir(void);
/* Remove everything fz_dir() holds (after each input). */
void fz_dir_clean(void);
/* A NUL-terminated, malloc()ed copy of data (exits on no memory). */
char *fz_strndup(const uint8_t *data, size_t size);

/*
 * Whether a fuzzed policy stays confined: every scalar of every YAML
 * document (as libyaml decodes it) holds no '/' other than in
 * "${KEYGATE_STATE_DIR}/" (scope's routes excepted), names
 * KEYGATE_STATE_DIR only as its start ("${KEYGATE_STATE_DIR}name", not
 * followed by ".."), names no backend that would reach the network
 * (ldap, postgresql, redis) and does not expand ${KEYGATE_PLUGIN_PATH}.  Paths in the policy are then
 * relative (to the working directory, fz_dir()) or inside fz_dir().
 * A document libyaml cannot parse is confined: keygate refuses it before
 * it builds anything.
 */
int fz_policy_confined(const char *yaml, size_t len);

#endif
