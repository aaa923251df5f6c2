/*
 * bench_failover: how long an agent is gone when the node hosting it is
 * killed, beside how long etcd takes to accept writes again when its
 * leader is killed, in the same run.
 *
 * outlast: a 3-node cluster on loopback (election 300 ms, heartbeat 50 ms,
 * failover_ms 600) hosts benchload agents with 1 KiB states that step
 * every --interval-ms.  Each trial waits until the cluster has settled
 * (one leader; every node alive, hosting its share of the agents; every
 * agent running with a checkpoint under its current epoch), picks an
 * agent on the victim, reads its epoch, and then, on CLOCK_MONOTONIC:
 *
 *   t0 = now; kill -9 the victim;
 *   poll both survivors' SQLite files (read-only) every --poll-ms until
 *   one shows the agent with another owner, a higher epoch and its newest
 *   checkpoint under that epoch: the agent's first committed checkpoint on
 *   its new node;  t1 = now.
 *
 * then restarts the victim with the same data directory.  The victims
 * alternate: a follower that hosts an agent, then the leader.
 *
 * etcd: a 3-member cluster with the same raft timing.  Each trial waits
 * until all members agree on the leader and have applied the same index,
 * opens kept-alive connections to the two others, and then: t0 = now;
 * kill -9 the leader; from t0, a 1 KiB put goes every --poll-ms to one of
 * the survivors in turn (each with its own timeout) until one succeeds:
 * t1 = its completion.  Then the member is restarted.
 *
 * Reported: p50, p99 (nearest rank, so with 20 trials the largest) and
 * max per kind, with every trial's time in ms.
 */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "cb_etcd.h"
#include "cb_outlast.h"
#include "cb_proc.h"
#include "state/store.h"

#define MAX_TRIALS 200
#define TRIAL_LIMIT_MS 15000
#define SETTLE_LIMIT_MS 60000

struct opts {
    int trials;
    uint32_t agents, size, interval_ms, settle_ms, poll_ms;
    int do_outlast, do_etcd;
    int verbose;
    /* --timing for both systems (0: the loopback defaults) */
    uint32_t election_ms, heartbeat_ms, failover_ms;
    /* --etcd-timing: etcd's own instead (0: as --timing) */
    uint32_t etcd_election_ms, etcd_heartbeat_ms;
};

struct series {
    const char *name;
    double ms[MAX_TRIALS];
    int n, failed;
};

static void add(struct series *s, double ms)
{
    if (ms < 0)
        s->failed++;
    else if (s->n < MAX_TRIALS)
        s->ms[s->n++] = ms;
}

static void report(struct series *s)
{
    double v[MAX_TRIALS], p50, p99;

    memcpy(v, s->ms, sizeof v);
    if (s->n == 0) {
        printf("%-24s trials 0, failed %d\n", s->name, s->failed);
        return;
    }
    p50 = cb_quantile(v, (size_t)s->n, 0.50); /* sorts v */
    p99 = cb_quantile(v, (size_t)s->n, 0.99);
    printf("%-24s %6d %6d %9.1f %9.1f %9.1f %9.1f\n", s->name, s->n,
           s->failed, p50, p99, v[s->n - 1], v[0]);
}

static void dump(const struct series *s)
{
    printf("# %s ms:", s->name);
    for (int i = 0; i < s->n; i++)
        printf(" %.1f", s->ms[i]);
    printf("\n");
}

/* ---- outlast ---- */

static const char head_sql[] =
    "SELECT a.owner, a.epoch, a.status,"
    " (SELECT k.epoch FROM checkpoints k WHERE k.agent = a.name"
    "   ORDER BY k.seq DESC LIMIT 1)"
    " FROM agents a WHERE a.name = ?1";

/* Agents that are running with their newest checkpoint under their
 * current epoch, as node i's store has them; -1 if unreadable. */
