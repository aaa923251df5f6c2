/*
 * bench_isolation: what running agents in an agent-host process costs,
 * beside the same node running them in its own process (the anchor).
 *
 * For each number of agents, a fresh single node hosts that many benchload
 * agents, each stepping as fast as its checkpoints commit, once with the
 * plugin in an agent-host process (the default) and once inside the node
 * (isolation = none); repetitions alternate the two so drift on a shared
 * machine falls on both.  The figures are the node's own: checkpoints
 * committed per second over whole group commits, and the commit latency
 * (propose to durable) from its histogram.  The targets: isolated commit
 * throughput at least 0.8x in-process with 10,000 agents, and a single
 * agent's commit p50 at most 50 us above in-process.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_ckpt.h"
#include "bench_util.h"

struct run_arg {
    const struct opts *o;
    uint32_t agents, size;
};

static void run_cb(void *arg, void *out)
{
    const struct run_arg *a = arg;
    struct result *r = out;
    char dir[PATH_MAX], data[PATH_MAX];

    if (bu_tmpdir(dir, sizeof dir) != 0) {
        snprintf(r->err, sizeof r->err, "temp dir: %s", strerror(errno));
        return;
    }
    snprintf(data, sizeof data, "%s/node", dir);
    if (ckpt_run_node(a->o, a->agents, a->size, data, r) == 0)
        r->ok = 1;
    bu_rmrf(dir);
}

struct figs {
    double ckpt_s, p50, p99, cpu, batch;
    uint32_t ok;
};

static void medians(const struct result *rs, uint32_t n, struct figs *f)
{
    double a[MAX_REPS], b[MAX_REPS], c[MAX_REPS], d[MAX_REPS], e[MAX_REPS];
    uint32_t k = 0;

    for (uint32_t i = 0; i < n; i++) {
        if (!rs[i].ok)
            continue;
        a[k] = rs[i].ckpt_per_s;
        b[k] = (double)rs[i].p50_us;
        c[k] = (double)rs[i].p99_us;
        d[k] = rs[i].cpu;
        e[k] = rs[i].avg_batch;
        k++;
    }
    f->ok = k;
    f->ckpt_s = bu_median(a, k);
    f->p50 = bu_median(b, k);
    f->p99 = bu_median(c, k);
    f->cpu = bu_median(d, k);
    f->batch = bu_median(e, k);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_isolation [--agents 1,10000] [--size 1024] "
               "[--reps 3]\n"
               "                       [--warmup-ms 1000] [--window-ms "
               "3000] [--plugin-dir DIR]\n");
}

static const char *const mode[2] = {"in-process", "isolated"};

/* bench_ckpt's options plus the agent counts and the one state size. */
struct iso_opts {
    struct opts o;
    uint32_t agents[MAX_LIST], n_agents, size;
};

/* [agents][mode][repetition]; mode 0 is in-process, 1 isolated. */
typedef struct result matrix[MAX_LIST][2][MAX_REPS];

/* "1,10000" into agents; stops at the first thing that is not a number. */
static void parse_agents(const char *v, struct iso_opts *io)
{
    const char *p = v;
    char *end;

    io->n_agents = 0;
    while (*p && io->n_agents < MAX_LIST) {
        io->agents[io->n_agents++] = (uint32_t)strtoul(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p)
            break;
    }
}

/* 0 to run, or the exit status: 0 after --help, 2 for bad arguments. */
static int parse_args(int argc, char **argv, struct iso_opts *io, int *run)
{
    struct opts *o = &io->o;
    const struct bu_num_opt nums[] = {
        {"--size", &io->size},
        {"--reps", &o->reps},
        {"--warmup-ms", &o->warmup_ms},
        {"--window-ms", &o->window_ms},
        {NULL, NULL},
    };

    memset(io, 0, sizeof *io);
    io->agents[0] = 1, io->agents[1] = 10000;
    io->n_agents = 2;
    io->size = 1024;
    o->reps = 3;
    o->warmup_ms = 1000;
    o->window_ms = 3000;
    o->fork = 1;
    o->node_only = 1;
    bu_exe_dir(o->plugin_dir, sizeof o->plugin_dir);
    *run = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int rv = bu_arg_value(argc, argv, i, usage, &v);

        if (rv != 0)
            return rv > 0 ? 0 : 2;
        i++;
        if (strcmp(a, "--agents") == 0) {
            parse_agents(v, io);
        } else if (bu_num_opt(nums, a, v)) {
            if (o->reps == 0 || o->reps > MAX_REPS)
                return 2;
        } else if (strcmp(a, "--plugin-dir") == 0) {
            snprintf(o->plugin_dir, sizeof o->plugin_dir, "%s", v);
        } else {
            usage(stderr);
            return 2;
        }
    }
    *run = 1;
    return 0;
}

