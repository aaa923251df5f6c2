/*
 * bench_lifecycle: what the agent lifecycle commands cost an operator, as
 * the time from sending a control request to its answer, beside a raw
 * SQLite commit (one fsync'd row, the anchor) in the same run.
 *
 * On a cluster of --nodes outlastd processes on loopback (3 by default;
 * election 300 ms, heartbeat 50 ms), through a follower's control socket
 * (the usual case: an operator's CLI talks to its own node), --reps times
 * each, one request at a time:
 *
 *   spawn --no-wait   answered when the SPAWN command has committed
 *   spawn             answered after the agent's first checkpoint (the
 *                     default: a refused config fails it)
 *   config            a CONFIG command committed
 *   send              a SEND committed (the oldest replicated command, as
 *                     a reference inside the product)
 *   rm                a final STOP, its final checkpoint, then RM
 *
 * Reported: p50 and p99 (nearest rank) per command in ms, and each p50 as
 * a multiple of the anchor's p50.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anchor.h"
#include "bench_util.h"
#include "cb_outlast.h"
#include "cb_proc.h"
#include "base/err.h"
#include "base/hist.h"
#include "base/pack.h"

/* Every request's time, for exact nearest-rank quantiles. */
struct series {
    uint64_t *us;
    uint32_t n, cap;
};

