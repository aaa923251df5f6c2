/*
 * bench_massfail: how long until the *last* of a killed node's agents has
 * resumed elsewhere, when the node hosts thousands of them.
 *
 * Each trial starts a fresh 3-node cluster on loopback (election 300 ms,
 * heartbeat 50 ms, failover_ms 600), spawns --agents benchload agents
 * (--size B of state, a step every --interval-ms, also spelt --step-ms)
 * through the leader with many spawn requests in flight, and waits until
 * every agent runs with a
 * checkpoint under its current epoch (the leader's SQLite file, read-only).
 * It reads which agents a follower hosts and their epochs, and then, on
 * CLOCK_MONOTONIC:
 *
 *   t0 = now; kill -9 the follower;
 *   poll the leader's SQLite file every --poll-ms for the checkpoint rows
 *   stored since the last poll; an agent of the victim has resumed when a
 *   checkpoint of it under a higher epoch shows up: its first committed
 *   checkpoint on its new node.  That time is the agent's.  Its new
 *   owner is read once, after the trial.
 *
 * A poll reads only the rows new since the last one (a few hundred at
 * 20,000 checkpoints/s), so the observer costs the machine little: a poll
 * that scanned every agent cost half a CPU here, taken from the nodes it
 * was timing.
 *
 * Reported per trial: agents on the killed node, ms to the first, p50 and
 * last agent resumed, and how many went to each survivor; then over the
 * trials the p50 and max of the "last" figure.
 *
 * Environment: MASSFAIL_LOG=info gives the nodes' logs that level (with
 * OL_KEEP_TMP=1 they are kept); MASSFAIL_CLUSTER="key = value" adds lines
 * to every node's [cluster] section, e.g. "moves_in_flight = 65536".
 */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/map.h"
#include "bench_util.h"
#include "cb_outlast.h"
#include "cb_proc.h"
#include "state/store.h"

#define MAX_TRIALS 50
#define SETTLE_LIMIT_MS 600000
#define TRIAL_LIMIT_MS 120000

struct opts {
    int trials;
    uint32_t agents, size, interval_ms, poll_ms, inflight;
    int verbose;
};

/* One agent of the victim. */
struct vagent {
    char name[72];
    uint64_t epoch;
    double ms; /* when it resumed; < 0: not yet */
    uint64_t to;
};

struct trial {
    struct ol__map map; /* name -> struct vagent * */
    struct vagent *v;
    size_t n, done;
    double first, p50, last;
    uint64_t to_id[CB_OL_MAX];
    size_t to_n[CB_OL_MAX];
};

static const char settled_sql[] =
    "SELECT count(*) FROM agents a WHERE a.status = ?1 AND a.epoch = "
    "(SELECT k.epoch FROM checkpoints k WHERE k.agent = a.name "
    "ORDER BY k.seq DESC LIMIT 1)";

static const char victim_sql[] =
    "SELECT name, epoch FROM agents WHERE owner = ?1 AND status = ?2";

static const char newest_sql[] = "SELECT max(rowid) FROM checkpoints";

static const char moved_sql[] =
    "SELECT rowid, agent, epoch FROM checkpoints WHERE rowid > ?1 "
    "ORDER BY rowid";

static const char owner_sql[] = "SELECT owner FROM agents WHERE name = ?1";

static sqlite3 *open_ro(const char *path)
{
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) !=
        SQLITE_OK) {
        fprintf(stderr, "bench: open %s: %s\n", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 1000);
    return db;
}

/* Running agents with a checkpoint under their epoch, in `path`; -1 if
 * unreadable. */
