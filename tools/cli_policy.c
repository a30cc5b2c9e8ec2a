/* cli_policy.c - `keygate policy check|explain` and `keygate plugins`. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_policy(struct cli *c, int argc, char **argv)
{
    const char *file;
    kg_policy *p;

    argc = cli_take_json(c, argc, argv);
    if (argc < 2 || argc > 3 || (strcmp(argv[1], "check") && strcmp(argv[1], "explain"))) {
        fprintf(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr,
                "usage: keygate policy check [FILE]     validate (file:line:column errors)\n"
                "       keygate policy explain [FILE]   each stage's compiled control table\n");
        return argc >= 2 && !strcmp(argv[1], "--help") ? EXIT_OK : EXIT_USAGE;
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

int cmd_plugins(struct cli *c, int argc, char **argv)
{
    struct scan s = { c, 0, 0 };
    argc = cli_take_json(c, argc, argv);
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: keygate plugins\n"
               "Lists every plugin on the search path ($KEYGATE_PLUGIN_PATH, then\n"
               "%s), its kind and ABI, and why one cannot be loaded.\n"
               "Exit 1 if any cannot be loaded.\n", kg_plugin_default_dir());
        return EXIT_OK;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: keygate plugins\n");
        return EXIT_USAGE;
    }
    if (!c->json)
        printf("search path: $KEYGATE_PLUGIN_PATH, then %s\n", kg_plugin_default_dir());
    kg_plugin_scan(c->ctx, NULL, 0, scan_cb, &s);
    if (c->json)
        cli_list_end(c);
    else
        printf("%d plugins, %d cannot be loaded\n", s.n, s.bad);
    return s.bad ? EXIT_DENIED : EXIT_OK;
}