/* Every repetition runs each agent count in-process, then isolated. */
static void run_all(struct iso_opts *io, matrix all)
{
    struct opts *o = &io->o;

    for (uint32_t rep = 0; rep < o->reps; rep++)
        for (uint32_t ai = 0; ai < io->n_agents; ai++)
            for (int m = 0; m < 2; m++) {
                struct result *r = &all[ai][m][rep];
                struct run_arg ra = {o, io->agents[ai], io->size};

                o->isolation = m == 0 ? OL_ISO_NODE : OL_ISO_PROCESS;
                memset(r, 0, sizeof *r);
                if (bu_fork_call(run_cb, &ra, r, sizeof *r) != 0)
                    snprintf(r->err, sizeof r->err, "child died");
                if (!r->ok)
                    printf("# rep %u %u agents %s FAILED: %s\n", rep + 1,
                           io->agents[ai], mode[m], r->err);
                else
                    printf("# rep %u: %-6u %-10s %10.0f ckpt/s  p50 %6" PRIu64
                           " us  p99 %7" PRIu64 " us  batch %7.1f  cpu "
                           "%.2f\n",
                           rep + 1, io->agents[ai], mode[m], r->ckpt_per_s,
                           r->p50_us, r->p99_us, r->avg_batch, r->cpu);
                fflush(stdout);
            }
}

/* The lines of one agent count: each mode's medians, then isolated over
 * in-process.  0 when both modes have figures (in f). */
static int table_rows(uint32_t agents, const struct result *in_process,
                      const struct result *isolated, uint32_t reps,
                      struct figs f[2])
{
    const struct result *rs[2] = {in_process, isolated};
    int failed = 0;

    for (int m = 0; m < 2; m++) {
        medians(rs[m], reps, &f[m]);
        if (f[m].ok == 0) {
            printf("%-7u %-11s all repetitions failed\n", agents, mode[m]);
            failed = 1;
            continue;
        }
        printf("%-7u %-11s %10.0f %8.1f %8.0f %8.0f %5.2f\n", agents,
               mode[m], f[m].ckpt_s, f[m].batch, f[m].p50, f[m].p99,
               f[m].cpu);
    }
    if (f[0].ok == 0 || f[1].ok == 0)
        return failed;
    printf("%-7u %-11s %9.2fx %8s %+7.0f  %+7.0f\n", agents, "isolated/in",
           f[1].ckpt_s / f[0].ckpt_s, "", f[1].p50 - f[0].p50,
           f[1].p99 - f[0].p99);
    return 0;
}

/* The medians table, then the targets; 1 if a mode failed in every
 * repetition. */
static int table(const struct iso_opts *io, matrix all)
{
    struct bu_targets tg = {.n = 0};
    int failed = 0;

    printf("\n# medians of %u repetitions; cpu is the node's own process "
           "(the agent host's is not in it)\n",
           io->o.reps);
    printf("%-7s %-11s %10s %8s %8s %8s %5s\n", "agents", "mode", "ckpt/s",
           "batch", "p50_us", "p99_us", "cpu");
    for (uint32_t ai = 0; ai < io->n_agents; ai++) {
        uint32_t n = io->agents[ai];
        struct figs f[2];

        if (table_rows(n, all[ai][0], all[ai][1], io->o.reps, f) != 0) {
            failed = 1;
            continue;
        }
        if (n >= 10000)
            bu_target(&tg,
                      "throughput, %u agents: isolated %.2fx in-process "
                      "(target >= 0.80): %s",
                      n, f[1].ckpt_s / f[0].ckpt_s,
                      f[1].ckpt_s >= 0.8 * f[0].ckpt_s ? "met" : "MISSED");
        if (n == 1)
            bu_target(&tg,
                      "latency, 1 agent: isolated p50 %+.0f us over "
                      "in-process (target <= +50): %s",
                      f[1].p50 - f[0].p50,
                      f[1].p50 - f[0].p50 <= 50 ? "met" : "MISSED");
    }
    bu_targets_print(&tg);
    return failed;
}

int main(int argc, char **argv)
{
    static matrix all;
    struct iso_opts io;
    int rv, run;

    rv = parse_args(argc, argv, &io, &run);
    if (!run)
        return rv;
    printf("# bench_isolation: %u rep(s), warm-up %u ms, window %u ms, "
           "state %u B; single node, WAL + synchronous=FULL, "
           "every_steps=1\n",
           io.o.reps, io.o.warmup_ms, io.o.window_ms, io.size);
    printf("# anchor: the same node with the plugin inside it "
           "(isolation = none)\n");
    run_all(&io, all);
    return table(&io, all);
}
