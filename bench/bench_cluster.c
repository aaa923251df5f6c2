/*
 * bench_cluster: replicated checkpoint throughput and commit latency of a
 * 3-node outlast cluster, beside a 3-member etcd cluster doing 1 KiB puts
 * at the same concurrency, in the same run.
 *
 * outlast: for each agent count N and repetition, a fresh 3-node cluster
 * on loopback (election 300 ms, heartbeat 50 ms, failover_ms 600, fresh
 * keys and directories, `bootstrap = true`) gets N benchload agents with
 * 1 KiB states, spawned through the leader's control socket with up to 16
 * spawns in flight (the control socket's listen backlog); the leader
 * places them over the three nodes.  The agents take their START
 * checkpoint at once and start stepping together once all are spawned;
 * each then steps as fast as its checkpoints commit, so N checkpoints are
 * in flight.  After a warm-up each node answers `status {reset: true}`,
 * and after the window `status` again.  Throughput is the sum over the
 * nodes of (checkpoints committed by the node's own agents in its window)
 * / (its window).  Latency is each node's commit histogram (propose ->
 * committed, as the owner node sees it) over its window; the combined p50
 * and p99 are the largest of the nodes' values, an upper bound of the
 * quantile of all samples pooled.
 *
 * A single agent runs twice, since where it runs matters: on the leader,
 * and on a follower (3 are spawned, one per node, and the two others are
 * stopped before the agents start stepping).
 *
 * etcd: for the same N, a fresh 3-member cluster with the same raft
 * timing gets N closed-loop clients (bench/etcd_client.mjs, Node's `http`
 * with keep-alive against the v3 JSON gateway), client i putting 1 KiB
 * values under its own key through member i % 3: N puts in flight (one
 * client: through the leader, then through a follower).  The same warm-up
 * and window; latency is send -> response, quantized as outlast's
 * histogram quantizes (the bucket's lower bound).
 *
 * In each repetition outlast and etcd run back to back; the ratios are
 * taken per repetition and the table shows medians.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_cluster.h"
#include "bench_util.h"
#include "cb_etcd.h"
#include "cb_proc.h"

static struct row rows[MAX_CELLS];
static int n_rows;
static struct cell ol_cells[MAX_CELLS][MAX_REPS], et_cells[MAX_CELLS][MAX_REPS];

/* ---- etcd ---- */

static void run_etcd(const struct opts *o, const struct row *w, int rep,
                     struct cell *out)
{
    struct cb_etcd_opts eo;
    struct cb_etcd e;
    json_t *req, *r = NULL;
    double cpu0 = 0, cpu1 = 0, t0, t1, errors;
    uint32_t clients = w->n;
    unsigned mask = 7;
    int li;

