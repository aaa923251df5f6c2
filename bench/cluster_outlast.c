/*
 * The outlast side of a bench_cluster repetition: a fresh 3-node cluster
 * gets the row's benchload agents, which start stepping together once all
 * are spawned; after a warm-up every node's counters are read around the
 * window (see bench_cluster.c for what the figures mean).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cluster.h"
#include "cb_outlast.h"
#include "cb_proc.h"
#include "base/log.h"
#include "scraper.h"

#define READY_LIMIT_MS (600 * 1000)

/* How long spawning n agents may take: they start stepping after it.
 * Spawning 10,000 into a quiet cluster took about 4 s here. */
static uint32_t spawn_budget_ms(const struct opts *o, uint32_t n)
{
    return o->spawn_budget_ms ? o->spawn_budget_ms : 2000 + n;
}

static int wait_ready(struct cb_ol *c, uint32_t n, double *secs)
{
    uint64_t t0 = cb_now_ms(), end = t0 + READY_LIMIT_MS;

    while (cb_now_ms() < end) {
        uint32_t total = 0;

        for (int i = 0; i < c->o.n; i++) {
            struct cb_ol_agent *list;
            uint32_t ready;

            if (cb_ol_agents(c, i, &list, &ready) >= 0)
                total += ready;
            free(list);
        }
        if (cb_ol_dead(c) >= 0)
            return -1;
        if (total >= n) {
            *secs = (double)(cb_now_ms() - t0) / 1e3;
            return 0;
        }
        cb_sleep_ms(n > 1000 ? 500 : 50);
    }
    fprintf(stderr, "bench: not every agent committed within %d s\n",
            READY_LIMIT_MS / 1000);
    return -1;
}

/* Keep only the agent on the leader (or on a follower): stop the others.
 * Returns the node index it runs on, or -1. */
static int keep_one(struct cb_ol *c, int li, enum place place)
{
    struct cb_ol_agent *list;
    int n = cb_ol_agents(c, li, &list, NULL), keep = -1, on = -1;

    for (int k = 0; k < n && keep < 0; k++) {
        int i = cb_ol_index(c, list[k].owner);

        if (i >= 0 && (place == ON_LEADER) == (i == li)) {
            keep = k;
            on = i;
        }
    }
    for (int k = 0; k < n && keep >= 0; k++)
        if (k != keep && cb_ol_stop(c, li, list[k].name) != 0)
            on = -1;
    free(list);
    if (keep < 0)
        fprintf(stderr, "bench: no agent on the %s\n",
                place == ON_LEADER ? "leader" : "followers");
    return on;
}

static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int n = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Start the cluster (every node serving HTTP and scraped from the start
 * when `scraped`, as Prometheus would).  The leader's index, or -1. */
static int ol_start(const struct opts *o, int scraped, struct cb_ol *c,
                    struct scraper *scr)
{
    struct cb_ol_opts oo;
    int li;

    cb_ol_defaults(&oo);
    oo.log_level = o->log_level;
    if (scraped)
        oo.extra = "[http]\nlisten = 127.0.0.1:0\n";
    oo.cluster_extra = o->cluster_extra;
    if (o->heartbeat_ms) {
        oo.heartbeat_ms = o->heartbeat_ms;
        oo.election_ms = o->election_ms;
        oo.failover_ms = o->failover_ms;
    }
    if (cb_ol_init(c, &oo) != 0 || cb_ol_start(c, 15000) != 0 ||
        (li = cb_ol_wait_leader(c, 15000)) < 0)
        return -1;
    for (int i = 0; scraped && i < c->o.n; i++) {
        struct cb_ol_status st;

        if (cb_ol_status(c, i, 0, &st) != 0 || st.http[0] == '\0')
            return -1;
        snprintf(scr->targets[scr->n_targets++], sizeof scr->targets[0],
                 "%s", st.http);
    }
    if (scraped && scraper_start(scr, o->scrape_ms) != 0)
        return -1;
    return li;
}

/* Spawn the row's agents through the leader and wait until every one has
 * committed, keep only one if the row says where it runs, then wait until
 * they start stepping.  0 or -1. */
static int ol_spawn(const struct opts *o, const struct row *w,
                    struct cb_ol *c, int li, double *spawn_s, double *ready_s)
{
    uint32_t spawn_n = w->place == SPREAD ? w->n : 3;
    uint64_t t, start_at;
    int64_t wait_ms;
    void *cfg;
    size_t cfg_len;
    int rv;