static void add(struct series *s, uint64_t us)
{
    if (s->n < s->cap)
        s->us[s->n++] = us;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least q of the samples at or
 * below it. */
static uint64_t rank(struct series *s, double q)
{
    uint32_t i;

    if (s->n == 0)
        return 0;
    qsort(s->us, s->n, sizeof *s->us, cmp_u64);
    i = (uint32_t)(q * s->n + 0.999999);
    return s->us[i ? i - 1 : 0];
}

enum { OP_SPAWN_NW, OP_SPAWN, OP_CONFIG, OP_SEND, OP_RM, N_OPS };

static const char *const op_names[N_OPS] = {
    "spawn --no-wait", "spawn", "config", "send", "rm",
};

/* The request for `op` on agent `name`. */
static void build(msgpack_sbuffer *sb, int op, const char *name)
{
    msgpack_packer pk;

    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    switch (op) {
    case OP_SPAWN_NW:
    case OP_SPAWN:
        msgpack_pack_map(&pk, op == OP_SPAWN_NW ? 5 : 4);
        ol__pk_str(&pk, "op");
        ol__pk_str(&pk, "spawn");
        ol__pk_str(&pk, "kind");
        ol__pk_str(&pk, "benchload");
        ol__pk_str(&pk, "config");
        msgpack_pack_map(&pk, 1); /* {"idle": true}: one checkpoint */
        ol__pk_str(&pk, "idle");
        msgpack_pack_true(&pk);
        if (op == OP_SPAWN_NW) {
            ol__pk_str(&pk, "no_wait");
            msgpack_pack_true(&pk);
        }
        break;
    case OP_CONFIG:
        msgpack_pack_map(&pk, 3);
        ol__pk_str(&pk, "op");
        ol__pk_str(&pk, "config");
        ol__pk_str(&pk, "config");
        msgpack_pack_map(&pk, 2);
        ol__pk_str(&pk, "idle");
        msgpack_pack_true(&pk);
        ol__pk_str(&pk, "size");
        msgpack_pack_uint32(&pk, 512);
        break;
    case OP_SEND:
        msgpack_pack_map(&pk, 3);
        ol__pk_str(&pk, "op");
        ol__pk_str(&pk, "send");
        ol__pk_str(&pk, "message");
        msgpack_pack_uint32(&pk, 1);
        break;
    default:
        msgpack_pack_map(&pk, 2);
        ol__pk_str(&pk, "op");
        ol__pk_str(&pk, "rm");
        break;
    }
    ol__pk_str(&pk, "name");
    ol__pk_str(&pk, name);
}

static int timed(struct cb_ol *c, int via, int op, const char *name,
                 struct series *h)
{
    char err[OL_ERRMSG_SIZE];
    msgpack_sbuffer sb;
    uint64_t t0;
    int rv;

    build(&sb, op, name);
    t0 = ol__now_us();
    rv = cb_ol_request(c, via, sb.data, sb.size, err);
    if (rv == 0)
        add(h, ol__now_us() - t0);
    else
        fprintf(stderr, "bench: %s '%s': %s\n", op_names[op], name, err);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

static int run(struct cb_ol *c, int via, const char *tag, uint32_t reps,
               struct series *h[N_OPS])
{
    char name[32];

    for (uint32_t i = 0; i < reps; i++) {
        /* Each round's second agent goes through config, send and rm. */
        snprintf(name, sizeof name, "%snw%05u", tag, i);
        if (timed(c, via, OP_SPAWN_NW, name, h[OP_SPAWN_NW]) != 0)
            return -1;
        snprintf(name, sizeof name, "%slc%05u", tag, i);
        if (timed(c, via, OP_SPAWN, name, h[OP_SPAWN]) != 0 ||
            timed(c, via, OP_CONFIG, name, h[OP_CONFIG]) != 0 ||
            timed(c, via, OP_SEND, name, h[OP_SEND]) != 0 ||
            timed(c, via, OP_RM, name, h[OP_RM]) != 0)
            return -1;
    }
    return 0;
}

/* The anchor: one row per fsync'd transaction in raw SQLite, for as many
 * transactions as the benchmark sends requests. */
static int raw(const char *dir, uint32_t txns, struct series *s)
{
    struct anchor a;
    struct anchor_run r;
    char path[4200];
    int rv = 0;

    snprintf(path, sizeof path, "%s/anchor.db", dir);
    rv = anchor_open(&a, path, 1, 1024);
    for (uint32_t i = 0; rv == 0 && i < txns; i++) {
        uint64_t t0 = ol__now_us();

        rv = anchor_insert(&a, 1, 0, 1, NULL, &r);
        add(s, ol__now_us() - t0);
    }
    if (rv != 0)
        fprintf(stderr, "bench: anchor: %s\n", a.errmsg);
    anchor_close(&a);
    return rv;
}

static double ms(uint64_t us)
{
    return (double)us / 1000.0;
}

static struct series *series_new(uint32_t cap)
{
    struct series *s = calloc(1, sizeof *s);

    if (s && (s->us = calloc(cap, sizeof *s->us)) == NULL) {
        free(s);
        return NULL;
    }
    if (s)
        s->cap = cap;
    return s;
}

static void print_row(const char *what, struct series *s, uint64_t anchor)
{
    uint64_t p50 = rank(s, 0.50);

    printf("%-28s %9.2f %9.2f %11.1f\n", what, ms(p50), ms(rank(s, 0.99)),
           (double)p50 / (double)(anchor ? anchor : 1));
}

int main(int argc, char **argv)
{
    struct cb_ol_opts o;
    struct cb_ol c;
    struct series *h[2][N_OPS], *anchor;
    uint32_t reps = 50;
    int nodes = 3, leader, rv = 0;
    uint64_t a50;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc) {
            nodes = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench_lifecycle [--reps N] "
                            "[--nodes 1..3]\n");
            return 2;
        }
    }
    if (reps == 0 || reps > 100000 || nodes < 1 || nodes > CB_OL_MAX) {
        fprintf(stderr, "bench_lifecycle: --reps 1..100000, --nodes "
                        "1..%d\n",
                CB_OL_MAX);
        return 2;
    }
    anchor = series_new(reps);
    for (int v = 0; v < 2; v++)
        for (int op = 0; op < N_OPS; op++)
            if ((h[v][op] = series_new(reps)) == NULL)
                return 1;
    if (anchor == NULL)
        return 1;
    cb_cleanup_install();
    cb_ol_defaults(&o);
    o.n = nodes;
    o.log_level = "warn";
    if (cb_ol_init(&c, &o) != 0 || cb_ol_start(&c, 15000) != 0 ||
        (leader = cb_ol_wait_leader(&c, 15000)) < 0) {
        cb_ol_destroy(&c);
        return 1;
    }
    /* Through the leader and, in a cluster, through a follower, which
     * learns of a commit from the leader's next message. */
    rv = run(&c, leader, "l", reps, h[0]);
    if (rv == 0 && nodes > 1)
        rv = run(&c, (leader + 1) % nodes, "f", reps, h[1]);
    if (rv == 0)
        rv = raw(c.root, reps, anchor);
    cb_ol_destroy(&c);
    if (rv != 0)
        return 1;

    a50 = rank(anchor, 0.50);
    printf("# bench_lifecycle --reps %" PRIu32 " --nodes %d: one request at "
           "a time, election 300 ms, heartbeat 50 ms\n",
           reps, nodes);
    printf("%-28s %9s %9s %11s\n", "", "p50 ms", "p99 ms", "p50/anchor");
    print_row("raw SQLite commit (anchor)", anchor, a50);
    for (int v = 0; v < (nodes > 1 ? 2 : 1); v++)
        for (int op = 0; op < N_OPS; op++) {
            char what[64];

            snprintf(what, sizeof what, "%s via %s", op_names[op],
                     v ? "follower" : "leader");
            print_row(what, h[v][op], a50);
        }
    return 0;
}
