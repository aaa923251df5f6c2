/*
 * bench_idle: the memory cost of hosting many idle agents on one node.
 *
 * A fresh node spawns 100,000 benchload agents with `idle: true` (256-byte
 * state; they take the checkpoint of their START step and then wait) and
 * waits until every one has committed that first checkpoint.  It reports
 * the process's resident set (VmRSS) and its peak (VmHWM) beside the
 * anchor: the RSS of the same process with the node started but no agent
 * spawned.  The target is at most 512 MiB for 100,000 agents.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench_util.h"
#include "base/err.h"
#include "base/hist.h"
#include "runtime/node.h"

#define SETUP_LIMIT_MS (600 * 1000)

struct opts {
    uint32_t agents;
    uint32_t size;
    uint32_t chunk;
    uint32_t settle_ms;
    uint32_t limit_mib;
    char plugin_dir[PATH_MAX];
};

enum phase { P_SETUP, P_SETTLE, P_DRAIN };

struct drv {
    uv_loop_t loop;
    struct ol__node node;
    uv_timer_t poll;
    struct bu_spawner sp;
    const struct opts *o;
    int phase;
    uint64_t t_start_us, t_ready_us, t_drain_us;
    long rss_ready_kib, rss_settled_kib, rss_trimmed_kib;
    char err[200];
};

static void stop_driving(struct drv *d, const char *err)
{
    if (err && d->err[0] == '\0')
        snprintf(d->err, sizeof d->err, "%s", err);
    d->phase = P_DRAIN;
    d->t_drain_us = ol__now_us();
    uv_close((uv_handle_t *)&d->poll, NULL);
    ol__node_shutdown(&d->node);
}

static void settle_cb(uv_timer_t *t)
{
    struct drv *d = t->data;

    d->rss_settled_kib = bu_status_kib("VmRSS");
#ifdef __GLIBC__
    /* Diagnostic only: how much of the RSS is heap the allocator keeps
     * after batches are freed, rather than live agent state. */
    malloc_trim(0);
    d->rss_trimmed_kib = bu_status_kib("VmRSS");
#endif
    stop_driving(d, NULL);
}

static void poll_cb(uv_timer_t *t)
{
    struct drv *d = t->data;
    char err[200];
    uint32_t ready;

    if (bu_setup_tick(&d->sp, err, sizeof err) != 0) {
        stop_driving(d, err);
        return;
    }
    if (bu_hosted(&d->node) == d->o->agents &&
        (ready = bu_ready(&d->node)) == d->o->agents) {
        d->t_ready_us = ol__now_us();
        d->rss_ready_kib = bu_status_kib("VmRSS");
        d->phase = P_SETTLE;
        uv_timer_start(&d->poll, settle_cb, d->o->settle_ms, 0);
        return;
    }
    if (ol__now_us() - d->t_start_us > (uint64_t)SETUP_LIMIT_MS * 1000) {
        snprintf(err, sizeof err,
                 "setup: only %u of %u agents committed in %d s",
                 bu_ready(&d->node), d->o->agents, SETUP_LIMIT_MS / 1000);
        stop_driving(d, err);
    }
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    const struct bu_num_opt nums[] = {
        {"--agents", &o->agents},
        {"--size", &o->size},
        {"--chunk", &o->chunk},
        {"--settle-ms", &o->settle_ms},
        {NULL, NULL},
    };

    memset(o, 0, sizeof *o);
    o->agents = 100000;
    o->size = 256;
    o->chunk = 5000;
    o->settle_ms = 1000;
    o->limit_mib = 512;
    bu_exe_dir(o->plugin_dir, sizeof o->plugin_dir);
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (v == NULL)
            return -1;
        if (bu_num_opt(nums, a, v))
            continue;
        if (strcmp(a, "--plugin-dir") == 0)
            snprintf(o->plugin_dir, sizeof o->plugin_dir, "%s", v);
        else
            return -1;
    }
    return o->agents && o->chunk ? 0 : -1;
}

/* Start a node in `data` and drive it until every agent has committed and
 * the RSS settled (or setup failed, with d->err set), then until it has
 * drained.  *rss_base is the RSS with the node started, no agent spawned. */