    /* The agents take their START checkpoint at once but only start
     * stepping at start_at, so the spawns run in a quiet cluster. */
    start_at = (uint64_t)ol__wall_ms() + spawn_budget_ms(o, spawn_n);
    cfg = cb_benchload_config(o->size, 0, start_at, &cfg_len);
    t = cb_now_ms();
    rv = cb_ol_spawn(c, li, "b", spawn_n, o->inflight, cfg, cfg_len);
    free(cfg);
    if (rv != 0)
        return -1;
    *spawn_s = (double)(cb_now_ms() - t) / 1e3;
    if (wait_ready(c, spawn_n, ready_s) != 0)
        return -1;
    if (w->place != SPREAD && keep_one(c, li, w->place) < 0)
        return -1;
    wait_ms = (int64_t)start_at - ol__wall_ms();
    if (wait_ms < 0)
        printf("# note: spawning took %.1f s longer than the %u ms "
               "budget: the first agents stepped early\n",
               (double)-wait_ms / 1e3, spawn_budget_ms(o, spawn_n));
    else
        cb_sleep_ms((unsigned)wait_ms);
    return 0;
}

/* Every node's counters at the start and the end of the window. */
struct window {
    struct cb_ol_status s0[CB_OL_MAX], s1[CB_OL_MAX];
    struct cb_ol_view v0[CB_OL_MAX], v1[CB_OL_MAX];
    int lost0, lost1;  /* "lease lost" log lines */
    uint64_t ckpts;    /* checkpoints committed in it, all nodes */
};

/* Warm up, then read every node's counters around the window (status
 * resets the histograms at its start).  0 or -1. */
static int ol_window(const struct opts *o, struct cb_ol *c, struct window *x,
                     struct cell *out)
{
    cb_sleep_ms(o->warmup_ms);
    for (int i = 0; i < c->o.n; i++) {
        x->lost0 += count_lines(c->nodes[i].log, "lease lost");
        if (cb_ol_status(c, i, 1, &x->s0[i]) != 0 ||
            cb_ol_view(c, i, &x->v0[i]) != 0)
            return -1;
    }
    cb_sleep_ms(o->window_ms);
    for (int i = 0; i < c->o.n; i++)
        if (cb_ol_status(c, i, 0, &x->s1[i]) != 0)
            return -1;
    for (int i = 0; i < c->o.n; i++) {
        x->lost1 += count_lines(c->nodes[i].log, "lease lost");
        if (cb_ol_view(c, i, &x->v1[i]) != 0)
            return -1;
        out->snapshots += x->v1[i].snapshots_taken - x->v0[i].snapshots_taken;
        x->ckpts += x->s1[i].checkpoints - x->s0[i].checkpoints;
    }
    return 0;
}

/* Stop scraping; then what serving cost each node's loop, from its own
 * counters. */
static void ol_scrape_report(int rep, struct scraper *scr, struct cell *out)
{
    static const char k_loop[] = "\noutlast_http_loop_seconds_total ",
                      k_reqs[] = "\noutlast_http_requests_total ";

    scraper_stop(scr);
    out->scrapes = scr->ok;
    out->scrape_failed = scr->failed;
    out->scrape_ms = scr->ok ? (double)scr->total_us / 1e3 / (double)scr->ok
                             : 0;
    for (int i = 0; i < scr->n_targets; i++) {
        static char body[1 << 20];
        const char *p;
        double loop_s = 0, reqs = 0;

        if (scraper_fetch(scr->targets[i], "/metrics", body, sizeof body) <
            0)
            continue;
        if ((p = strstr(body, k_loop)) != NULL)
            loop_s = atof(p + sizeof k_loop - 1);
        if ((p = strstr(body, k_reqs)) != NULL)
            reqs = atof(p + sizeof k_reqs - 1);
        printf("rep %d: node %d's loop spent %.1f us per HTTP request (%.0f "
               "requests)\n",
               rep + 1, i + 1, reqs > 0 ? loop_s * 1e6 / reqs : 0.0, reqs);
    }
}

/* What the window cost on the wire: every node's egress (the leader's
 * replication, followers' answers and pings) per checkpoint committed.
 * Run once more with --cluster-extra 'compress = off' for the figure
 * without compression. */
