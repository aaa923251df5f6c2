/*
 * Starting a node (ol__node_start): hosting the agents it owns, the
 * agents its config names, the control socket and HTTP endpoint, the
 * stop signals, crash reports left by the last run, and telling systemd.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libgen.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fsutil.h"
#include "base/json.h"
#include "base/log.h"
#include "base/pack.h"
#include "agent.h"
#include "handlers.h"
#include "http.h"
#include "node.h"
#include "notify.h"
#include "resume.h"
#include "watchdog.h"
#include "node_int.h"

#define CRASH_REPORT_RETRY_MS 2000

/* A configured agent that exists already: say so when the file and the
 * committed agent disagree (the committed one wins: `outlast config`
 * changes it), and when it was removed (it stays removed). */
static void configured_exists(struct ol__node *n,
                              const struct ol__config_agent *ca,
                              const struct ol__sm_agent *row,
                              const struct ol__buf *cfg)
{
    if (row->status == OL_AGENT_REMOVED) {
        ol_log(OL_LOG_INFO,
               "[agent.%s] was removed with `outlast rm`: not spawned again "
               "(drop the section from the config to silence this)",
               ca->name);
        return;
    }
    if (strcmp(row->kind, ca->kind) != 0)
        ol_log(OL_LOG_WARN,
               "[agent.%s] says kind '%s' but the agent is a '%s': the "
               "agent is kept as it is; `outlast rm` it and choose a new "
               "name to change its kind",
               ca->name, ca->kind, row->kind);
    else if (cfg->base && (cfg->len != row->config_len ||
                           memcmp(cfg->base, row->config, cfg->len) != 0))
        ol_log(OL_LOG_WARN,
               "[agent.%s] config differs from the agent's committed "
               "config, which it keeps; to apply the file's, run "
               "`outlast config %s '<json>'`",
               ca->name, ca->name);
}

#define SPAWN_CHUNK 4096

/* Propose SPAWN for configured agents that do not exist yet. */
static int spawn_configured(struct ol__node *n)
{
    static const struct ol__config_agent examples[] = {
        {"counter", "counter", NULL, "", ""},
        {"ledger", "ledger", NULL, "", ""},
        {"pricewatch", "pricewatch", NULL, "", ""},
    };
    const struct ol__config_agent *list = n->cfg.agents;
    uint32_t count = n->cfg.n_agents;
    struct ol__entry_w w;
    int rv = 0;

    if (n->cfg.default_agents) {
        list = examples;
        count = sizeof examples / sizeof examples[0];
        ol_log(OL_LOG_INFO,
               "no config file: running the embedded default with the "
               "example agents (counter, ledger, pricewatch); remove one "
               "for good with `outlast rm NAME`");
    }
    ol__entry_w_init(&w);
    for (uint32_t i = 0; i < count && rv == 0; i++) {
        const struct ol__config_agent *ca = &list[i];
        const struct ol__sm_agent *row = ol__sm_agent(n->sm, ca->name);
        struct ol__buf cfg;
        char err[OL_ERRMSG_SIZE];

        ol__buf_init(&cfg);
        if (ca->config_json) {
            rv = ol__json_to_msgpack(ca->config_json,
                                     strlen(ca->config_json), &cfg, err);
            if (rv == 0 && cfg.len && (cfg.base[0] & 0xf0) != 0x80 &&
                cfg.base[0] != 0xde && cfg.base[0] != 0xdf) {
                snprintf(err, sizeof err, "must be a JSON object");
                rv = OL_EINVAL;
            }
            if (rv != 0)
                ol__errf(n->errmsg, "[agent.%s] config: %s", ca->name, err);
        } else {
            rv = ol__buf_append(&cfg, "\x80", 1);
        }
        if (rv == 0 && row) {
            configured_exists(n, ca, row, &cfg);
            ol__buf_close(&cfg);
            continue;
        }
        if (rv == 0)
            rv = ol__entry_add_spawn(&w, ol__random_id(), ca->name,
                                     ca->kind, cfg.base, cfg.len,
                                     n->cluster ? 0 : n->self_id, 0);
        ol__buf_close(&cfg);
        /* Proposed in chunks a batch takes (thousands of agents). */
        if (rv == 0 && w.n == SPAWN_CHUNK) {
            ol_log(OL_LOG_INFO, "spawning %u configured agent(s)", w.n);
            rv = ol__node_propose(n, &w);
            ol__entry_w_reset(&w);
        }
    }
    if (rv == 0 && w.n) {
        ol_log(OL_LOG_INFO, "spawning %u configured agent(s)", w.n);
        rv = ol__node_propose(n, &w);
    }
    ol__entry_w_close(&w);
    return rv;
}