static void drive(struct drv *d, const char *data, long *rss_base)
{
    struct ol__config cfg;
    int rv;

    bu_config(&cfg, data, d->o->plugin_dir);
    uv_loop_init(&d->loop);
    rv = ol__node_init(&d->node, &d->loop, &cfg);
    if (rv == 0)
        rv = ol__node_start(&d->node);
    if (rv == 0)
        rv = bu_spawner_init(&d->sp, &d->node, "idle", d->o->agents,
                             d->o->chunk, d->o->size, 1);
    *rss_base = bu_status_kib("VmRSS");
    if (rv != 0) {
        snprintf(d->err, sizeof d->err, "start node: %s",
                 d->node.errmsg[0] ? d->node.errmsg : ol_strerror(rv));
        ol__node_shutdown(&d->node);
    } else {
        uv_timer_init(&d->loop, &d->poll);
        d->poll.data = d;
        d->t_start_us = ol__now_us();
        uv_timer_start(&d->poll, poll_cb, 0, 20);
    }
    uv_run(&d->loop, UV_RUN_DEFAULT);
}

/* The figures of a run that got every agent ready. */
static void report(const struct drv *d, long rss0, long rss_base, long hwm,
                   double drain_s)
{
    const struct opts *o = d->o;
    double ready_s = (double)(d->t_ready_us - d->t_start_us) / 1e6;
    double per_agent =
        (double)(d->rss_settled_kib - rss_base) * 1024.0 / o->agents;
    double total_mib = (double)d->rss_settled_kib / 1024.0;
    int met = total_mib <= o->limit_mib;

    printf("%-34s %10.1f MiB\n", "RSS at process start", rss0 / 1024.0);
    printf("%-34s %10.1f MiB   (anchor)\n", "RSS, node started, no agents",
           rss_base / 1024.0);
    printf("%-34s %10.1f MiB\n", "RSS, all agents committed",
           d->rss_ready_kib / 1024.0);
    printf("%-34s %10.1f MiB\n", "RSS, after settling", total_mib);
    if (d->rss_trimmed_kib)
        printf("%-34s %10.1f MiB   (diagnostic, not the figure)\n",
               "RSS after malloc_trim(0)", d->rss_trimmed_kib / 1024.0);
    printf("%-34s %10.1f MiB\n", "peak RSS (VmHWM), incl. shutdown",
           hwm / 1024.0);
    printf("%-34s %10.0f bytes\n", "RSS per agent over the anchor",
           per_agent);
    printf("%-34s %10.2f s (%.0f agents/s)\n", "spawn until all committed",
           ready_s, o->agents / ready_s);
    printf("%-34s %10.2f s\n", "shutdown (drain) time", drain_s);
    printf("%-34s %10s (%.1f MiB of %u MiB)\n", "target: RSS <= 512 MiB",
           met ? "MET" : "MISSED", total_mib, o->limit_mib);
    if (d->node.exit_code != 0)
        printf("warning: node shutdown did not drain in time\n");
}

int main(int argc, char **argv)
{
    struct opts o;
    struct drv *d;
    char dir[PATH_MAX], data[PATH_MAX];
    long rss0, rss_base, hwm;
    double drain_s;

    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr,
                "usage: bench_idle [--agents 100000] [--size 256] "
                "[--chunk 5000] [--settle-ms 1000] [--plugin-dir DIR]\n");
        return 2;
    }
    rss0 = bu_status_kib("VmRSS");
    if (bu_tmpdir(dir, sizeof dir) != 0) {
        fprintf(stderr, "bench_idle: temp dir: %s\n", strerror(errno));
        return 1;
    }
    snprintf(data, sizeof data, "%s/node", dir);
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return 1;
    d->o = &o;
    drive(d, data, &rss_base);
    drain_s = d->t_drain_us ? (double)(ol__now_us() - d->t_drain_us) / 1e6
                            : 0;
    hwm = bu_status_kib("VmHWM");
    printf("# bench_idle: %u idle benchload agents, %u-byte state, spawned "
           "%u per command batch; data in %s\n",
           o.agents, o.size, o.chunk, dir);
    if (d->err[0] || d->rss_ready_kib == 0) {
        printf("FAILED: %s\n", d->err[0] ? d->err : "did not get ready");
        ol__node_free(&d->node);
        bu_rmrf(dir);
        return 1;
    }
    report(d, rss0, rss_base, hwm, drain_s);
    ol__node_free(&d->node);
    uv_loop_close(&d->loop);
    bu_spawner_close(&d->sp);
    free(d);
    bu_rmrf(dir);
    return 0;
}