static int settled(const char *path)
{
    sqlite3 *db = open_ro(path);
    sqlite3_stmt *st;
    int n = -1;

    if (db && sqlite3_prepare_v2(db, settled_sql, -1, &st, NULL) ==
                  SQLITE_OK) {
        sqlite3_bind_int(st, 1, OL_AGENT_RUNNING);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

static int wait_settled(struct cb_ol *c, int li, uint32_t n)
{
    uint64_t end = cb_now_ms() + SETTLE_LIMIT_MS;

    while (cb_now_ms() < end) {
        if (cb_ol_dead(c) >= 0)
            return -1;
        if (settled(c->nodes[li].db) == (int)n)
            return 0;
        cb_sleep_ms(250);
    }
    fprintf(stderr, "bench: the agents did not all settle\n");
    return -1;
}

/* The victim's running agents and their epochs, as the leader has them. */
static int read_victim(struct cb_ol *c, int li, int victim, struct trial *t)
{
    sqlite3 *db = open_ro(c->nodes[li].db);
    sqlite3_stmt *st;
    size_t cap = 0;

    if (db == NULL ||
        sqlite3_prepare_v2(db, victim_sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)c->nodes[victim].id);
    sqlite3_bind_int(st, 2, OL_AGENT_RUNNING);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (t->n == cap) {
            cap = cap ? cap * 2 : 1024;
            t->v = realloc(t->v, cap * sizeof *t->v);
        }
        snprintf(t->v[t->n].name, sizeof t->v[t->n].name, "%s",
                 (const char *)sqlite3_column_text(st, 0));
        t->v[t->n].epoch = (uint64_t)sqlite3_column_int64(st, 1);
        t->v[t->n].ms = -1;
        t->n++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    for (size_t i = 0; i < t->n; i++)
        ol__map_put(&t->map, t->v[i].name, &t->v[i]);
    return t->n ? 0 : -1;
}

/* The checkpoint rows stored since the last pass: mark the victim's
 * agents that have resumed elsewhere.  Returns the newest rowid seen. */
static int64_t poll_once(sqlite3_stmt *st, struct trial *t, uint64_t t0,
                         int64_t after)
{
    double now = -1;

    sqlite3_bind_int64(st, 1, after);
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct vagent *a =
            ol__map_get(&t->map, (const char *)sqlite3_column_text(st, 1));
        uint64_t ep = (uint64_t)sqlite3_column_int64(st, 2);

        after = sqlite3_column_int64(st, 0);
        if (a == NULL || a->ms >= 0 || ep <= a->epoch)
            continue;
        if (now < 0)
            now = (double)(cb_now_ns() - t0) / 1e6;
        a->ms = now;
        t->done++;
    }
    sqlite3_reset(st);
    return after;
}

/* Where each resumed agent went, as the leader has it now. */
static void read_owners(sqlite3 *db, struct trial *t)
{
    sqlite3_stmt *st;

    if (sqlite3_prepare_v2(db, owner_sql, -1, &st, NULL) != SQLITE_OK)
        return;
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].ms < 0)
            continue;
        sqlite3_bind_text(st, 1, t->v[i].name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            t->v[i].to = (uint64_t)sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void summarize(struct trial *t)
{
    double *v = calloc(t->n, sizeof *v);
    size_t k = 0;

    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i].ms < 0)
            continue;
        v[k++] = t->v[i].ms;
        for (int j = 0; j < CB_OL_MAX; j++)
            if (t->to_id[j] == t->v[i].to || t->to_id[j] == 0) {
                t->to_id[j] = t->v[i].to;
                t->to_n[j]++;
                break;
            }
    }
    qsort(v, k, sizeof *v, cmp_d);
    t->first = k ? v[0] : -1;
    t->p50 = k ? v[(k - 1) / 2] : -1;
    t->last = k == t->n ? v[k - 1] : -1;
    free(v);
}

