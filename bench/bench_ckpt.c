/*
 * bench_ckpt: checkpoint commit throughput and latency on one node, with
 * its anchor beside it.
 *
 * For each (agents, state size) a fresh node in a fresh directory hosts
 * that many benchload agents, each stepping as fast as its checkpoints
 * commit.  After every agent has committed once and a warm-up, a fixed
 * window measures checkpoints committed per second and the commit latency
 * (propose to durable) from the node's own histogram.  Then, in the same
 * process and on the same filesystem, raw SQLite at the same durability
 * (WAL, synchronous=FULL) inserts rows of the node's checkpoint shape and
 * measured average body size: in transactions of the node's average batch
 * size (throughput), and one row per transaction (latency).  The ratios
 * node / raw are the figures that matter; absolute numbers move with the
 * machine.
 *
 * Each repetition runs in a forked child, so every node starts from a
 * clean process (the runtime keeps some per-process state) and a crash in
 * one configuration does not take the table down.  The table reports the
 * median of the repetitions; each ratio is the median of the per-repetition
 * ratios, since node and anchor of one repetition ran side by side.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "anchor.h"
#include "bench_ckpt.h"
#include "bench_util.h"
#include "base/hist.h"

/* ---- the anchor: raw SQLite at the same durability ---- */

static int run_raw(const struct opts *o, uint32_t agents, const char *dir,
                   struct result *r)
{
    struct anchor a;
    struct anchor_run run;
    struct ol__hist h;
    char path[PATH_MAX];
    uint32_t body = r->body_avg > 0 ? (uint32_t)(r->body_avg + 0.5) : 1;
    int rv;

    snprintf(path, sizeof path, "%s/raw.db", dir);
    rv = anchor_open(&a, path, agents, body);
    /* (a) Throughput: transactions of the node's average batch size, at
     * least eight, as the node's window holds at least eight batches.  A
     * warm-up as long as the node's comes first: until the WAL has been
     * checkpointed and restarted once, every commit also grows the file,
     * which costs a journal commit that a long-running database (like the
     * node's at the end of its warm-up) no longer pays. */
    r->raw_batch = r->avg_batch >= 1 ? (uint32_t)(r->avg_batch + 0.5) : 1;
    if (rv == 0)
        rv = anchor_insert(&a, r->raw_batch, o->warmup_ms, 1, NULL, &run);
    if (rv == 0)
        rv = anchor_insert(&a, r->raw_batch, o->window_ms, 8, NULL, &run);
    if (rv == 0) {
        r->raw_rows_per_s = run.rows_per_s;
        r->raw_cpu = run.cpu;
    }
    /* (b) Latency: one durable row per transaction, on the warmed-up
     * database. */
    ol__hist_reset(&h);
    if (rv == 0)
        rv = anchor_insert(&a, 1, 0, o->singles, &h, &run);
    if (rv == 0) {
        r->raw_p50_us = ol__hist_quantile(&h, 0.50);
        r->raw_p99_us = ol__hist_quantile(&h, 0.99);
        r->raw_mean_us = h.sum_us / h.count;
    } else if (r->err[0] == '\0') {
        snprintf(r->err, sizeof r->err, "%s", a.errmsg);
    }
    anchor_close(&a);
    return rv;
}

/* ---- one repetition ---- */

static void run_one(const struct opts *o, uint32_t agents, uint32_t size,
                    struct result *r)
{
    char dir[PATH_MAX], data[PATH_MAX];

    memset(r, 0, sizeof *r);
    if (bu_tmpdir(dir, sizeof dir) != 0) {
        snprintf(r->err, sizeof r->err, "temp dir: %s", strerror(errno));
        return;
    }
    snprintf(data, sizeof data, "%s/node", dir);
    if (ckpt_run_node(o, agents, size, data, r) == 0 &&
        (o->node_only || run_raw(o, agents, dir, r) == 0))
        r->ok = 1;
    bu_rmrf(dir);
}

struct one_arg {
    const struct opts *o;
    uint32_t agents, size;
};

static void run_one_cb(void *arg, void *out)
{
    const struct one_arg *a = arg;

    run_one(a->o, a->agents, a->size, out);
}

static int run_forked(const struct opts *o, uint32_t agents, uint32_t size,
                      struct result *r)
{
    struct one_arg a = {o, agents, size};

