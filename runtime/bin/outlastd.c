/*
 * outlastd: the outlast daemon.  With no arguments it runs the embedded
 * single-node default (data in ./outlast-data, the example agents); with
 * --config it reads an INI file.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "ol_config.h"
#include "runtime/config.h"
#include "base/err.h"
#include "base/log.h"
#include "runtime/node.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: outlastd [--config FILE] [--data-dir DIR] "
            "[--log-level LEVEL]\n"
            "\n"
            "Runs an outlast node.  Without --config: a single node with its\n"
            "data in ./outlast-data and the example agents (counter,\n"
            "pricewatch, ledger).\n"
            "\n"
            "  --config FILE      INI configuration (see "
            "examples/single-node.ini)\n"
            "  --data-dir DIR     override [node] data_dir\n"
            "  --log-level LEVEL  error, warn, info, debug or trace\n"
            "  --rejoin           cluster: keep this node's database and raft\n"
            "                     directory aside and start empty, to be\n"
            "                     added to the cluster again as a new member\n"
            "  --version          print the version\n"
            "  --help             this text\n");
}

/*
 * --rejoin: the node's database, its node.state and its raft directory are
 * renamed with a ".before-rejoin-TIME" suffix (kept, never deleted), so
 * that it starts as a node that holds nothing and catches up from the
 * cluster, by snapshot, once the leader adds it.  Its key stays.
 */
static int set_aside(const char *data_dir, char *err)
{
    static const char *const names[] = {"outlast.db", "outlast.db-wal",
                                        "outlast.db-shm", "node.state",
                                        "raft"};
    char from[PATH_MAX], to[PATH_MAX + 64];
    long now = (long)time(NULL);

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(from, sizeof from, "%s/%s", data_dir, names[i]);
        snprintf(to, sizeof to, "%s.before-rejoin-%ld", from, now);
        if (rename(from, to) == 0) {
            fprintf(stderr, "outlastd: --rejoin: kept '%s' as '%s'\n", from,
                    to);
        } else if (errno != ENOENT) {
            snprintf(err, OL_ERRMSG_SIZE, "cannot set '%s' aside: %s", from,
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct ol__config cfg;
    struct ol__node node;
    const char *config = NULL, *data_dir = NULL, *level = NULL;
    char err[OL_ERRMSG_SIZE];
    uv_loop_t loop;
    int rv, code, rejoin = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--rejoin") == 0) {
            rejoin = 1;
            continue;
        }
        if (strcmp(a, "--version") == 0) {
            printf("outlastd %s\n", OL_VERSION);
            return 0;
        }
        if ((strcmp(a, "--config") == 0 || strcmp(a, "--data-dir") == 0 ||
             strcmp(a, "--log-level") == 0) &&
            i + 1 >= argc) {
            fprintf(stderr, "outlastd: %s needs a value\n", a);
            return 2;
        }
        if (strcmp(a, "--config") == 0)
            config = argv[++i];
        else if (strcmp(a, "--data-dir") == 0)
            data_dir = argv[++i];
        else if (strcmp(a, "--log-level") == 0)
            level = argv[++i];
        else {
            fprintf(stderr, "outlastd: unknown argument '%s' (try --help)\n",
                    a);
            return 2;
        }
    }

    ol__config_defaults(&cfg);
    if (config && ol__config_load(&cfg, config, err) != 0) {
        fprintf(stderr, "outlastd: %s\n", err);
        ol__config_free(&cfg);
        return 2;
    }
    if (data_dir)
        snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s", data_dir);
    if (level) {
        int l = ol_log_level_parse(level);

        if (l < 0) {
            fprintf(stderr,
                    "outlastd: --log-level must be error, warn, info, debug "
                    "or trace, not '%s'\n",
                    level);
            return 2;
        }
        cfg.log_level = l;
    }

    if (rejoin) {
        if (!cfg.cluster) {
            fprintf(stderr, "outlastd: --rejoin is for a cluster node (the "
                            "config has no [cluster] section)\n");
            ol__config_free(&cfg);
            return 2;
        }
        if (set_aside(cfg.data_dir, err) != 0) {
            fprintf(stderr, "outlastd: --rejoin: %s\n", err);
            ol__config_free(&cfg);
            return 1;
        }
        /* A new member joins the cluster that adds it: it never
         * bootstraps one of its own. */
        cfg.bootstrap = 0;
    }

    uv_loop_init(&loop);
    rv = ol__node_init(&node, &loop, &cfg);
    if (rv != 0) {
        /* Nothing was started: report, release what was opened, exit. */
        ol_log(OL_LOG_ERROR, "cannot start: %s",
               node.errmsg[0] ? node.errmsg : ol_strerror(rv));
        ol__node_abort(&node);
        uv_run(&loop, UV_RUN_DEFAULT);
        ol__node_free(&node);
        uv_loop_close(&loop);
        ol__config_free(&cfg);
        return 1;
    }
    rv = ol__node_start(&node);
    if (rv != 0) {
        ol_log(OL_LOG_ERROR, "cannot start: %s",
               node.errmsg[0] ? node.errmsg : ol_strerror(rv));
        ol__node_shutdown(&node);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    code = rv != 0 ? 1 : node.exit_code;
    ol__node_free(&node);
    if (uv_loop_close(&loop) != 0)
        ol_log(OL_LOG_DEBUG, "loop closed with handles open");
    ol__config_free(&cfg);
    return code;
}
