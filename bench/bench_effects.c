/*
 * bench_effects: an effect's round trip (declare -> commit -> perform ->
 * outcome checkpointed) against a local no-op service, beside a plain
 * checkpoint's commit latency in the same run, and beside a raw SQLite
 * commit (one fsync'd row, the anchor).
 *
 * Each repetition starts a fresh node (an outlastd process with the
 * embedded single-node replica, or with --nodes 3 a cluster on loopback,
 * election 300 ms, heartbeat 50 ms) and spawns two fxbench agents
 * (bench/plugins/fxbench.c) in agent-host processes, the default.  One at
 * a time, each runs --warmup cycles; then --count cycles of each, which
 * it times itself, run in --chunks pieces, the two agents and the anchor
 * taking turns in a rotating order, so drift on a shared machine (whose
 * disk may be busy with others' fsyncs) falls on all three:
 *
 *   plain   a step that asks for a checkpoint and arms a timer with
 *           delay 0: the time from one step's start to the next's, which
 *           begins once the checkpoint has committed;
 *   effect  a step declares one effect; once its checkpoint commits the
 *           plugin's perform() answers at once on a work-pool thread; the
 *           EFFECT step records the outcome and arms a timer with delay
 *           0; the round trip ends when the timer's step begins, after
 *           the outcome's checkpoint has committed.
 *
 * The node's own commit latency (propose to durable, `outlast status`,
 * its histogram reset before each piece) is read for each piece, and its
 * p50 and p99 are the medians over the pieces; the other figures are
 * nearest-rank quantiles of all of a repetition's samples.  Reported: the
 * median over repetitions of each p50 and p99, and each p50 as a multiple
 * of the plain commit's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anchor.h"
#include "bench_util.h"
#include "cb_outlast.h"
#include "cb_proc.h"
#include "fx_driver.h"
#include "base/hist.h"

#define MAX_REPS 20
#define MAX_CHUNKS 100

/* One repetition's figures, p50 and p99 in us. */
enum {
    F_ANCHOR,
    F_PLAIN_COMMIT,
    F_PLAIN_STEP,
    F_FX_COMMIT,
    F_FX_RT,
    F_FX_S1,
    F_FX_S2,
    F_FX_S3,
    F_FX_S4,
    N_FIGS
};

static const char *const fig_names[N_FIGS] = {
    "raw SQLite commit (anchor)",
    "plain: checkpoint commit",
    "plain: step to next step",
    "effect: checkpoint commit",
    "effect: round trip",
    "  declare -> perform starts",
    "  perform (no-op)",
    "  perform -> EFFECT step",
    "  EFFECT step -> committed",
};

/* The agents' names, which are also their modes. */
static const char *const agent_names[2] = {"plain", "effect"};

struct rep {
    double p50[N_FIGS], p99[N_FIGS];
    uint64_t failed, retried;
    char where[2]; /* the plain and effect agents' nodes: 'L' the
                    * leader, 'F' a follower */
    int ok;
};

struct opts {
    uint32_t count, warmup, reps, nodes, chunks;
    int in_node; /* --isolation none */
};

/* A repetition's samples: pooled per figure (us), and the node's commit
 * p50 and p99 per chunk for the two commit figures. */
struct pool {
    double *v[N_FIGS];
    uint32_t n[N_FIGS], cap;
    double c50[2][MAX_CHUNKS], c99[2][MAX_CHUNKS];
    uint32_t chunks[2];
};

static int pool_init(struct pool *p, uint32_t count)
{
    memset(p, 0, sizeof *p);
    p->cap = count;
    for (int f = 0; f < N_FIGS; f++)
        if ((p->v[f] = calloc(count, sizeof *p->v[f])) == NULL)
            return -1;
    return 0;
}

static void pool_free(struct pool *p)
{
    for (int f = 0; f < N_FIGS; f++)
        free(p->v[f]);
}

static void pool_add(struct pool *p, int f, double us)
{
    if (p->n[f] < p->cap)
        p->v[f][p->n[f]++] = us;
}

/* One chunk of `n` cycles of an agent (its run number `run`): its
 * samples into the pool, and the node's commit figures for the chunk. */
static int chunk(struct fxd *d, const char *name, int owner, int plain,
                 uint64_t run, uint32_t n, struct pool *p, struct rep *r)
{
    struct cb_ol_status st;
    struct fxd_samples s;
    int k = plain ? 0 : 1;

    memset(&s, 0, sizeof s);
    if (cb_ol_status(&d->c, owner, 1, &st) != 0 ||
        fxd_run(d, name, run, n, &s) != 0 ||
        cb_ol_status(&d->c, owner, 0, &st) != 0) {
        fprintf(stderr, "bench: chunk %" PRIu64 " of '%s' failed\n", run,
                name);
        fxd_samples_free(&s);
        return -1;
    }
    p->c50[k][p->chunks[k]] = (double)st.p50_us;
    p->c99[k][p->chunks[k]++] = (double)st.p99_us;
    if (!plain) { /* over the agent's life */
        r->failed = s.failed;
        r->retried = s.retried;
    }
    for (uint32_t i = 0; i < s.n; i++) {
        if (plain) {
            pool_add(p, F_PLAIN_STEP, s.us[i][0]);
            continue;
        }
        for (int c = 0; c < 5; c++)
            pool_add(p, F_FX_RT + c, s.us[i][c]);
    }
    fxd_samples_free(&s);
    return 0;
}