/* Agents of this node quarantined because their plugin was not installed:
 * if it is now, start them again (once, at start; a plugin that still
 * fails quarantines them again with the new reason). */
#define NO_PLUGIN "no plugin '"

static int retry_missing_plugins(struct ol__node *n)
{
    const struct ol__sm_agent *row;
    struct ol__entry_w w;
    int rv = 0;

    ol__entry_w_init(&w);
    for (size_t i = 0; rv == 0 && ol__sm_agent_next(n->sm, &i, &row);) {
        struct ol__code *code;
        char err[OL_ERRMSG_SIZE];

        if (row->status != OL_AGENT_QUARANTINED ||
            (n->cluster && row->owner != n->self_id) ||
            strncmp(row->reason, NO_PLUGIN, strlen(NO_PLUGIN)) != 0 ||
            ol__code_current(&n->codes, row->kind, 1, &code, err) != 0)
            continue;
        ol_log(OL_LOG_INFO,
               "agent '%s': its plugin '%s' is installed now; starting it "
               "again",
               row->name, row->kind);
        rv = ol__entry_add_start(&w, ol__random_id(), row->name);
    }
    if (rv == 0 && w.n)
        rv = ol__node_propose(n, &w);
    ol__entry_w_close(&w);
    return rv;
}

static void sd_watchdog_cb(uv_timer_t *t)
{
    (void)t;
    (void)ol__notify("WATCHDOG=1");
}

/* The HTTP endpoint, if [http] asks for one. */
static int start_http(struct ol__node *n, const char *db_path)
{
    struct ol__http_config hc;

    if (n->cfg.http_listen[0] == '\0')
        return 0;
    memset(&hc, 0, sizeof hc);
    hc.listen = n->cfg.http_listen;
    hc.token_file = n->cfg.http_token_file;
    hc.db_path = db_path;
    return ol__http_start(n->loop, n, &hc, &n->http, n->errmsg);
}

static void tell_ready(struct ol__node *n, int hosted)
{
    char st[200];
    uint64_t wd = ol__notify_watchdog_us();

    snprintf(st, sizeof st,
             "READY=1\nSTATUS=node %" PRIu64 " up: %d agent(s) hosted%s%s",
             n->self_id, hosted, n->http ? ", http on " : "",
             n->http ? n->cfg.http_listen : "");
    (void)ol__notify(st);
    if (wd >= 2000) {
        n->sd_watchdog_us = wd;
        uv_timer_start(&n->sd_watchdog, sd_watchdog_cb, wd / 2000,
                       wd / 2000);
    }
}

/* SIGTERM and SIGINT are caught here rather than through the loop, so
 * the watchdog's clock starts even when the loop is stuck. */
static struct ol__node *signal_node;

static void on_stop_signal(int sig)
{
    struct ol__node *n = signal_node;
    static const char again[] =
        "outlastd: second signal: exiting without draining\n";

    if (n == NULL)
        return;
    if (__atomic_fetch_add(&n->signals, 1, __ATOMIC_SEQ_CST) > 0) {
        (void)!write(2, again, sizeof again - 1);
        _exit(1);
    }
    n->stop_signal = sig;
    ol__watchdog_stopping(n->watchdog);
    uv_async_send(&n->sig_async);
}