/* kill -9 `victim` and time its agents' moves. */
static int run_kill(struct cb_ol *c, int li, int victim,
                    const struct opts *o, struct trial *t)
{
    sqlite3 *db = open_ro(c->nodes[li].db);
    sqlite3_stmt *st = NULL;
    int64_t after = 0;
    uint64_t t0, end;

    if (db == NULL ||
        sqlite3_prepare_v2(db, newest_sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        after = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, moved_sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5);
    t0 = cb_now_ns();
    cb_ol_kill(c, victim);
    if (o->verbose) {
        struct timespec ts;
        struct tm tm;

        /* To line the nodes' logs up with the kill. */
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        printf("# kill -9 node %d at %02d:%02d:%02d.%03ldZ\n", victim + 1,
               tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
        fflush(stdout);
    }
    end = cb_now_ms() + TRIAL_LIMIT_MS;
    while (t->done < t->n && cb_now_ms() < end) {
        cb_sleep_ms(o->poll_ms);
        after = poll_once(st, t, t0, after);
    }
    sqlite3_finalize(st);
    read_owners(db, t);
    sqlite3_close(db);
    summarize(t);
    return t->done == t->n ? 0 : -1;
}

static void print_trial(const struct cb_ol *c, int k, int victim,
                        const struct trial *t)
{
    printf("trial %d: kill -9 node %d hosting %zu agents: first %.0f ms, "
           "p50 %.0f ms, last %.0f ms; resumed on",
           k + 1, victim + 1, t->n, t->first, t->p50, t->last);
    for (int j = 0; j < CB_OL_MAX && t->to_id[j]; j++)
        printf(" node %d: %zu", cb_ol_index(c, t->to_id[j]) + 1, t->to_n[j]);
    printf("\n");
}

/* One trial on a fresh cluster.  The time to the last agent, or -1. */
static double one_trial(const struct opts *o, int k)
{
    struct cb_ol_opts oo;
    struct cb_ol c;
    struct trial t;
    void *cfg;
    size_t cfg_len;
    uint64_t s0;
    int li, victim, rv = -1;

    memset(&t, 0, sizeof t);
    ol__map_init(&t.map);
    cb_ol_defaults(&oo);
    oo.log_level = getenv("MASSFAIL_LOG") ? getenv("MASSFAIL_LOG") : "warn";
    /* More [cluster] lines for every node, to try other settings. */
    oo.cluster_extra = getenv("MASSFAIL_CLUSTER");
    if (cb_ol_init(&c, &oo) != 0 || cb_ol_start(&c, 15000) != 0 ||
        (li = cb_ol_wait_leader(&c, 15000)) < 0)
        goto out;
    cfg = cb_benchload_config(o->size, o->interval_ms, 0, &cfg_len);
    s0 = cb_now_ms();
    rv = cb_ol_spawn(&c, li, "m", o->agents, o->inflight, cfg, cfg_len);
    free(cfg);
    if (rv != 0 || (rv = wait_settled(&c, li, o->agents)) != 0)
        goto out;
    if (o->verbose)
        printf("# trial %d: %u agents spawned and running in %.1f s (%s)\n",
               k + 1, o->agents, (double)(cb_now_ms() - s0) / 1e3, c.root);
    cb_sleep_ms(2 * o->interval_ms);
    /* Leadership may have moved while thousands of agents started. */
    if ((li = cb_ol_wait_leader(&c, 15000)) < 0 ||
        (rv = wait_settled(&c, li, o->agents)) != 0) {
        rv = -1;
        goto out;
    }
    victim = (li + 1) % c.o.n;
    if ((rv = read_victim(&c, li, victim, &t)) == 0)
        rv = run_kill(&c, li, victim, o, &t);
    print_trial(&c, k, victim, &t);
out:
    if (rv != 0)
        fprintf(stderr, "bench: trial %d failed (%zu of %zu resumed; "
                        "OL_KEEP_TMP=1 keeps %s)\n",
                k + 1, t.done, t.n, c.root);
    cb_ol_destroy(&c);
    ol__map_close(&t.map);
    free(t.v);
    return rv == 0 ? t.last : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    const struct bu_num_opt nums[] = {
        {"--agents", &o->agents},     {"--size", &o->size},
        {"--interval-ms", &o->interval_ms}, {"--poll-ms", &o->poll_ms},
        {"--inflight", &o->inflight},
        /* the same as --interval-ms: each agent's step interval */
        {"--step-ms", &o->interval_ms}, {NULL, NULL},
    };

    memset(o, 0, sizeof *o);
    o->trials = 3;
    o->agents = 3000;
    o->size = 64;
    o->interval_ms = 1500;
    o->poll_ms = 20;
    o->inflight = 32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            o->verbose = 1;
            continue;
        }
        if (v == NULL)
            return -1;
        if (strcmp(a, "--trials") == 0)
            o->trials = atoi(v);
        else if (!bu_num_opt(nums, a, v))
            return -1;
        i++;
    }
    return o->trials > 0 && o->trials <= MAX_TRIALS && o->agents >= 3 &&
                   o->poll_ms > 0 && o->inflight > 0
               ? 0
               : -1;
}

int main(int argc, char **argv)
{
    double last[MAX_TRIALS];
    int n = 0, failed = 0;
    struct opts o;

    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: bench_massfail [--agents 3000] [--trials 3] "
                        "[--size 64] [--interval-ms|--step-ms 1500] "
                        "[--poll-ms 20] [--inflight 32] [--verbose]\n");
        return 2;
    }
    cb_cleanup_install();
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# bench_massfail: %u benchload agents over 3 nodes (%u B state, "
           "a step every %u ms), election 300 ms, heartbeat 50 ms, failover "
           "600 ms; kill -9 a follower; poll the leader's file every %u ms\n",
           o.agents, o.size, o.interval_ms, o.poll_ms);
    for (int k = 0; k < o.trials; k++) {
        double ms = one_trial(&o, k);

        if (ms < 0)
            failed++;
        else
            last[n++] = ms;
    }
    printf("%-10s %6s %6s %12s %12s\n", "agents", "trials", "failed",
           "p50_last_ms", "max_last_ms");
    if (n) {
        qsort(last, (size_t)n, sizeof *last, cmp_d);
        printf("%-10u %6d %6d %12.0f %12.0f\n", o.agents, n, failed,
               last[(n - 1) / 2], last[n - 1]);
    }
    return failed != 0;
}
