/* cli_policy.c - `keygate policy check|explain` and `keygate plugins`. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cmd_policy(struct cli *c, int argc, char **argv)
{
    static const char usage[] =
        "usage: keygate policy check [FILE]     validate (file:line:column errors)\n"
        "       keygate policy explain [FILE]   each stage's compiled control table\n";
    const char *file;
    kg_policy *p;

    /* `policy check --help` too: not a policy named "--help". */
    if (cli_wants_help(argc, argv)) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    argc = cli_take_json(c, argc, argv);
    if (argc < 2 || argc > 3 || (strcmp(argv[1], "check") && strcmp(argv[1], "explain"))) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    file = argc == 3 ? argv[2] : cli_config_path(c);
    p = cli_load_policy(c, file);
    if (p == NULL)
        return EXIT_USAGE;
    if (!strcmp(argv[1], "check")) {
        if (c->json) {
            /* The path may hold quotes or backslashes: escape it. */
            printf("{\"policy\":");
            cli_json_str(stdout, file);
            printf(",\"valid\":true,\"plans\":%zu}\n", kg_policy_plan_count(p));
        } else {
            printf("%s: ok (%zu plans)\n", file, kg_policy_plan_count(p));
        }
    } else {
        char *s = kg_policy_explain(p);
        fputs(s ? s : "out of memory\n", stdout);
        free(s);
    }
    kg_policy_free(p);
    return EXIT_OK;
}

struct scan {
    struct cli *c;
    int bad;
    int n;
};

static void scan_cb(const kg_plugin_info *i, void *ud)
{
    struct scan *s = ud;
    if (i->error)
        s->bad++;
    s->n++;
    if (s->c->json) {
        cli_list_item(s->c);
        printf("{\"name\":");
        cli_json_str(stdout, i->name);
        printf(",\"path\":");
        cli_json_str(stdout, i->path);
        printf(",\"kind\":");
        cli_json_str(stdout, i->kind);
        printf(",\"abi\":\"%u.%u\",\"description\":", i->abi_major, i->abi_minor);
        cli_json_str(stdout, i->description);
        printf(",\"error\":");
        cli_json_str(stdout, i->error);
        printf("}");
    } else if (i->error) {
        printf("%-16s %-10s %-5s cannot load: %s\n", i->name, "-", "-", i->error);
    } else {
        printf("%-16s %-10s %u.%-3u %s\n    %s\n", i->name, i->kind, i->abi_major,
               i->abi_minor, i->description ? i->description : "", i->path);
    }
}

/*
 * The policy's plugin_path, searched first, as loading it would: read
 * without loading the policy, so that this works when a plugin it names
 * does not load.  A policy given (--config, KEYGATE_CONFIG) must be
 * readable; the installed default is used only if it is there.
 */
static int policy_dirs(struct cli *c, const char **file_r, char ***dirs_r,
                       size_t *n_r)
{
    const char *file = cli_config_path(c);
    const char *env = getenv("KEYGATE_CONFIG");
    int given = c->config != NULL || (env != NULL && *env != '\0');
    char buf[2048];
    kg_diag d;
    kg_error e;

    *file_r = NULL;
    if (!given && access(file, F_OK) != 0)
        return 0;
    e = kg_policy_read_plugin_path(file, dirs_r, n_r, &d);
    if (e != KG_OK) {
        fprintf(stderr, "keygate: %s\n", kg_diag_format(&d, buf, sizeof(buf)));
        return -1;
    }
    *file_r = file;
    return 0;
}

static void print_search_path(const char *file, char *const *dirs, size_t n)
{
    const char *env = getenv("KEYGATE_PLUGIN_PATH");
    size_t i;

    printf("search path:");
    for (i = 0; i < n; i++)
        printf(" %s", dirs[i]);
    if (n > 0)
        printf(" (plugin_path of %s), then", file);
    if (env != NULL && *env != '\0')
        printf(" %s (KEYGATE_PLUGIN_PATH), then", env);
    printf(" %s\n", kg_plugin_default_dir());
}

int cmd_plugins(struct cli *c, int argc, char **argv)
{
    struct scan s = { c, 0, 0 };
    const char *file = NULL;
    char **dirs = NULL;
    size_t n = 0;

    argc = cli_take_json(c, argc, argv);
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: keygate plugins\n"
               "Lists every plugin on the search path (the policy's plugin_path,\n"
               "then $KEYGATE_PLUGIN_PATH, then %s), its kind\n"
               "and ABI, and why one cannot be loaded.  The policy is the one\n"
               "--config or KEYGATE_CONFIG names, else the installed one if there;\n"
               "only its plugin_path is read.  Exit 1 if any cannot be loaded.\n",
               kg_plugin_default_dir());
        return EXIT_OK;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: keygate plugins\n");
        return EXIT_USAGE;
    }
    if (policy_dirs(c, &file, &dirs, &n) != 0)
        return EXIT_USAGE;
    if (!c->json)
        print_search_path(file, dirs, n);
    kg_plugin_scan(c->ctx, dirs, n, scan_cb, &s);
    if (c->json)
        cli_list_end(c);
    else
        printf("%d plugins, %d cannot be loaded\n", s.n, s.bad);
    free(dirs);
    return s.bad ? EXIT_DENIED : EXIT_OK;
}