    memset(r, 0, sizeof *r);
    if (!o->fork) {
        run_one(o, agents, size, r);
        return 0;
    }
    if (bu_fork_call(run_one_cb, &a, r, sizeof *r) != 0) {
        memset(r, 0, sizeof *r);
        snprintf(r->err, sizeof r->err, "child died");
    }
    return 0;
}

/* ---- report ---- */

static double med_at(const struct result *rs, uint32_t n, size_t off,
                     int is_u64)
{
    double v[MAX_REPS];
    uint32_t k = 0;

    for (uint32_t i = 0; i < n; i++) {
        const char *p = (const char *)&rs[i] + off;

        if (!rs[i].ok)
            continue;
        if (is_u64) {
            uint64_t u;

            memcpy(&u, p, sizeof u);
            v[k++] = (double)u;
        } else {
            memcpy(&v[k++], p, sizeof(double));
        }
    }
    return bu_median(v, k);
}

#define MED_D(field) med_at(rs, n, offsetof(struct result, field), 0)
#define MED_U(field) med_at(rs, n, offsetof(struct result, field), 1)

static double ratio_med(const struct result *rs, uint32_t n, int lat)
{
    double v[MAX_REPS];
    uint32_t k = 0;

    for (uint32_t i = 0; i < n; i++) {
        const struct result *r = &rs[i];

        if (!r->ok)
            continue;
        if (lat && r->raw_p50_us)
            v[k++] = (double)r->p50_us / (double)r->raw_p50_us;
        else if (!lat && r->raw_rows_per_s > 0)
            v[k++] = r->ckpt_per_s / r->raw_rows_per_s;
    }
    return bu_median(v, k);
}

/* One line of the table. */
struct figs {
    double body, ckpt_s, batch, raw_s, ratio;
    double p50, p99, raw_p50, raw_p99, lat, cpu, raw_cpu;
};

static void print_header(const char *lead)
{
    printf("%s%-7s %-6s %-6s %10s %7s %11s %6s %8s %8s %10s %10s %7s %5s "
           "%5s\n",
           lead, "agents", "state", "body", "ckpt/s", "batch", "raw_rows/s",
           "ratio", "p50_us", "p99_us", "raw_p50_us", "raw_p99_us", "lat_rt",
           "cpu", "rcpu");
}

/* lat_rt is shown for one agent only: with more, a commit's latency is
 * mostly the wait for the batch ahead of it, which is the point of group
 * commit, not overhead. */
static void print_row(const char *lead, uint32_t agents, uint32_t size,
                      const struct figs *f)
{
    char lat[16];

    if (agents == 1)
        snprintf(lat, sizeof lat, "%.2f", f->lat);
    else
        snprintf(lat, sizeof lat, "-");
    printf("%s%-7u %-6u %-6.0f %10.0f %7.1f %11.0f %6.2f %8.0f %8.0f %10.0f "
           "%10.0f %7s %5.2f %5.2f\n",
           lead, agents, size, f->body, f->ckpt_s, f->batch, f->raw_s,
           f->ratio, f->p50, f->p99, f->raw_p50, f->raw_p99, lat, f->cpu,
           f->raw_cpu);
}

static void print_rep(uint32_t agents, uint32_t size, uint32_t rep,
                      const struct result *r)
{
    struct figs f;
    char lead[32];

    if (!r->ok) {
        printf("# rep %u agents %u state %u FAILED: %s\n", rep, agents,
               size, r->err);
        return;
    }
    f.body = r->body_avg;
    f.ckpt_s = r->ckpt_per_s;
    f.batch = r->avg_batch;
    f.raw_s = r->raw_rows_per_s;
    f.ratio = r->raw_rows_per_s > 0 ? r->ckpt_per_s / r->raw_rows_per_s : 0;
    f.p50 = (double)r->p50_us;
    f.p99 = (double)r->p99_us;
    f.raw_p50 = (double)r->raw_p50_us;
    f.raw_p99 = (double)r->raw_p99_us;
    f.lat = r->raw_p50_us ? (double)r->p50_us / (double)r->raw_p50_us : 0;
    f.cpu = r->cpu;
    f.raw_cpu = r->raw_cpu;
    snprintf(lead, sizeof lead, "# rep %u: ", rep);
    print_row(lead, agents, size, &f);
    printf("#        mean commit %" PRIu64 " us, raw mean %" PRIu64
           " us; %u batches in %.1f s; setup %.2f s, drain %.2f s\n",
           r->mean_us, r->raw_mean_us, r->batches, r->window_s, r->setup_s,
           r->drain_s);
    fflush(stdout);
}