/* The anchor: `txns` fsync'd one-row transactions in raw SQLite, in the
 * node's scratch directory (the same disk), into the pool. */
static int anchor(struct anchor *a, uint32_t txns, struct pool *p)
{
    struct anchor_run run;

    for (uint32_t i = 0; i < txns; i++) {
        uint64_t t0 = ol__now_us();

        if (anchor_insert(a, 1, 0, 1, NULL, &run) != 0) {
            fprintf(stderr, "bench: anchor: %s\n", a->errmsg);
            return -1;
        }
        pool_add(p, F_ANCHOR, (double)(ol__now_us() - t0));
    }
    return 0;
}

/* The figures of a pool into r. */
static void figures(struct pool *p, struct rep *r)
{
    for (int f = 0; f < N_FIGS; f++) {
        if (f == F_PLAIN_COMMIT || f == F_FX_COMMIT) {
            int k = f == F_FX_COMMIT;

            r->p50[f] = bu_median(p->c50[k], p->chunks[k]);
            r->p99[f] = bu_median(p->c99[k], p->chunks[k]);
            continue;
        }
        r->p50[f] = cb_quantile(p->v[f], p->n[f], 0.50);
        r->p99[f] = cb_quantile(p->v[f], p->n[f], 0.99);
    }
}

/* Warm both agents up, then run the chunks: plain, effect and anchor in
 * turn, the order rotating, so drift on a shared machine falls on all
 * three. */
static int chunks(struct fxd *d, const int owner[2], const struct opts *o,
                  struct pool *p, struct rep *r)
{
    uint32_t per = o->count / o->chunks;
    struct anchor a;
    char path[4200];
    int rv;

    snprintf(path, sizeof path, "%s/anchor.db", d->c.root);
    rv = anchor_open(&a, path, 1, 1024);
    if (rv != 0)
        fprintf(stderr, "bench: anchor: %s\n", a.errmsg);
    for (int k = 0; rv == 0 && k < 2; k++)
        rv = fxd_run(d, agent_names[k], 1, o->warmup, NULL);
    for (uint32_t c = 0; rv == 0 && c < o->chunks; c++) {
        uint32_t n = c + 1 < o->chunks ? per : o->count - per * c;

        for (uint32_t j = 0; rv == 0 && j < 3; j++) {
            int k = (int)((c + j) % 3);

            if (k == 2)
                rv = anchor(&a, n, p);
            else
                rv = chunk(d, agent_names[k], owner[k], k == 0, c + 2, n, p,
                           r);
        }
    }
    anchor_close(&a);
    return rv;
}

/* Repetition i.  The order the agents are spawned in alternates too: in
 * a cluster it may change which node each lands on (the report says). */
static int one_rep(const struct opts *o, uint32_t i, struct rep *r)
{
    struct pool p;
    struct fxd d;
    int owner[2], rv;

    memset(r, 0, sizeof *r);
    if (pool_init(&p, o->count) != 0) {
        pool_free(&p);
        return -1;
    }
    rv = fxd_start(&d, (int)o->nodes, o->in_node);
    for (uint32_t j = 0; rv == 0 && j < 2; j++) {
        int k = (int)((i + j) % 2);

        rv = fxd_spawn(&d, agent_names[k], agent_names[k], &owner[k]);
    }
    for (int k = 0; rv == 0 && k < 2; k++)
        r->where[k] = owner[k] == d.via ? 'L' : 'F';
    if (rv == 0)
        rv = chunks(&d, owner, o, &p, r);
    if (rv == 0 && cb_ol_dead(&d.c) >= 0) {
        fprintf(stderr, "bench: a node exited during the run\n");
        rv = -1;
    }
    fxd_stop(&d);
    if (rv == 0)
        figures(&p, r);
    pool_free(&p);
    r->ok = rv == 0;
    return rv;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_effects [--count 600] [--chunks 6] "
               "[--warmup 50] [--reps 3] [--nodes 1|3]\n"
               "                     [--isolation process|none]\n"
               "  --count   measured cycles per agent and repetition "
               "(1..%d)\n"
               "  --chunks  pieces the count is run in, the agents and "
               "the anchor in turn (1..%d)\n"
               "  --warmup  cycles of each agent before measuring "
               "(1..%d)\n"
               "  --reps    repetitions, each on a fresh node (1..%d)\n"
               "  --nodes   1: the embedded single-node replica; 3: a "
               "cluster on loopback\n"
               "  --isolation  where the agents run: in agent-host "
               "processes (the default)\n"
               "               or inside the node\n",
               FXD_RUN_MAX, MAX_CHUNKS, FXD_RUN_MAX, MAX_REPS);
}