    memset(out, 0, sizeof *out);
    if (o->etcd_max_clients && clients > o->etcd_max_clients)
        clients = o->etcd_max_clients;
    cb_etcd_defaults(&eo);
    /* Both systems run with the same raft timing. */
    if (o->election_ms) {
        eo.election_ms = o->election_ms;
        eo.heartbeat_ms = o->heartbeat_ms;
    }
    if (cb_etcd_init(&e, &eo) != 0 || cb_etcd_start(&e, 20000) != 0 ||
        (li = cb_etcd_leader(&e, NULL, NULL)) < 0)
        goto out;
    if (w->place == ON_LEADER)
        mask = 1u << li;
    else if (w->place == ON_FOLLOWER)
        mask = 1u << ((li + 1) % e.o.n);
    req = json_pack("{s:s, s:o, s:i, s:i, s:i, s:i}", "cmd", "load",
                    "endpoints", cb_etcd_urls(&e, mask), "clients",
                    (int)clients, "size", (int)o->size, "warmup_ms",
                    (int)o->warmup_ms, "window_ms", (int)o->window_ms);
    for (int i = 0; i < e.o.n; i++)
        cpu0 += cb_proc_cpu_s(e.m[i].pid);
    t0 = (double)cb_now_ns() / 1e9;
    r = cb_etcd_call(&e, req, (int)(o->warmup_ms + o->window_ms) + 60000);
    t1 = (double)cb_now_ns() / 1e9;
    for (int i = 0; i < e.o.n; i++)
        cpu1 += cb_proc_cpu_s(e.m[i].pid);
    json_decref(req);
    if (r == NULL)
        goto out;
    out->rate = json_number_value(json_object_get(r, "puts_per_s"));
    out->p50 = json_number_value(json_object_get(r, "p50_us"));
    out->p99 = json_number_value(json_object_get(r, "p99_us"));
    out->client_cpu = json_number_value(json_object_get(r, "cpu"));
    out->cpu = (cpu1 - cpu0) / (t1 - t0);
    errors = json_number_value(json_object_get(r, "errors"));
    printf("rep %d: etcd    %-13s %u client(s), %.0f puts/s, p50 %.0f us, "
           "p99 %.0f us (exact %.0f / %.0f), max %.0f us, %.0f samples, "
           "%.0f errors%s%s%s, %.0f connections; cpu: etcd %.2f (warm-up "
           "included), client %.2f\n",
           rep + 1, w->label, clients, out->rate, out->p50, out->p99,
           json_number_value(json_object_get(r, "exact_p50_us")),
           json_number_value(json_object_get(r, "exact_p99_us")),
           json_number_value(json_object_get(r, "max_us")),
           json_number_value(json_object_get(r, "samples")), errors,
           errors > 0 ? " (last: " : "",
           errors > 0 ? json_string_value(json_object_get(r, "last_error"))
                      : "",
           errors > 0 ? ")" : "",
           json_number_value(json_object_get(r, "connections")), out->cpu,
           out->client_cpu);
    out->ok = out->rate > 0;
out:
    json_decref(r);
    if (!out->ok)
        fprintf(stderr, "bench: etcd %s rep %d failed (OL_KEEP_TMP=1 keeps "
                        "the logs)\n",
                w->label, rep + 1);
    cb_etcd_destroy(&e);
}

/* ---- the table ---- */

enum field { F_RATE, F_P50, F_P99, F_CPU, F_GEN };

static double pick(const struct cell *c, enum field f)
{
    switch (f) {
    case F_RATE:
        return c->rate;
    case F_P50:
        return c->p50;
    case F_P99:
        return c->p99;
    case F_CPU:
        return c->cpu;
    case F_GEN:
        return c->client_cpu;
    }
    return 0;
}

static double med(const struct cell *c, int reps, enum field f)
{
    double v[MAX_REPS];
    size_t k = 0;

    for (int r = 0; r < reps; r++)
        if (c[r].ok)
            v[k++] = pick(&c[r], f);
    return cb_median(v, k);
}

static double med_ratio(int a, int reps, enum field f)
{
    double v[MAX_REPS];
    size_t k = 0;

    for (int r = 0; r < reps; r++) {
        const struct cell *x = &ol_cells[a][r], *y = &et_cells[a][r];

        if (x->ok && y->ok && pick(y, f) > 0)
            v[k++] = pick(x, f) / pick(y, f);
    }
    return cb_median(v, k);
}

static void table(const struct opts *o)
{
    printf("\n# medians of %d repetition(s); *_x are medians of the "
           "per-repetition ratios outlast/etcd; latencies in us\n",
           o->reps);
    printf("%-13s %10s %10s %6s %8s %8s %8s %8s %6s %6s %6s %6s %5s\n",
           "agents", "ol_ckpt/s", "etcd_put/s", "thr_x", "ol_p50", "ol_p99",
           "etcd_p50", "etcd_p99", "p50_x", "p99_x", "ol_cpu", "et_cpu",
           "gen");
    for (int a = 0; a < n_rows; a++)
        printf("%-13s %10.0f %10.0f %6.2f %8.0f %8.0f %8.0f %8.0f %6.2f "
               "%6.2f %6.2f %6.2f %5.2f\n",
               rows[a].label, med(ol_cells[a], o->reps, F_RATE),
               med(et_cells[a], o->reps, F_RATE),
               med_ratio(a, o->reps, F_RATE), med(ol_cells[a], o->reps, F_P50),
               med(ol_cells[a], o->reps, F_P99),
               med(et_cells[a], o->reps, F_P50),
               med(et_cells[a], o->reps, F_P99), med_ratio(a, o->reps, F_P50),
               med_ratio(a, o->reps, F_P99), med(ol_cells[a], o->reps, F_CPU),
               med(et_cells[a], o->reps, F_CPU),
               med(et_cells[a], o->reps, F_GEN));
    printf("\n# per repetition: thr_x / p99_x (elections, lease losses in "
           "outlast's window)\n");
    for (int a = 0; a < n_rows; a++) {
        printf("%-13s", rows[a].label);
        for (int r = 0; r < o->reps; r++) {
            const struct cell *x = &ol_cells[a][r], *y = &et_cells[a][r];

            if (x->ok && y->ok)
                printf("  %.2f/%.2f (%" PRIu64 ", %" PRIu64 ")",
                       x->rate / y->rate, x->p99 / y->p99, x->elections,
                       x->lease_lost);
            else
                printf("  -");
        }
        printf("\n");
    }
}

