/*
 * keygated_static.c - the dashboard's static files on the admin
 * listener: a path into a file under one folder, its content type, and
 * the security headers (docs/dashboard.md, "How it is served").
 *
 * The path is checked twice.  First by its text: only [A-Za-z0-9._/-],
 * no component that starts with a dot (so no "..", no ".", no hidden
 * file) and no empty one; libmicrohttpd has already decoded %2e and
 * friends, so an encoded ".." is refused here too.  Then by where it
 * leads: realpath() of the file must lie inside realpath() of the root,
 * so that a symbolic link under the folder cannot serve a file outside
 * it.  The file is then opened without following a link (the resolved
 * path has none) and must be a regular file.  The folder is the
 * installer's (root-owned, $(datadir)/keygate/dashboard): someone who
 * can swap a file between the check and the open can change the
 * dashboard anyway.
 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "keygated_static.h"

/*
 * Same origin only.  'self' for scripts means module files from this
 * listener: no inline <script>, no eval (no 'unsafe-eval'), and no
 * inline style either (the pages style by class).  frame-ancestors and
 * X-Frame-Options both refuse framing (older browsers read only the
 * latter).  form-action: the sign-in form is handled by script and
 * never posts.
 */
static const char CSP[] =
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; font-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

int kgd_static_headers(struct MHD_Response *r)
{
    if (MHD_add_response_header(r, "Content-Security-Policy", CSP) != MHD_YES ||
        MHD_add_response_header(r, "X-Frame-Options", "DENY") != MHD_YES ||
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer") != MHD_YES ||
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") != MHD_YES)
        return -1;
    return 0;
}

const char *kgd_static_type(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(name, '.');
    size_t i;

    if (dot != NULL && strchr(dot, '/') == NULL)
        for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* 1 if the path (after the leading '/') is one we may look up. */
static int path_ok(const char *rel)
{
    const char *p = rel;

    if (strspn(rel, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789._/-") != strlen(rel))
        return 0;
    for (;;) {
        /* p is the start of a component. */
        if (*p == '/' || *p == '.')
            return 0;   /* empty ("//"), ".", "..", or hidden */
        p = strchr(p, '/');
        if (p == NULL)
            return 1;
        p++;
        if (*p == '\0')
            return 1;   /* trailing '/': the caller adds index.html */
    }
}

static int queue(struct MHD_Connection *c, unsigned status,
                 struct MHD_Response *r, const char *type)
{
    int ret = MHD_NO;

    if (kgd_static_headers(r) == 0 &&
        MHD_add_response_header(r, "Content-Type", type) == MHD_YES &&
        /* Revalidate each time: an upgrade must not leave a browser
         * running an old module beside a new one. */
        MHD_add_response_header(r, "Cache-Control", "no-cache") == MHD_YES)
        ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static int not_found(struct MHD_Connection *c)
{
    static const char body[] = "not found\n";
    struct MHD_Response *r;

    r = MHD_create_response_from_buffer(sizeof(body) - 1, (void *)body,
                                        MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    return queue(c, MHD_HTTP_NOT_FOUND, r, "text/plain; charset=utf-8");
}

/* 1 if `path` is `dir` itself or lies under it (both resolved). */
static int inside(const char *dir, const char *path)
{
    size_t n = strlen(dir);

    if (strcmp(dir, "/") == 0)
        return 1;
    return strncmp(path, dir, n) == 0 && path[n] == '/';
}

int kgd_static_answer(struct MHD_Connection *c, const char *root,
                      const char *url)
{
    char want[PATH_MAX], rroot[PATH_MAX], rfile[PATH_MAX];
    const char *rel;
    struct MHD_Response *r;
    struct stat st;
    size_t n;
    int fd = -1, len;

    if (root == NULL || url == NULL || url[0] != '/')
        return not_found(c);
    rel = url + 1;
    if (*rel != '\0' && !path_ok(rel))
        return not_found(c);
    n = strlen(rel);
    len = snprintf(want, sizeof(want), "%s/%s%s", root, rel,
                   n == 0 || rel[n - 1] == '/' ? "index.html" : "");
    if (len < 0 || (size_t)len >= sizeof(want))
        return not_found(c);
    if (realpath(root, rroot) == NULL || realpath(want, rfile) == NULL ||
        !inside(rroot, rfile))
        return not_found(c);
    fd = open(rfile, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return not_found(c);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return not_found(c);
    }
    /* libmicrohttpd owns fd from here (closed with the response). */
    r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (r == NULL) {
        close(fd);
        return MHD_NO;
    }
    return queue(c, MHD_HTTP_OK, r, kgd_static_type(rfile));
}
