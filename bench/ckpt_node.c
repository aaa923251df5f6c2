/*
 * The node side of one bench_ckpt repetition: start a node, feed it
 * agents until each has committed once, warm up, measure a window that
 * holds whole group commits, and shut the node down cleanly.  Everything
 * is driven from timers and a check handle on the node's own loop; nothing
 * sleeps.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench_ckpt.h"
#include "bench_util.h"
#include "runtime/http.h"
#include "scraper.h"
#include "base/err.h"
#include "base/hist.h"
#include "runtime/node.h"

#define SETUP_LIMIT_MS (300 * 1000)
#define SPAWN_CHUNK 1000

enum phase { P_SETUP, P_WARMUP, P_MEASURE, P_DRAIN };

struct drv {
    uv_loop_t loop;
    struct ol__node node;
    uv_timer_t poll, window;
    uv_check_t watch; /* sees each group commit land */
    struct bu_spawner sp;
    uint32_t agents;
    const struct opts *o;
    struct result *r;
    int phase;
    uint64_t t_start_us, drain_us;
    /* The window runs from the first group commit that lands after it
     * opens to the last one before it closes, so it holds whole batches:
     * with 10,000 agents a batch is thousands of checkpoints, and a window
     * cut mid-batch would be off by one batch either way. */
    uint64_t seen_ck;           /* n.checkpoints at the last look */
    uint64_t first_us, last_us; /* when the first and last batch landed */
    uint64_t first_ck, last_ck;
    uint64_t first_b, first_k, last_b, last_k;
    uint32_t landed; /* batches seen landing in the window */
    uint64_t t0_window_us;
    double cpu0;
    struct scraper scr;
};

static void stop_driving(struct drv *d, const char *err)
{
    if (err && d->r->err[0] == '\0')
        snprintf(d->r->err, sizeof d->r->err, "%s", err);
    d->phase = P_DRAIN;
    d->drain_us = ol__now_us();
    /* The scraper ran through setup, warm-up and the window. */
    scraper_stop(&d->scr);
    {
        uint64_t requests;

        ol__http_counters(d->node.http, &requests, &d->r->http_jobs,
                          &d->r->http_loop_us);
    }
    d->r->scrapes = d->scr.ok;
    d->r->scrape_failed = d->scr.failed;
    d->r->scrape_bytes = d->scr.bytes;
    if (d->scr.ok) {
        d->r->scrape_mean_ms = (double)d->scr.total_us / 1e3 /
                               (double)d->scr.ok;
        d->r->scrape_max_ms = (double)d->scr.max_us / 1e3;
    }
    uv_close((uv_handle_t *)&d->poll, NULL);
    uv_close((uv_handle_t *)&d->window, NULL);
    uv_close((uv_handle_t *)&d->watch, NULL);
    ol__node_shutdown(&d->node);
}

static void window_cb(uv_timer_t *t);

static void poll_cb(uv_timer_t *t)
{
    struct drv *d = t->data;
    char err[200];

    if (d->phase != P_SETUP)
        return;
    if (bu_setup_tick(&d->sp, err, sizeof err) != 0) {
        stop_driving(d, err);
        return;
    }
    if (d->sp.proposed == d->agents && bu_ready(&d->node) == d->agents) {
        d->r->setup_s = (double)(ol__now_us() - d->t_start_us) / 1e6;
        d->phase = P_WARMUP;
        uv_timer_stop(&d->poll);
        uv_timer_start(&d->window, window_cb, d->o->warmup_ms, 0);
        return;
    }
    if (ol__now_us() - d->t_start_us > (uint64_t)SETUP_LIMIT_MS * 1000) {
        snprintf(err, sizeof err,
                 "setup: only %u of %u agents committed in %d s",
                 bu_ready(&d->node), d->agents, SETUP_LIMIT_MS / 1000);
        stop_driving(d, err);
    }
}

/* Runs after every loop iteration's I/O: a change in the checkpoint count
 * means a group commit has just been applied. */
static void watch_cb(uv_check_t *h)
{
    struct drv *d = h->data;
    uint64_t ck = d->node.n.checkpoints;

    if (d->phase != P_MEASURE || ck == d->seen_ck)
        return;
    d->seen_ck = ck;
    d->last_us = ol__now_us();
    d->last_ck = ck;
    bu_replica_counters(&d->node, &d->last_b, &d->last_k);
    if (d->landed++ == 0) {
        d->first_us = d->last_us;
        d->first_ck = ck;
        d->first_b = d->last_b;
        d->first_k = d->last_k;
    }
}

