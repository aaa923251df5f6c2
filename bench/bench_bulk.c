/*
 * bench_bulk: the spawn rate, one spawn per request from 8 parallel
 * clients against one bulk request ("spawn_many", `outlast spawn KIND
 * --prefix P --count N`), on a single node and on a 3-node loopback
 * cluster (election 300 ms, heartbeat 50 ms; requests through a
 * follower, as an operator's CLI talks to its own node).
 *
 * Both kinds of request answer once the SPAWN commands have committed
 * (the single ones are sent with no_wait), so the figures compare like
 * with like: agents per second from the first request sent to the last
 * answer, and the log entries the spawns took (group commits on a single
 * node, raft entries on the cluster's leader; checkpoints of agents that
 * already run may share them).  Each repetition runs on a fresh node or
 * cluster, single first then bulk, with --agents idle benchload agents
 * (64-byte state, a step a minute) each; then one more bulk request
 * without no_wait, answered once every agent's first checkpoint has
 * committed ("bulk+steps/s": spawned and running, on the cluster placed
 * too).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/pack.h"
#include "bench_util.h"
#include "cb_outlast.h"
#include "cb_proc.h"
#include "outlast/agent_util.h"

#define MAX_REPS 15

struct figures {
    double rate;      /* agents/s */
    uint64_t entries; /* batches or raft entries */
};

/* Log entries so far: the single node's batches, the leader's commit
 * index. */
static uint64_t entries(struct cb_ol *c, int leader)
{
    struct cb_ol_status st;
    struct cb_ol_view v;

    if (leader < 0)
        return cb_ol_status(c, 0, 0, &st) == 0 ? st.batches : 0;
    return cb_ol_view(c, leader, &v) == 0 ? v.commit_index : 0;
}

/* One spawn_many request for PREFIX0 .. PREFIX<n-1>. */
static int bulk(struct cb_ol *c, int via, const char *prefix, uint32_t n,
                const void *cfg, size_t cfg_len, int no_wait)
{
    char err[OL_ERRMSG_SIZE], name[64];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rv;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    ol_mp_pack_str(&pk, "op");
    ol_mp_pack_str(&pk, "spawn_many");
    ol_mp_pack_str(&pk, "no_wait");
    if (no_wait)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    ol_mp_pack_str(&pk, "kind");
    ol_mp_pack_str(&pk, "benchload");
    ol_mp_pack_str(&pk, "config");
    msgpack_sbuffer_write(&sb, cfg, cfg_len);
    ol_mp_pack_str(&pk, "names");
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s%" PRIu32, prefix, i);
        ol_mp_pack_str(&pk, name);
    }
    rv = cb_ol_request(c, via, sb.data, sb.size, err);
    if (rv != 0)
        fprintf(stderr, "bench: spawn_many: %s\n", err);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

/* Time `n` spawns one way (0: 8 clients, 1: bulk, 2: bulk answered
 * after every first checkpoint) and count the entries. */
static int measure(struct cb_ol *c, int via, int leader, int how,
                   uint32_t n, struct figures *out)
{
    size_t len;
    void *cfg = cb_benchload_config(64, 60000, 0, &len);
    uint64_t e0 = entries(c, leader), t0 = cb_now_ns(), dt;
    int rv;

    if (cfg == NULL)
        return -1;
    rv = how ? bulk(c, via, how == 1 ? "bulk-" : "wait-", n, cfg, len,
                    how == 1)
             : cb_ol_spawn(c, via, "one-", n, 8, cfg, len);
    dt = cb_now_ns() - t0;
    free(cfg);
    out->rate = (double)n / ((double)dt / 1e9);
    out->entries = entries(c, leader) - e0;
    return rv;
}

