/*
 * keygated_static.h - the dashboard's files on the admin listener
 * (keygated_static.c; docs/dashboard.md).  A header of its own rather
 * than a section of keygated.h, so that the admin listener (which
 * calls it) and this file are written apart.
 */
#ifndef KEYGATE_KEYGATED_STATIC_H
#define KEYGATE_KEYGATED_STATIC_H

#include <microhttpd.h>

/*
 * Answer a GET or HEAD of `url` (libmicrohttpd's decoded path, no query)
 * with the file under the folder `root`: "/" and any path ending in "/"
 * is that folder's index.html.  Only regular files inside root are
 * served: a path with a "." or ".." component, a hidden name, a
 * character outside [A-Za-z0-9._/-], or one whose resolved location
 * (symbolic links followed) is outside root gets 404, as does a missing
 * file or a folder; an unreadable root gets 404 too (and says nothing
 * about why to the client).  Every answer, 404 included, carries the
 * security headers of kgd_static_headers().  The caller routes only GET
 * and HEAD here (libmicrohttpd drops the body of a HEAD).  Returns what
 * MHD_queue_response() returned (MHD_NO: drop the connection).
 */
int kgd_static_answer(struct MHD_Connection *c, const char *root,
                      const char *url);

/*
 * Add the dashboard's security headers to a response: a
 * Content-Security-Policy that allows scripts, styles, images and
 * fetches from the same origin only (no inline script or style, no
 * eval, no framing), X-Frame-Options: DENY, Referrer-Policy:
 * no-referrer, X-Content-Type-Options: nosniff.  The admin API's
 * answers may carry them too.  Returns 0, or -1 if one could not be
 * added (out of memory).
 */
int kgd_static_headers(struct MHD_Response *r);

/* The Content-Type for a file name, by its extension (a JavaScript
 * module needs a JavaScript type: with nosniff the browser refuses
 * anything else).  Unknown: application/octet-stream. */
const char *kgd_static_type(const char *name);

#endif