static void window_cb(uv_timer_t *t)
{
    struct drv *d = t->data;
    const uint32_t want = 9; /* batch landings: at least 8 whole batches */
    double secs;

    if (d->phase == P_WARMUP) {
        ol__hist_reset(&d->node.commit_lat);
        d->seen_ck = d->node.n.checkpoints;
        d->cpu0 = bu_cpu_s();
        d->t0_window_us = ol__now_us();
        d->phase = P_MEASURE;
        uv_check_start(&d->watch, watch_cb);
        uv_timer_start(&d->window, window_cb, d->o->window_ms, 0);
        bu_perf("enable");
        return;
    }
    if (d->phase != P_MEASURE)
        return;
    /* Slow, big batches: stretch the window (up to 4x) until it holds
     * enough of them. */
    if (d->landed < want &&
        ol__now_us() - d->t0_window_us < (uint64_t)d->o->window_ms * 4000) {
        uv_timer_start(&d->window, window_cb, 100, 0);
        return;
    }
    bu_perf("disable");
    secs = (double)(ol__now_us() - d->t0_window_us) / 1e6;
    d->r->window_s = secs;
    d->r->batches = d->landed > 0 ? d->landed - 1 : 0;
    if (d->landed >= 2 && d->last_us > d->first_us) {
        d->r->ckpt_per_s = (double)(d->last_ck - d->first_ck) /
                           ((double)(d->last_us - d->first_us) / 1e6);
        if (d->last_b > d->first_b)
            d->r->avg_batch = (double)(d->last_k - d->first_k) /
                              (double)(d->last_b - d->first_b);
    }
    d->r->cpu = (bu_cpu_s() - d->cpu0) / secs;
    d->r->p50_us = ol__hist_quantile(&d->node.commit_lat, 0.50);
    d->r->p99_us = ol__hist_quantile(&d->node.commit_lat, 0.99);
    d->r->mean_us = d->node.commit_lat.count
                        ? d->node.commit_lat.sum_us / d->node.commit_lat.count
                        : 0;
    if (d->landed < 2)
        stop_driving(d, "no group commit landed in the window");
    else if (d->node.n.quarantined || d->node.n.refused)
        stop_driving(d, "checkpoints were refused or agents quarantined");
    else
        stop_driving(d, NULL);
}

/* Average stored body size, read back from the node's database. */
static double stored_body_avg(const char *data_dir)
{
    char path[PATH_MAX];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    double avg = 0;

    snprintf(path, sizeof path, "%s/outlast.db", data_dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT avg(length(body)) FROM checkpoints",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        avg = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return avg;
}

int ckpt_run_node(const struct opts *o, uint32_t agents, uint32_t size,
                  const char *data_dir, struct result *r)
{
    struct ol__config cfg;
    struct drv *d = calloc(1, sizeof *d);
    int rv;

    if (d == NULL)
        return OL_ENOMEM;
    d->o = o;
    d->r = r;
    d->agents = agents;
    bu_config(&cfg, data_dir, o->plugin_dir);
    if (o->scrape)
        snprintf(cfg.http_listen, sizeof cfg.http_listen, "127.0.0.1:0");
    cfg.agent_defaults.isolation = o->isolation;
    uv_loop_init(&d->loop);
    rv = ol__node_init(&d->node, &d->loop, &cfg);
    if (rv == 0)
        rv = ol__node_start(&d->node);
    if (rv == 0 && o->scrape) {
        ol__http_address(d->node.http, d->scr.targets[0],
                         sizeof d->scr.targets[0]);
        d->scr.n_targets = 1;
        if (scraper_start(&d->scr, o->scrape_ms) != 0)
            rv = OL_ENOMEM;
    }
    if (rv == 0)
        rv = bu_spawner_init(&d->sp, &d->node, "b", agents, SPAWN_CHUNK,
                             size, 0);
    if (rv != 0) {
        snprintf(r->err, sizeof r->err, "start node: %s",
                 d->node.errmsg[0] ? d->node.errmsg : ol_strerror(rv));
        ol__node_shutdown(&d->node);
    } else {
        uv_timer_init(&d->loop, &d->poll);
        uv_timer_init(&d->loop, &d->window);
        uv_check_init(&d->loop, &d->watch);
        d->poll.data = d->window.data = d->watch.data = d;
        d->t_start_us = ol__now_us();
        uv_timer_start(&d->poll, poll_cb, 0, 5);
    }
    uv_run(&d->loop, UV_RUN_DEFAULT);
    if (d->drain_us)
        r->drain_s = (double)(ol__now_us() - d->drain_us) / 1e6;
    if (rv == 0 && d->node.exit_code != 0 && r->err[0] == '\0')
        snprintf(r->err, sizeof r->err, "node shutdown did not drain");
    ol__node_free(&d->node);
    if (uv_loop_close(&d->loop) != 0 && r->err[0] == '\0')
        snprintf(r->err, sizeof r->err, "loop closed with handles open");
    bu_spawner_close(&d->sp);
    free(d);
    r->body_avg = stored_body_avg(data_dir);
    return rv != 0 ? rv : (r->err[0] ? OL_EIO : 0);
}