/* A single node: cb_ol's node 0 with a config without [cluster]. */
static int start_single(struct cb_ol *c, struct cb_ol_opts *o)
{
    FILE *f;

    o->n = 1;
    if (cb_ol_init(c, o) != 0)
        return -1;
    f = fopen(c->nodes[0].conf, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "[node]\nid = 1\ndata_dir = %s\nplugin_dir = %s\n"
               "log_level = %s\n",
            c->nodes[0].dir, o->plugin_dir, o->log_level);
    if (fclose(f) != 0)
        return -1;
    return cb_ol_start_node(c, 0, 15000);
}

/* One repetition: fresh node(s), n single spawns, one bulk of n, then
 * one bulk of n that waits for first checkpoints. */
static int rep(int cluster, uint32_t n, struct figures out[3])
{
    struct cb_ol_opts o;
    struct cb_ol c;
    int leader = -1, via = 0, rv;

    cb_ol_defaults(&o);
    o.log_level = "warn";
    if (cluster)
        rv = cb_ol_init(&c, &o) != 0 || cb_ol_start(&c, 15000) != 0 ||
             (leader = cb_ol_wait_leader(&c, 15000)) < 0;
    else
        rv = start_single(&c, &o) != 0;
    if (leader >= 0)
        via = (leader + 1) % o.n;
    if (rv == 0)
        rv = measure(&c, via, leader, 0, n, &out[0]);
    if (rv == 0)
        rv = measure(&c, via, leader, 1, n, &out[1]);
    if (rv == 0)
        rv = measure(&c, via, leader, 2, n, &out[2]);
    cb_ol_destroy(&c);
    return rv;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void print_row(const char *what, struct figures f[][3], int reps)
{
    double single[MAX_REPS], many[MAX_REPS], waited[MAX_REPS];
    uint64_t e1 = 0, e2 = 0;

    for (int i = 0; i < reps; i++) {
        single[i] = f[i][0].rate;
        many[i] = f[i][1].rate;
        waited[i] = f[i][2].rate;
        e1 = f[i][0].entries > e1 ? f[i][0].entries : e1;
        e2 = f[i][1].entries > e2 ? f[i][1].entries : e2;
    }
    qsort(single, (size_t)reps, sizeof *single, cmp_d);
    qsort(many, (size_t)reps, sizeof *many, cmp_d);
    qsort(waited, (size_t)reps, sizeof *waited, cmp_d);
    printf("%-12s %12.0f %12.0f %8.1fx %12" PRIu64 " %12" PRIu64
           " %14.0f\n",
           what, single[reps / 2], many[reps / 2],
           many[reps / 2] / single[reps / 2], e1, e2, waited[reps / 2]);
}

static int parse_args(int argc, char **argv, uint32_t *n, int *reps)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--agents") == 0 && i + 1 < argc)
            *n = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            *reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_bulk [--agents N] [--reps R]\n");
            return -1;
        }
    }
    if (*n == 0 || *n > 100000 || *reps < 1 || *reps > MAX_REPS) {
        fprintf(stderr, "bench_bulk: --agents 1-100000, --reps 1-%d\n",
                MAX_REPS);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct figures f[2][MAX_REPS][3];
    uint32_t n = 2000;
    int reps = 3;

    if (parse_args(argc, argv, &n, &reps) != 0)
        return 2;
    cb_cleanup_install();
    for (int cl = 0; cl < 2; cl++)
        for (int r = 0; r < reps; r++)
            if (rep(cl, n, f[cl][r]) != 0) {
                fprintf(stderr, "bench_bulk: %s repetition %d failed\n",
                        cl ? "cluster" : "single node", r + 1);
                return 1;
            }
    printf("spawn of %" PRIu32 " agents: median of %d repetitions; entries: "
           "the most any repetition used\n",
           n, reps);
    printf("%-12s %12s %12s %9s %12s %12s %14s\n", "", "8 clients/s",
           "bulk/s", "ratio", "entries(8c)", "entries(bulk)",
           "bulk+steps/s");
    print_row("single node", f[0], reps);
    print_row("3 nodes", f[1], reps);
    return 0;
}