static int settled_agents(struct cb_ol *c, int i)
{
    sqlite3 *db;
    int n = -1;

    if (sqlite3_open_v2(c->nodes[i].db, &db, SQLITE_OPEN_READONLY, NULL) ==
        SQLITE_OK) {
        sqlite3_stmt *st;

        sqlite3_busy_timeout(db, 1000);
        if (sqlite3_prepare_v2(db,
                               "SELECT count(*) FROM agents a WHERE "
                               "a.status = ?1 AND a.epoch = (SELECT k.epoch "
                               "FROM checkpoints k WHERE k.agent = a.name "
                               "ORDER BY k.seq DESC LIMIT 1)",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int(st, 1, OL_AGENT_RUNNING);
            if (sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int(st, 0);
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(db);
    return n;
}

/* Wait until the cluster is settled; the leader's index, or -1. */
static int ol_settle(struct cb_ol *c, const struct opts *o)
{
    uint64_t end = cb_now_ms() + SETTLE_LIMIT_MS;

    while (cb_now_ms() < end) {
        struct cb_ol_view v;
        int li = cb_ol_wait_leader(c, 5000), ok, on_leader = 0,
            on_follower = 0;

        if (cb_ol_dead(c) >= 0)
            return -1;
        if (li < 0 || cb_ol_view(c, li, &v) != 0)
            continue;
        /* Every node up, and agents on the leader and on a follower (a
         * trial of each kind needs one).  Not an even spread: over a WAN,
         * placement keeps busy agents near the leader (placement.h). */
        ok = v.n_nodes == c->o.n;
        for (int k = 0; k < v.n_nodes && ok; k++) {
            int self = strcmp(v.nodes[k].health, "self") == 0;

            ok = self || strcmp(v.nodes[k].health, "alive") == 0;
            on_leader |= self && v.nodes[k].agents > 0;
            on_follower |= !self && v.nodes[k].agents > 0;
        }
        ok = ok && on_leader && on_follower;
        if (ok && settled_agents(c, li) == (int)o->agents) {
            cb_sleep_ms(o->settle_ms);
            return li;
        }
        cb_sleep_ms(50);
    }
    fprintf(stderr, "bench: the outlast cluster did not settle; see %s\n",
            c->root);
    return -1;
}

/* One trial: kill -9 node `victim`, time until `agent` (epoch `epoch`
 * there) has its first checkpoint under a new epoch on a new node.
 * Returns ms or -1. */
static double ol_trial(struct cb_ol *c, int victim, const char *agent,
                       uint64_t epoch, const struct opts *o, int *moved_to)
{
    sqlite3 *db[CB_OL_MAX] = {0};
    sqlite3_stmt *st[CB_OL_MAX] = {0};
    uint64_t t0, end;
    double ms = -1;

    *moved_to = -1;
    for (int i = 0; i < c->o.n; i++) {
        if (i == victim)
            continue;
        if (sqlite3_open_v2(c->nodes[i].db, &db[i], SQLITE_OPEN_READONLY,
                            NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db[i], head_sql, -1, &st[i], NULL) !=
                SQLITE_OK) {
            fprintf(stderr, "bench: open %s: %s\n", c->nodes[i].db,
                    sqlite3_errmsg(db[i]));
            goto out;
        }
        sqlite3_busy_timeout(db[i], 2);
        sqlite3_bind_text(st[i], 1, agent, -1, SQLITE_STATIC);
    }
    t0 = cb_now_ns();
    cb_ol_kill(c, victim);
    end = cb_now_ms() + TRIAL_LIMIT_MS;
    while (ms < 0 && cb_now_ms() < end) {
        for (int i = 0; i < c->o.n && ms < 0; i++) {
            if (st[i] == NULL)
                continue;
            if (sqlite3_step(st[i]) == SQLITE_ROW) {
                uint64_t owner = (uint64_t)sqlite3_column_int64(st[i], 0);
                uint64_t ep = (uint64_t)sqlite3_column_int64(st[i], 1);
                uint64_t head = (uint64_t)sqlite3_column_int64(st[i], 3);

                if (owner != c->nodes[victim].id && owner != 0 &&
                    ep > epoch && head == ep) {
                    ms = (double)(cb_now_ns() - t0) / 1e6;
                    *moved_to = cb_ol_index(c, owner);
                }
            }
            sqlite3_reset(st[i]);
        }
        if (ms < 0)
            cb_sleep_ms(o->poll_ms);
    }
out:
    for (int i = 0; i < c->o.n; i++) {
        sqlite3_finalize(st[i]);
        sqlite3_close(db[i]);
    }
    return ms;
}

/* The node to kill in this trial: the leader, or the follower not killed
 * last time if it hosts a running agent (else the other one).  -1 if
 * none hosts one. */
static int pick_victim(const struct cb_ol *c, int li, int kill_leader,
                       const struct cb_ol_agent *rows, int n,
                       int last_follower)
{
    int victim = -1;

    if (kill_leader)
        return li;
    for (int pass = 0; pass < 2 && victim < 0; pass++)
        for (int i = 0; i < c->o.n && victim < 0; i++) {
            if (i == li || (pass == 0 && i == last_follower))
                continue;
            for (int k = 0; k < n; k++)
                if (rows[k].running && rows[k].owner == c->nodes[i].id) {
                    victim = i;
                    break;
                }
        }
    return victim;
}

/* One trial on a settled cluster: kill a node (the leader when
 * kill_leader), time one of its agents' move, restart the node.  0, or -1
 * if the cluster can no longer run trials. */
static int ol_one_trial(struct cb_ol *c, const struct opts *o, int t,
                        int *last_follower, struct series *fol,
                        struct series *lead)
{
    int kill_leader = t % 2, victim, to, li, n;
    struct cb_ol_agent *rows = NULL;
    char agent[72] = "";
    uint64_t epoch = 0;
    double ms;

    if ((li = ol_settle(c, o)) < 0)
        return -1;
    n = cb_ol_agents(c, li, &rows, NULL);
    victim = pick_victim(c, li, kill_leader, rows, n, *last_follower);
    if (!kill_leader)
        *last_follower = victim;
    for (int k = 0; k < n && victim >= 0; k++)
        if (rows[k].running && rows[k].owner == c->nodes[victim].id) {
            snprintf(agent, sizeof agent, "%s", rows[k].name);
            epoch = rows[k].epoch;
            break;
        }
    free(rows);
    if (agent[0] == '\0') {
        fprintf(stderr, "bench: no agent on the %s\n",
                kill_leader ? "leader" : "followers");
        return -1;
    }
    ms = ol_trial(c, victim, agent, epoch, o, &to);
    add(kill_leader ? lead : fol, ms);
    if (o->verbose)
        printf("# outlast trial %d: kill -9 node %d (%s) hosting '%s' "
               "epoch %" PRIu64 ": resumed on node %d in %.1f ms\n",
               t + 1, victim + 1, kill_leader ? "leader" : "follower",
               agent, epoch, to + 1, ms);
    fflush(stdout);
    if (ms < 0)
        fprintf(stderr, "bench: '%s' did not resume within %d ms; see "
                        "%s\n",
                agent, TRIAL_LIMIT_MS, c->root);
    return cb_ol_start_node(c, victim, 15000) != 0 ? -1 : 0;
}

/* After a run: the note that says where its logs are, on failure. */
static void run_done(const char *system, int rv)
{
    if (rv != 0)
        fprintf(stderr, "bench: %s failover run failed (OL_KEEP_TMP=1 "
                        "keeps the logs)\n",
                system);
}

static int run_outlast(const struct opts *o, struct series *fol,
                       struct series *lead)
{
    struct cb_ol_opts oo;
    struct cb_ol c;
    void *cfg;
    size_t cfg_len;
    int li, last_follower = -1, rv = -1;

    cb_ol_defaults(&oo);
    if (o->heartbeat_ms) {
        oo.election_ms = o->election_ms;
        oo.heartbeat_ms = o->heartbeat_ms;
        oo.failover_ms = o->failover_ms;
    }
    if (cb_ol_init(&c, &oo) != 0 || cb_ol_start(&c, 15000) != 0 ||
        (li = cb_ol_wait_leader(&c, 15000)) < 0)
        goto out;
    cfg = cb_benchload_config(o->size, o->interval_ms, 0, &cfg_len);
    rv = cb_ol_spawn(&c, li, "f", o->agents, 16, cfg, cfg_len);
    free(cfg);
    if (rv != 0)
        goto out;
    printf("# outlast: %d nodes in %s, %u benchload agents (%u B state, a "
           "step every %u ms), election %u ms, heartbeat %u ms, failover %u "
           "ms\n",
           c.o.n, c.root, o->agents, o->size, o->interval_ms, oo.election_ms,
           oo.heartbeat_ms, oo.failover_ms);
    fflush(stdout);
    for (int t = 0; t < 2 * o->trials && rv == 0; t++)
        rv = ol_one_trial(&c, o, t, &last_follower, fol, lead);
out:
    run_done("outlast", rv);
    cb_ol_destroy(&c);
    return rv;
}

/* ---- etcd ---- */

static int etcd_settle(struct cb_etcd *e, const struct opts *o)
{
    uint64_t end = cb_now_ms() + SETTLE_LIMIT_MS;

    while (cb_now_ms() < end) {
        uint64_t lo, hi;
        int li = cb_etcd_leader(e, &lo, &hi);

        if (li >= 0 && hi - lo <= 2) {
            cb_sleep_ms(o->settle_ms);
            return li;
        }
        cb_sleep_ms(50);
    }
    fprintf(stderr, "bench: etcd did not settle; see %s\n", e->root);
    return -1;
}

static int run_etcd(const struct opts *o, struct series *s)
{
    struct cb_etcd_opts eo;
    struct cb_etcd e;
    int rv = -1;

    cb_etcd_defaults(&eo);
    if (o->etcd_heartbeat_ms) {
        eo.election_ms = o->etcd_election_ms;
        eo.heartbeat_ms = o->etcd_heartbeat_ms;
    } else if (o->heartbeat_ms) {
        eo.election_ms = o->election_ms;
        eo.heartbeat_ms = o->heartbeat_ms;
    }
    if (cb_etcd_init(&e, &eo) != 0 || cb_etcd_start(&e, 20000) != 0)
        goto out;
    printf("# etcd: %d members in %s (%s), election %u ms, heartbeat %u "
           "ms, pre-vote %s\n",
           e.o.n, e.root, e.o.etcd, eo.election_ms, eo.heartbeat_ms,
           eo.pre_vote ? "on" : "off");
    fflush(stdout);
    for (int t = 0; t < o->trials; t++) {
        int li = etcd_settle(&e, o);
        unsigned mask;
        json_t *req, *r;
        char since[32];
        uint64_t t0;
        double ms = -1;

        if (li < 0)
            goto out;
        mask = ((1u << e.o.n) - 1) & ~(1u << li);
        req = json_pack("{s:s, s:o}", "cmd", "arm", "endpoints",
                        cb_etcd_urls(&e, mask));
        r = cb_etcd_call(&e, req, 10000);
        json_decref(req);
        if (r == NULL)
            goto out;
        json_decref(r);
        t0 = cb_now_ns();
        cb_etcd_kill(&e, li);
        snprintf(since, sizeof since, "%" PRIu64, t0);
        req = json_pack("{s:s, s:s, s:i, s:i}", "cmd", "probe", "since_ns",
                        since, "interval_ms", (int)o->poll_ms, "timeout_ms",
                        TRIAL_LIMIT_MS);
        r = cb_etcd_call(&e, req, TRIAL_LIMIT_MS + 5000);
        json_decref(req);
        if (r) {
            ms = json_real_value(json_object_get(r, "ms"));
            if (o->verbose)
                printf("# etcd trial %d: kill -9 leader m%d: a put through "
                       "a survivor succeeded after %.1f ms (%" JSON_INTEGER_FORMAT
                       " attempts)\n",
                       t + 1, li + 1, ms,
                       json_integer_value(json_object_get(r, "attempts")));
            json_decref(r);
        }
        add(s, ms);
        fflush(stdout);
        if (cb_etcd_start_member(&e, li) != 0)
            goto out;
    }
    rv = 0;
out:
    run_done("etcd", rv);
    cb_etcd_destroy(&e);
    return rv;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    const struct bu_num_opt nums[] = {
        {"--agents", &o->agents},
        {"--size", &o->size},
        {"--interval-ms", &o->interval_ms},
        {"--settle-ms", &o->settle_ms},
        {"--poll-ms", &o->poll_ms},
        {NULL, NULL},
    };

    memset(o, 0, sizeof *o);
    o->trials = 20;
    o->agents = 6;
    o->size = 1024;
    o->interval_ms = 100;
    o->settle_ms = 1000;
    o->poll_ms = 5;
    o->do_outlast = o->do_etcd = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
            o->verbose = 1;
            continue;
        }
        if (strcmp(a, "--only") == 0 && v) {
            o->do_outlast = strcmp(v, "outlast") == 0;
            o->do_etcd = strcmp(v, "etcd") == 0;
        } else if (v == NULL)
            return -1;
        else if (strcmp(a, "--trials") == 0)
            o->trials = atoi(v);
        else if (strcmp(a, "--timing") == 0) {
            if (sscanf(v, "%u/%u/%u", &o->election_ms, &o->heartbeat_ms,
                       &o->failover_ms) != 3 ||
                o->heartbeat_ms == 0) {
                fprintf(stderr, "bench_failover: --timing '%s' is not "
                                "ELECTION/HEARTBEAT/FAILOVER in ms\n",
                        v);
                return -1;
            }
        }
        else if (strcmp(a, "--etcd-timing") == 0) {
            if (sscanf(v, "%u/%u", &o->etcd_election_ms,
                       &o->etcd_heartbeat_ms) != 2 ||
                o->etcd_heartbeat_ms == 0) {
                fprintf(stderr, "bench_failover: --etcd-timing '%s' is not "
                                "ELECTION/HEARTBEAT in ms\n",
                        v);
                return -1;
            }
        }
        else if (!bu_num_opt(nums, a, v))
            return -1;
        i++;
    }
    return o->trials > 0 && o->trials <= MAX_TRIALS && o->agents >= 3 &&
                   o->poll_ms > 0
               ? 0
               : -1;
}

int main(int argc, char **argv)
{
    struct series fol = {.name = "outlast, follower kill"};
    struct series lead = {.name = "outlast, leader kill"};
    struct series et = {.name = "etcd, leader kill"};
    struct opts o;
    int rv = 0;

    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: bench_failover [--trials 20] [--agents 6] "
                        "[--size 1024] [--interval-ms 100] [--settle-ms "
                        "1000] [--poll-ms 5] [--only outlast|etcd] "
                        "[--verbose]\n"
                        "       [--timing ELECTION/HEARTBEAT/FAILOVER] "
                        "[--etcd-timing ELECTION/HEARTBEAT] "
                        "(default 300/50/600, etcd takes the first two)\n");
        return 2;
    }
    cb_cleanup_install();
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# bench_failover: %d trials per kind; poll every %u ms; "
           "CLOCK_MONOTONIC from just before kill -9\n",
           o.trials, o.poll_ms);
    if (getenv("OL_WAN_SITES"))
        printf("# across the WAN bed's sites %s (node/member i in site i)\n",
               getenv("OL_WAN_SITES"));
    if (o.do_outlast && run_outlast(&o, &fol, &lead) != 0)
        rv = 1;
    if (o.do_etcd && run_etcd(&o, &et) != 0)
        rv = 1;
    printf("%-24s %6s %6s %9s %9s %9s %9s\n", "kind", "trials", "failed",
           "p50_ms", "p99_ms", "max_ms", "min_ms");
    if (o.do_outlast) {
        report(&fol);
        report(&lead);
    }
    if (o.do_etcd)
        report(&et);
    if (o.do_outlast) {
        dump(&fol);
        dump(&lead);
    }
    if (o.do_etcd)
        dump(&et);
    return rv || fol.failed || lead.failed || et.failed;
}
