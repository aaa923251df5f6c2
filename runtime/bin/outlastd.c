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

struct args {
    const char *config, *data_dir, *level;
    int rejoin;
};

/* Returns -1 to go on, or the status to exit with. */
static int parse_args(int argc, char **argv, struct args *g)
{
    memset(g, 0, sizeof *g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--rejoin") == 0) {
            g->rejoin = 1;
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
            g->config = argv[++i];
        else if (strcmp(a, "--data-dir") == 0)
            g->data_dir = argv[++i];
        else if (strcmp(a, "--log-level") == 0)
            g->level = argv[++i];
        else {
            fprintf(stderr, "outlastd: unknown argument '%s' (try --help)\n",
                    a);
            return 2;
        }
    }
    return -1;
}

/* The configuration the arguments ask for (freed by the caller either
 * way).  Returns -1 to go on, or the status to exit with. */
static int configure(struct ol__config *cfg, const struct args *g)
{
    char err[OL_ERRMSG_SIZE];

    ol__config_defaults(cfg);
    if (g->config && ol__config_load(cfg, g->config, err) != 0) {
        fprintf(stderr, "outlastd: %s\n", err);
        return 2;
    }
    if (g->data_dir)
        snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", g->data_dir);
    if (g->level) {
        int l = ol_log_level_parse(g->level);

        if (l < 0) {
            fprintf(stderr,
                    "outlastd: --log-level must be error, warn, info, debug "
                    "or trace, not '%s'\n",
                    g->level);
            return 2;
        }
        cfg->log_level = l;
    }
    if (!g->rejoin)
        return -1;
    if (!cfg->cluster) {
        fprintf(stderr, "outlastd: --rejoin is for a cluster node (the "
                        "config has no [cluster] section)\n");
        return 2;
    }
    if (set_aside(cfg->data_dir, err) != 0) {
        fprintf(stderr, "outlastd: --rejoin: %s\n", err);
        return 1;
    }
    /* A new member joins the cluster that adds it: it never bootstraps
     * one of its own. */
    cfg->bootstrap = 0;
    return -1;
}

/* Run a node until it stops; returns its exit status. */
static int run(struct ol__config *cfg)
{
    struct ol__node node;
    uv_loop_t loop;
    int rv, code;

    uv_loop_init(&loop);
    rv = ol__node_init(&node, &loop, cfg);
    if (rv != 0) {
        /* Nothing was started: report, release what was opened, exit. */
        ol_log(OL_LOG_ERROR, "cannot start: %s",
               node.errmsg[0] ? node.errmsg : ol_strerror(rv));
        ol__node_abort(&node);
        uv_run(&loop, UV_RUN_DEFAULT);
        ol__node_free(&node);
        uv_loop_close(&loop);
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
    return code;
}

int main(int argc, char **argv)
{
    struct ol__config cfg;
    struct args g;
    int code;

    /* libuv's thread pool (4 threads by default) serves WAL checkpoints,
     * raft snapshots and their writes, group commits and the batches that
     * load heads for agents being resumed (two at a time): more threads,
     * so that none of them queues behind another on a busy node.  The
     * operator's own setting wins. */
    setenv("UV_THREADPOOL_SIZE", "8", 0);
    if ((code = parse_args(argc, argv, &g)) >= 0)
        return code;
    if ((code = configure(&cfg, &g)) < 0)
        code = run(&cfg);
    ol__config_free(&cfg);
    return code;
}