void ol__node_stop_signal_cb(uv_async_t *h)
{
    struct ol__node *n = h->data;

    if (n->signals == 0 || n->stopping)
        return;
    ol_log(OL_LOG_INFO, "%s: draining commits and stopping agents",
           n->stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    ol__node_shutdown(n);
}

void ol__node_signals(struct ol__node *n)
{
    struct sigaction sa;

    signal_node = n;
    if (n == NULL)
        return;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static void report_crashes(struct ol__node *n)
{
    struct ol__entry_w w;

    if (n->mark == NULL)
        return;
    ol__entry_w_init(&w);
    for (int i = 0; i < OL_MARK_REPORTS; i++) {
        const struct ol__mark_report *r = &n->mark->reports[i];

        if (!r->used)
            continue;
        ol_log(OL_LOG_WARN, "agent '%s': %s; reporting the crash", r->name,
               r->reason);
        (void)ol__entry_add_crash(&w, r->req, r->name, r->epoch,
                                  ol__wall_ms(), n->cfg.crash_limit,
                                  n->cfg.crash_window_ms, r->reason);
    }
    if (w.n)
        (void)ol__node_propose(n, &w);
    ol__entry_w_close(&w);
}

static void crash_report_cb(uv_timer_t *t)
{
    struct ol__node *n = t->data;
    int left = 0;

    for (int i = 0; n->mark && i < OL_MARK_REPORTS; i++)
        left |= n->mark->reports[i].used != 0;
    if (!left || n->stopping) {
        uv_timer_stop(t);
        return;
    }
    report_crashes(n);
}

static int by_name(const void *a, const void *b)
{
    const struct ol__sm_agent *const *x = a, *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

/* Queue the `owned` agents this node owns for the resume queue, in name
 * order: the batches then read neighbouring rows of the store's indexes
 * (agent, seq) rather than pages scattered over all of it.  0, or -1 when
 * there is no memory for the list (nothing was queued). */
static int queue_owned(struct ol__node *n, size_t owned)
{
    const struct ol__sm_agent **rows = malloc(owned * sizeof *rows), *row;
    size_t k = 0;

    if (rows == NULL)
        return -1;
    for (size_t i = 0; k < owned && ol__sm_agent_next(n->sm, &i, &row);)
        if (ol__node_owns(n, row))
            rows[k++] = row;
    qsort(rows, k, sizeof *rows, by_name);
    ol_log(OL_LOG_INFO, "resuming %zu agent(s) in batches off the loop", k);
    for (size_t i = 0; i < k; i++)
        ol__resume_queue(n, rows[i]);
    free(rows);
    return 0;
}

/* Host the agents this node owns.  A few are started here and now; many
 * (a node restarted over thousands) go to the resume queue, which loads
 * and verifies their heads in batches off the loop and starts them in
 * slices, so the node answers while they resume. */
static int host_owned(struct ol__node *n)
{
    const struct ol__sm_agent *row;
    int owned = 0, own_txn;

    for (size_t i = 0; ol__sm_agent_next(n->sm, &i, &row);)
        owned += ol__node_owns(n, row);
    if (owned >= OL_RESUME_BATCH && queue_owned(n, (size_t)owned) == 0)
        return owned;
    /* One read transaction over every head load: a node restarted over
     * many agents would otherwise begin and end one per agent. */
    own_txn = sqlite3_exec(n->reader.db, "BEGIN", NULL, NULL, NULL) ==
              SQLITE_OK;
    for (size_t i = 0; ol__sm_agent_next(n->sm, &i, &row);)
        if (ol__node_owns(n, row))
            ol__agent_host(n, row);
    if (own_txn)
        sqlite3_exec(n->reader.db, "COMMIT", NULL, NULL, NULL);
    return owned;
}

int ol__node_start(struct ol__node *n)
{
    const struct ol__sm_agent *row;
    char path[PATH_MAX];
    int rv, hosted;

    /* In a cluster nothing is hosted yet: the rows name an older
     * incarnation, and the leader re-grants them to this one. */
    for (size_t i = 0; ol__sm_agent_next(n->sm, &i, &row);)
        if (row->mail_full)
            ol__node_mail_full(n, row->name, 1);
    hosted = host_owned(n);
    /* What each agent's owner was at start: a later change is a move. */
    if (n->cluster)
        for (size_t i = 0; ol__sm_agent_next(n->sm, &i, &row);)
            ol__events_agent(&n->events, row, 1);
    rv = spawn_configured(n);
    if (rv == 0)
        rv = retry_missing_plugins(n);
    if (rv != 0)
        return rv;
    if (ol__path_join(path, sizeof path, n->cfg.data_dir, "outlast.db"))
        return OL_EINVAL;
    rv = start_http(n, path);
    if (rv != 0)
        return rv;
    if (ol__path_join(path, sizeof path, n->cfg.data_dir, OL_CTL_SOCKET))
        return OL_EINVAL;
    rv = ol__ctl_start(n->loop, path, ol__ctl_handle, n, &n->ctl, n->errmsg);
    if (rv != 0)
        return rv;
    ol__node_signals(n);
    /* Crashes of plugins inside the node that the last run left behind
     * are reported until they are on record. */
    report_crashes(n);
    uv_timer_start(&n->crash_timer, crash_report_cb, CRASH_REPORT_RETRY_MS,
                   CRASH_REPORT_RETRY_MS);
    ol_log(OL_LOG_INFO,
           "node %" PRIu64 " up: %d agent(s) hosted, data in %s, control "
           "socket %s",
           n->self_id, hosted, n->cfg.data_dir, path);
    tell_ready(n, hosted);
    return 0;
}