static int parse(int argc, char **argv, struct opts *o)
{
    const struct bu_num_opt nums[] = {
        {"--count", &o->count}, {"--warmup", &o->warmup},
        {"--reps", &o->reps},   {"--nodes", &o->nodes},
        {"--chunks", &o->chunks}, {NULL, NULL},
    };

    *o = (struct opts){
        .count = 600, .chunks = 6, .warmup = 50, .reps = 3, .nodes = 1};
    for (int i = 1; i < argc; i++) {
        const char *v;
        int rv = bu_arg_value(argc, argv, i, usage, &v);

        if (rv != 0)
            return rv > 0 ? 0 : 2;
        if (strcmp(argv[i], "--isolation") == 0 &&
            (strcmp(v, "process") == 0 || strcmp(v, "none") == 0)) {
            o->in_node = strcmp(v, "none") == 0;
        } else if (!bu_num_opt(nums, argv[i], v)) {
            fprintf(stderr, "bench_effects: unknown option '%s' or bad "
                            "value '%s'\n", argv[i], v);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (o->count < 1 || o->count > FXD_RUN_MAX || o->warmup < 1 ||
        o->warmup > FXD_RUN_MAX || o->reps < 1 || o->reps > MAX_REPS ||
        o->chunks < 1 || o->chunks > MAX_CHUNKS || o->chunks > o->count ||
        (o->nodes != 1 && o->nodes != 3)) {
        fprintf(stderr, "bench_effects: want --count and --warmup in "
                        "1..%d, --chunks in 1..%d and at most --count, "
                        "--reps in 1..%d, --nodes 1 or 3\n",
                FXD_RUN_MAX, MAX_CHUNKS, MAX_REPS);
        return 2;
    }
    return -1;
}

/* The median over the repetitions that ran of figure f's p50 or p99. */
static double med(const struct rep *rs, uint32_t n, int f, int p99)
{
    double v[MAX_REPS];
    uint32_t k = 0;

    for (uint32_t i = 0; i < n; i++)
        if (rs[i].ok)
            v[k++] = p99 ? rs[i].p99[f] : rs[i].p50[f];
    return cb_median(v, k);
}

static void report(const struct opts *o, const struct rep *rs, uint32_t ok)
{
    double plain = med(rs, o->reps, F_PLAIN_COMMIT, 0);
    uint64_t failed = 0, retried = 0;

    for (uint32_t i = 0; i < o->reps; i++) {
        failed += rs[i].failed;
        retried += rs[i].retried;
    }
    printf("# bench_effects --count %" PRIu32 " --chunks %" PRIu32
           " --warmup %" PRIu32 " --reps %" PRIu32 " --nodes %" PRIu32
           " --isolation %s: one agent at a time, no-op perform(), medians "
           "of %" PRIu32 " repetitions\n",
           o->count, o->chunks, o->warmup, o->reps, o->nodes,
           o->in_node ? "none" : "process", ok);
    printf("%-30s %9s %9s %13s\n", "", "p50 ms", "p99 ms", "p50/commit");
    for (int f = 0; f < N_FIGS; f++) {
        double p50 = med(rs, o->reps, f, 0);

        printf("%-30s %9.3f %9.3f %13.2f\n", fig_names[f], p50 / 1e3,
               med(rs, o->reps, f, 1) / 1e3, p50 / (plain > 0 ? plain : 1));
    }
    printf("# effect round trip / plain commit: p50 %.2f, p99 %.2f; "
           "/ plain step: p50 %.2f\n",
           med(rs, o->reps, F_FX_RT, 0) / plain,
           med(rs, o->reps, F_FX_RT, 1) / med(rs, o->reps, F_PLAIN_COMMIT, 1),
           med(rs, o->reps, F_FX_RT, 0) / med(rs, o->reps, F_PLAIN_STEP, 0));
    printf("# commits: the node's propose-to-durable histogram, median "
           "over the chunks; the rest: each cycle timed by the agent\n");
    if (o->nodes > 1) {
        printf("# nodes of the plain, effect agents per repetition (L "
               "leader, F follower):");
        for (uint32_t i = 0; i < o->reps; i++)
            printf(" %c%c", rs[i].ok ? rs[i].where[0] : '-',
                   rs[i].ok ? rs[i].where[1] : '-');
        printf("\n");
    }
    printf("# effects that failed: %" PRIu64 ", that took more than one "
           "attempt: %" PRIu64 "\n", failed, retried);
}

int main(int argc, char **argv)
{
    struct rep rs[MAX_REPS];
    struct opts o;
    uint32_t ok = 0;
    int rv = parse(argc, argv, &o);

    if (rv >= 0)
        return rv;
    cb_cleanup_install();
    for (uint32_t i = 0; i < o.reps; i++) {
        if (one_rep(&o, i, &rs[i]) == 0)
            ok++;
        else
            fprintf(stderr, "bench: repetition %" PRIu32 " failed\n", i + 1);
    }
    if (ok == 0)
        return 1;
    report(&o, rs, ok);
    return ok == o.reps ? 0 : 1;
}