/* With --scrape-compare: ol_cells are the scraped runs, et_cells the
 * same cluster alone. */
static int table_scrape(const struct opts *o)
{
    int missed = 0;

    printf("\n# medians of %d repetition(s); *_x are medians of the "
           "per-repetition ratios scraped/alone; latencies in us\n",
           o->reps);
    printf("%-13s %10s %10s %6s %8s %8s %6s %8s %8s %6s %8s\n", "agents",
           "alone/s", "scraped/s", "thr_x", "p50", "p50_scr", "p50_x", "p99",
           "p99_scr", "p99_x", "scr_ms");
    for (int a = 0; a < n_rows; a++) {
        double thr = med_ratio(a, o->reps, F_RATE),
               p50 = med_ratio(a, o->reps, F_P50);
        double v[MAX_REPS];
        size_t k = 0;

        for (int r = 0; r < o->reps; r++)
            if (ol_cells[a][r].ok)
                v[k++] = ol_cells[a][r].scrape_ms;
        printf("%-13s %10.0f %10.0f %6.3f %8.0f %8.0f %6.3f %8.0f %8.0f "
               "%6.3f %8.2f\n",
               rows[a].label, med(et_cells[a], o->reps, F_RATE),
               med(ol_cells[a], o->reps, F_RATE), thr,
               med(et_cells[a], o->reps, F_P50),
               med(ol_cells[a], o->reps, F_P50), p50,
               med(et_cells[a], o->reps, F_P99),
               med(ol_cells[a], o->reps, F_P99),
               med_ratio(a, o->reps, F_P99), cb_median(v, k));
        printf("# target: %s: throughput %.3fx and p50 %.3fx of the "
               "unscraped cluster (within 5%%: >= 0.95, <= 1.05): %s\n",
               rows[a].label, thr, p50,
               thr >= 0.95 && p50 <= 1.05 ? "met" : "MISSED");
        missed |= thr == 0;
    }
    return missed;
}