/* ---- arguments ---- */

static int parse_list(const char *s, uint32_t *out, uint32_t *n)
{
    char *end;

    *n = 0;
    while (*s && *n < MAX_LIST) {
        unsigned long v = strtoul(s, &end, 10);

        if (end == s || v == 0 || v > 1000000)
            return -1;
        out[(*n)++] = (uint32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return *n ? 0 : -1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_ckpt [--agents 1,100,10000] [--sizes "
            "256,1024,16384]\n"
            "                  [--reps 3] [--warmup-ms 1000] [--window-ms "
            "3000]\n"
            "                  [--singles 300] [--plugin-dir DIR] "
            "[--no-fork]\n"
            "                  [--node-only] [--scrape-compare] "
            "[--scrape-ms 1000]\n"
            "                  [--isolation process|none]\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    const struct bu_num_opt nums[] = {
        {"--reps", &o->reps},
        {"--warmup-ms", &o->warmup_ms},
        {"--window-ms", &o->window_ms},
        {"--singles", &o->singles},
        {"--scrape-ms", &o->scrape_ms},
        {NULL, NULL},
    };

    memset(o, 0, sizeof *o);
    o->agents[0] = 1, o->agents[1] = 100, o->agents[2] = 10000;
    o->n_agents = 3;
    o->sizes[0] = 256, o->sizes[1] = 1024, o->sizes[2] = 16384;
    o->n_sizes = 3;
    o->reps = 3;
    o->warmup_ms = 1000;
    o->window_ms = 3000;
    o->singles = 300;
    o->fork = 1;
    o->scrape_ms = 1000;
    bu_exe_dir(o->plugin_dir, sizeof o->plugin_dir);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int rv;

        if (strcmp(a, "--no-fork") == 0) {
            o->fork = 0;
            continue;
        }
        if (strcmp(a, "--node-only") == 0) {
            o->node_only = 1;
            continue;
        }
        if (strcmp(a, "--scrape-compare") == 0) {
            /* The anchor is the same node unscraped: no raw SQLite. */
            o->scrape_compare = 1;
            o->node_only = 1;
            continue;
        }
        if ((rv = bu_arg_value(argc, argv, i, usage, &v)) > 0)
            exit(0);
        if (rv < 0)
            return -1;
        i++;
        if (strcmp(a, "--agents") == 0) {
            if (parse_list(v, o->agents, &o->n_agents))
                return -1;
        } else if (strcmp(a, "--sizes") == 0) {
            if (parse_list(v, o->sizes, &o->n_sizes))
                return -1;
        } else if (bu_num_opt(nums, a, v)) {
            /* Each was valid before this option: check them all. */
            if (o->reps == 0 || o->reps > MAX_REPS || o->window_ms == 0 ||
                o->singles == 0 || o->scrape_ms == 0)
                return -1;
        } else if (strcmp(a, "--plugin-dir") == 0) {
            snprintf(o->plugin_dir, sizeof o->plugin_dir, "%s", v);
        } else if (strcmp(a, "--isolation") == 0) {
            if (strcmp(v, "process") == 0)
                o->isolation = OL_ISO_PROCESS;
            else if (strcmp(v, "none") == 0)
                o->isolation = OL_ISO_NODE;
            else
                return -1;
        } else {
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

/* ---- scraping: the same node with and without its HTTP endpoint
 * scraped ---- */

static double ratio_of(const struct result *on, const struct result *off,
                       uint32_t n, int what)
{
    double v[MAX_REPS];
    uint32_t k = 0;

    for (uint32_t i = 0; i < n; i++) {
        double a, b;

        if (!on[i].ok || !off[i].ok)
            continue;
        a = what == 0 ? on[i].ckpt_per_s
            : what == 1 ? (double)on[i].p50_us
                        : (double)on[i].p99_us;
        b = what == 0 ? off[i].ckpt_per_s
            : what == 1 ? (double)off[i].p50_us
                        : (double)off[i].p99_us;
        if (b > 0)
            v[k++] = a / b;
    }
    return bu_median(v, k);
}

/* The results of one matrix: [agents][size][repetition]. */
typedef struct result matrix[MAX_LIST][MAX_LIST][MAX_REPS];

/* One repetition's line of --scrape-compare. */
static void print_scrape_rep(uint32_t rep, uint32_t agents, uint32_t size,
                             int scraped, const struct result *r)
{
    if (!r->ok) {
        printf("# rep %u agents %u state %u %s FAILED: %s\n", rep, agents,
               size, scraped ? "scraped" : "alone", r->err);
        return;
    }
    printf("# rep %u: %-7u %-6u %-8s %10.0f ckpt/s  p50 %6" PRIu64
           " us  p99 %7" PRIu64 " us  cpu %.2f",
           rep, agents, size, scraped ? "scraped" : "alone", r->ckpt_per_s,
           r->p50_us, r->p99_us, r->cpu);
    if (scraped)
        printf("  (%" PRIu64 " scrapes, %" PRIu64
               " failed, mean %.2f ms, max %.2f ms, %.0f KiB "
               "each; the loop spent %.1f us per request)",
               r->scrapes, r->scrape_failed, r->scrape_mean_ms,
               r->scrape_max_ms,
               r->scrapes ? (double)r->scrape_bytes / 1024 /
                                (double)r->scrapes
                          : 0.0,
               r->http_jobs ? (double)r->http_loop_us / (double)r->http_jobs
                            : 0.0);
    printf("\n");
    fflush(stdout);
}

/* Every configuration twice per repetition, alone into `off` and scraped
 * into `on`. */
static void scrape_runs(struct opts *o, matrix off, matrix on)
{
    for (uint32_t rep = 0; rep < o->reps; rep++)
        for (uint32_t ai = 0; ai < o->n_agents; ai++)
            for (uint32_t si = 0; si < o->n_sizes; si++)
                for (int k = 0; k < 2; k++) {
                    /* Alternate which runs first, so drift on a shared
                     * machine favours neither. */
                    int scraped = (k + (int)rep) % 2;
                    struct result *r = scraped ? &on[ai][si][rep]
                                               : &off[ai][si][rep];

                    o->scrape = scraped;
                    if (run_forked(o, o->agents[ai], o->sizes[si], r) != 0)
                        snprintf(r->err, sizeof r->err, "fork: %s",
                                 strerror(errno));
                    print_scrape_rep(rep + 1, o->agents[ai], o->sizes[si],
                                     scraped, r);
                }
}

/* The medians table of --scrape-compare; 1 if a configuration has no
 * throughput ratio. */
static int scrape_table(const struct opts *o, matrix off, matrix on)
{
    int failed = 0;

    printf("\n# medians; *_x = scraped / alone, the median of the "
           "per-repetition ratios\n");
    printf("%-7s %-6s %11s %11s %6s %8s %8s %6s %8s %8s %6s\n", "agents",
           "state", "alone/s", "scraped/s", "thr_x", "p50", "p50_scr",
           "p50_x", "p99", "p99_scr", "p99_x");
    for (uint32_t ai = 0; ai < o->n_agents; ai++)
        for (uint32_t si = 0; si < o->n_sizes; si++) {
            const struct result *a = off[ai][si], *b = on[ai][si];
            double thr = ratio_of(b, a, o->reps, 0);
            double p50 = ratio_of(b, a, o->reps, 1);
            double p99 = ratio_of(b, a, o->reps, 2);
            const struct result *rs;
            uint32_t n = o->reps;
            double a_s, b_s, a50, b50, a99, b99;

            rs = a;
            a_s = MED_D(ckpt_per_s);
            a50 = MED_U(p50_us);
            a99 = MED_U(p99_us);
            rs = b;
            b_s = MED_D(ckpt_per_s);
            b50 = MED_U(p50_us);
            b99 = MED_U(p99_us);
            printf("%-7u %-6u %11.0f %11.0f %6.3f %8.0f %8.0f %6.3f %8.0f "
                   "%8.0f %6.3f\n",
                   o->agents[ai], o->sizes[si], a_s, b_s, thr, a50, b50, p50,
                   a99, b99, p99);
            if (thr == 0)
                failed = 1;
            printf("# target: %u agents, %u B: throughput %.3fx and p50 "
                   "%.3fx of the unscraped node (within 5%%: >= 0.95, <= "
                   "1.05): %s\n",
                   o->agents[ai], o->sizes[si], thr, p50,
                   thr >= 0.95 && p50 <= 1.05 ? "met" : "MISSED");
        }
    return failed;
}

static int scrape_compare(struct opts *o)
{
    static matrix off, on;

    printf("# bench_ckpt --scrape-compare: each repetition runs the node "
           "twice, alone (the anchor) and with its HTTP endpoint serving "
           "/metrics and /api/status every %u ms; %u rep(s), window %u ms\n",
           o->scrape_ms, o->reps, o->window_ms);
    scrape_runs(o, off, on);
    return scrape_table(o, off, on);
}

/* ---- the main matrix: the node beside raw SQLite ---- */

/* Repetitions go round the whole matrix, so slow drift on a shared
 * machine spreads over every configuration instead of one. */
static void matrix_runs(const struct opts *o, matrix all)
{
    for (uint32_t rep = 0; rep < o->reps; rep++)
        for (uint32_t ai = 0; ai < o->n_agents; ai++)
            for (uint32_t si = 0; si < o->n_sizes; si++) {
                struct result *r = &all[ai][si][rep];

                if (run_forked(o, o->agents[ai], o->sizes[si], r) != 0)
                    snprintf(r->err, sizeof r->err, "fork: %s",
                             strerror(errno));
                print_rep(o->agents[ai], o->sizes[si], rep + 1, r);
            }
}

/* A table line: the medians of n repetitions of one configuration. */
static void median_figs(const struct result *rs, uint32_t n, struct figs *f)
{
    f->body = MED_D(body_avg);
    f->ckpt_s = MED_D(ckpt_per_s);
    f->batch = MED_D(avg_batch);
    f->raw_s = MED_D(raw_rows_per_s);
    f->ratio = ratio_med(rs, n, 0);
    f->p50 = MED_U(p50_us);
    f->p99 = MED_U(p99_us);
    f->raw_p50 = MED_U(raw_p50_us);
    f->raw_p99 = MED_U(raw_p99_us);
    f->lat = ratio_med(rs, n, 1);
    f->cpu = MED_D(cpu);
    f->raw_cpu = MED_D(raw_cpu);
}

/* The medians table, then the targets; 1 if a configuration failed in
 * every repetition. */
static int matrix_table(const struct opts *o, matrix all)
{
    struct bu_targets tg = {.n = 0};
    struct figs f;
    int failed = 0;

    printf("\n# medians of %u repetitions; ratio = ckpt/s / raw_rows/s, "
           "lat_rt = p50_us / raw_p50_us (median of per-rep ratios)\n",
           o->reps);
    print_header("");
    for (uint32_t ai = 0; ai < o->n_agents; ai++)
        for (uint32_t si = 0; si < o->n_sizes; si++) {
            const struct result *rs = all[ai][si];
            uint32_t ok = 0;

            for (uint32_t i = 0; i < o->reps; i++)
                ok += rs[i].ok;
            if (ok == 0) {
                printf("%-7u %-6u all repetitions failed\n", o->agents[ai],
                       o->sizes[si]);
                failed = 1;
                continue;
            }
            median_figs(rs, o->reps, &f);
            print_row("", o->agents[ai], o->sizes[si], &f);
            if (o->agents[ai] >= 10000)
                bu_target(&tg,
                          "throughput, %u agents, %u B: %.2fx raw batched "
                          "(target >= 0.80): %s",
                          o->agents[ai], o->sizes[si], f.ratio,
                          f.ratio >= 0.8 ? "met" : "MISSED");
            if (o->agents[ai] == 1)
                bu_target(&tg,
                          "latency, 1 agent, %u B: p50 %.2fx raw single-row "
                          "(target <= 1.50): %s",
                          o->sizes[si], f.lat, f.lat <= 1.5 ? "met" : "MISSED");
        }
    bu_targets_print(&tg);
    return failed;
}

int main(int argc, char **argv)
{
    static matrix all;
    struct opts o;

    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr, "bench_ckpt: bad arguments\n");
        return 2;
    }
    if (o.scrape_compare)
        return scrape_compare(&o);
    printf("# bench_ckpt: %u rep(s), warm-up %u ms, window %u ms, "
           "%u single-row inserts; plugins from %s\n",
           o.reps, o.warmup_ms, o.window_ms, o.singles, o.plugin_dir);
    printf("# node: single node, WAL + synchronous=FULL, every_steps=1, "
           "agents %s; anchor: raw SQLite, same pragmas, same filesystem, "
           "same process\n",
           o.isolation == OL_ISO_NODE ? "in the node (isolation = none)"
                                      : "in an agent-host process");
    print_header("# rep N: ");
    matrix_runs(&o, all);
    return matrix_table(&o, all);
}