static void ol_wire_line(int rep, const struct cb_ol *c,
                         const struct window *x, int li)
{
    uint64_t wire = 0;
    double ck = x->ckpts ? (double)x->ckpts : 1;

    for (int i = 0; i < c->o.n; i++)
        wire += x->v1[i].wire_out - x->v0[i].wire_out;
    printf("rep %d: outlast wire: %.0f B on the wire per checkpoint "
           "committed (all nodes' egress; the leader's %.0f B)\n",
           rep + 1, (double)wire / ck,
           (double)(x->v1[li].wire_out - x->v0[li].wire_out) / ck);
}

/* Each node's line, and the cell's rate, cpu and latency from them. */
static void ol_node_lines(const struct cb_ol *c, const struct window *x,
                          struct cell *out)
{
    for (int i = 0; i < c->o.n; i++) {
        const struct cb_ol_status *s0 = &x->s0[i], *s1 = &x->s1[i];
        double dt = (double)(s1->t_us - s0->t_us) / 1e6;
        double r = (double)(s1->checkpoints - s0->checkpoints) / dt;
        double ncpu = (s1->cpu_s - s0->cpu_s) / dt;

        out->rate += r;
        out->cpu += ncpu;
        /* Only nodes whose agents committed in the window have a
         * latency; the largest of the nodes' quantiles bounds the pooled
         * quantile from above. */
        if (s1->samples > 0) {
            if ((double)s1->p50_us > out->p50)
                out->p50 = (double)s1->p50_us;
            if ((double)s1->p99_us > out->p99)
                out->p99 = (double)s1->p99_us;
        }
        printf("         n%d %-10s %9.0f %8" PRIu64 " %8" PRIu64 " %8" PRIu64
               " %8" PRIu64 " %6" PRIu64 " %5.2f\n",
               i + 1, s1->leader ? "(leader)" : "", r, s1->p50_us,
               s1->p99_us, s1->max_us, s1->samples, s1->agents_local, ncpu);
    }
}

void cluster_run_outlast(const struct opts *o, const struct row *w, int rep,
                         int scraped, struct cell *out)
{
    struct scraper scr;
    struct window x;
    struct cb_ol c;
    double spawn_s, ready_s;
    int li;

    memset(out, 0, sizeof *out);
    memset(&scr, 0, sizeof scr);
    memset(&x, 0, sizeof x);
    if ((li = ol_start(o, scraped, &c, &scr)) < 0 ||
        ol_spawn(o, w, &c, li, &spawn_s, &ready_s) != 0 ||
        ol_window(o, &c, &x, out) != 0 || cb_ol_dead(&c) >= 0)
        goto out;
    ol_scrape_report(rep, &scr, out);
    out->elections = x.v1[li].term - x.v0[li].term;
    out->entries = x.v1[li].commit_index - x.v0[li].commit_index;
    out->lease_lost = (uint64_t)(x.lost1 - x.lost0);
    if (scraped)
        printf("rep %d: outlast scraped: %" PRIu64 " scrapes of /metrics "
               "and /api/status on %d nodes (%" PRIu64 " failed), mean %.2f "
               "ms\n",
               rep + 1, out->scrapes, scr.n_targets, out->scrape_failed,
               out->scrape_ms);
    printf("rep %d: outlast %-13s spawn %.1f s, all committed %.1f s "
           "later; in the window: %" PRIu64 " election(s), %" PRIu64
           " lease loss(es), %" PRIu64 " raft entries (%.1f checkpoints "
           "each), %" PRIu64 " snapshot(s); per node (ckpt/s p50_us p99_us "
           "max_us samples agents cpu):\n",
           rep + 1, w->label, spawn_s, ready_s, out->elections,
           out->lease_lost, out->entries,
           out->entries ? (double)x.ckpts / (double)out->entries : 0.0,
           out->snapshots);
    ol_node_lines(&c, &x, out);
    ol_wire_line(rep, &c, &x, li);
    out->ok = 1;
out:
    scraper_stop(&scr);
    if (!out->ok)
        fprintf(stderr, "bench: outlast %s rep %d failed (OL_KEEP_TMP=1 "
                        "keeps the logs)\n",
                w->label, rep + 1);
    cb_ol_destroy(&c);
}