static int parse_list(const char *s, uint32_t *out, int cap)
{
    int n = 0;

    while (*s && n < cap) {
        char *end;

        out[n++] = (uint32_t)strtoul(s, &end, 10);
        if (end == s || out[n - 1] == 0)
            return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    const struct bu_num_opt nums[] = {
        {"--size", &o->size},
        {"--warmup-ms", &o->warmup_ms},
        {"--window-ms", &o->window_ms},
        {"--spawn-inflight", &o->inflight},
        {"--spawn-budget-ms", &o->spawn_budget_ms},
        {"--etcd-max-clients", &o->etcd_max_clients},
        {NULL, NULL},
    };

    memset(o, 0, sizeof *o);
    o->agents[0] = 1;
    o->agents[1] = 100;
    o->agents[2] = 10000;
    o->n_agents = 3;
    o->reps = 3;
    o->size = 1024;
    o->warmup_ms = 3000;
    o->window_ms = 5000;
    o->inflight = 16;
    o->do_outlast = o->do_etcd = 1;
    o->log_level = "warn";
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL)
            return -1;
        if (strcmp(a, "--agents") == 0)
            o->n_agents = parse_list(v, o->agents, MAX_CELLS / 2);
        else if (strcmp(a, "--reps") == 0)
            o->reps = atoi(v);
        else if (bu_num_opt(nums, a, v))
            continue;
        else if (strcmp(a, "--log-level") == 0)
            o->log_level = v;
        else if (strcmp(a, "--cluster-extra") == 0)
            o->cluster_extra = v;
        else if (strcmp(a, "--timing") == 0) {
            if (sscanf(v, "%u/%u/%u", &o->election_ms, &o->heartbeat_ms,
                       &o->failover_ms) != 3)
                return -1;
        } else if (strcmp(a, "--scrape-compare") == 0) {
            /* Takes a value for the argument loop's sake: the interval. */
            o->scrape_compare = 1;
            o->scrape_ms = (uint32_t)strtoul(v, NULL, 10);
            if (o->scrape_ms == 0)
                return -1;
        } else if (strcmp(a, "--only") == 0) {
            o->do_outlast = strcmp(v, "outlast") == 0;
            o->do_etcd = strcmp(v, "etcd") == 0;
        } else
            return -1;
    }
    if (o->n_agents <= 0 || o->reps <= 0 || o->reps > MAX_REPS)
        return -1;
    for (int a = 0; a < o->n_agents; a++) {
        struct row *w = &rows[n_rows++];

        w->n = o->agents[a];
        w->place = w->n == 1 ? ON_LEADER : SPREAD;
        snprintf(w->label, sizeof w->label, "%u%s", w->n,
                 w->n == 1 ? " (leader)" : "");
        if (w->n == 1) {
            w = &rows[n_rows++];
            w->n = 1;
            w->place = ON_FOLLOWER;
            snprintf(w->label, sizeof w->label, "1 (follower)");
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *wan = getenv("OL_WAN_SITES");
    struct opts o;
    int bad = 0;

    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr,
                "usage: bench_cluster [--agents 1,100,10000] [--reps 3] "
                "[--size 1024] [--warmup-ms 3000] [--window-ms 5000]\n"
                "       [--spawn-inflight 16] [--spawn-budget-ms MS] "
                "[--etcd-max-clients N] [--only outlast|etcd]\n"
                "       [--log-level warn] [--timing ELECTION/HEARTBEAT/"
                "FAILOVER] [--cluster-extra 'key = value'] (outlast only, "
                "diagnostics)\n");
        return 2;
    }
    cb_cleanup_install();
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# bench_cluster: 3 outlast nodes vs 3 etcd members %s%s; "
           "%u B states/values; warm-up %u ms, window %u ms; %d rep(s)\n",
           wan ? "across the WAN bed's sites " : "on loopback",
           wan ? wan : "", o.size, o.warmup_ms, o.window_ms, o.reps);
    if (o.cluster_extra)
        printf("# outlast [cluster] for diagnostics: %s\n", o.cluster_extra);
    if (o.heartbeat_ms)
        printf("# raft timing for both systems: election %u ms, heartbeat "
               "%u ms (outlast failover %u ms)\n",
               o.election_ms, o.heartbeat_ms, o.failover_ms);
    if (o.scrape_compare) {
        printf("# --scrape-compare: each repetition runs the cluster alone "
               "(the anchor) and with every node's /metrics and /api/status "
               "fetched every %u ms, in alternating order; no etcd\n",
               o.scrape_ms);
        for (int r = 0; r < o.reps; r++)
            for (int a = 0; a < n_rows; a++)
                for (int k = 0; k < 2; k++) {
                    int scraped = (k + r) % 2;
                    struct cell *cl = scraped ? &ol_cells[a][r]
                                              : &et_cells[a][r];

                    cluster_run_outlast(&o, &rows[a], r, scraped, cl);
                    bad |= !cl->ok;
                }
        return table_scrape(&o) | bad;
    }
    for (int r = 0; r < o.reps; r++)
        for (int a = 0; a < n_rows; a++) {
            if (o.do_outlast) {
                cluster_run_outlast(&o, &rows[a], r, 0, &ol_cells[a][r]);
                bad |= !ol_cells[a][r].ok;
            }
            if (o.do_etcd) {
                run_etcd(&o, &rows[a], r, &et_cells[a][r]);
                bad |= !et_cells[a][r].ok;
            }
        }
    table(&o);
    return bad;
}
