/*
 * The node: owns the loop's handles, the data directory, the store, the
 * commit path and the agents hosted here, and turns the state machine's
 * effects into actions (host an agent, release one, deliver mail, answer a
 * waiting CLI request).  Shutdown drains: agents get a STOP event whose
 * checkpoint must commit before they close, then the commit path, the
 * control socket and the store close in that order.
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
#include "hostproc.h"
#include "http.h"
#include "base/json.h"
#include "base/log.h"
#include "base/pack.h"
#include "node.h"
#include "agent.h"
#include "handlers.h"
#include "host.h"
#include "logs.h"
#include "restart.h"
#include "step.h"
#include "notify.h"
#include "ol_config.h"
#include "watchdog.h"
#include "state/verify.h"
#include "replication/cluster.h"

#define CRASH_REPORT_RETRY_MS 2000


int ol__node_propose(struct ol__node *n, const struct ol__entry_w *w)
{
    int rv = n->replica->vt->propose_cmds(n->replica, w);

    if (rv != 0)
        ol_log(OL_LOG_ERROR, "propose %u command(s): %s", w->n,
               ol_strerror(rv));
    return rv;
}

static int lock_data_dir(struct ol__node *n)
{
    char path[PATH_MAX], pid[32];
    int fd, len;

    if (ol__path_join(path, sizeof path, n->cfg.data_dir, "outlastd.lock"))
        return OL_EINVAL;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        ol__errf(n->errmsg, "lock '%s': %s", path, strerror(errno));
        return OL_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        len = (int)read(fd, pid, sizeof pid - 1);
        pid[len > 0 ? len : 0] = '\0';
        ol__errf(n->errmsg,
                 "data dir '%s' is in use by another outlastd (pid %s)",
                 n->cfg.data_dir, pid[0] ? pid : "?");
        close(fd);
        return OL_EBUSY;
    }
    len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) < 0)
        ol_log(OL_LOG_WARN, "lock '%s': cannot record pid", path);
    n->lock_fd = fd;
    return 0;
}

int ol__node_owns(const struct ol__node *n, const struct ol__sm_agent *row)
{
    return row->owner == n->self_id && row->inc == n->inc &&
           (row->status == OL_AGENT_RUNNING ||
            row->status == OL_AGENT_STOPPING);
}

/* A single node registers its own key (in a cluster the leader does it
 * through the log); a database created under another key is refused
 * rather than silently re-keyed. */
static int register_self(struct ol__node *n)
{
    const struct ol__sm_node *me = ol__sm_node(n->sm, n->self_id);
    struct ol__sm_node row;
    char have[OL_PK_HEX_SIZE], want[OL_PK_HEX_SIZE];

    if (me) {
        if (sodium_memcmp(me->pk, n->key.pk, OL_PK_SIZE) == 0)
            return 0;
        ol__pk_hex(me->pk, have);
        ol__pk_hex(n->key.pk, want);
        ol__errf(n->errmsg,
                 "node %" PRIu64 " in this database has key %.16s..., but "
                 "node.key holds %.16s...; refusing to sign with another key",
                 n->self_id, have, want);
        return OL_EUNAUTH;
    }
    if (n->cluster)
        return 0;
    memset(&row, 0, sizeof row);
    row.id = n->self_id;
    memcpy(row.pk, n->key.pk, OL_PK_SIZE);
    snprintf(row.labels, sizeof row.labels, "%s", n->cfg.labels);
    return ol__sm_put_node(n->sm, &row);
}

static void lease_cb(void *data, int ok)
{
    struct ol__node *n = data;
    void *v;

    n->paused = !ok;
    ol__events_add(&n->events, ok ? OL_EV_LEASE_HELD : OL_EV_LEASE_LOST,
                   NULL, 0, 0, 0,
                   ok ? "agents here may run" : "agents here are paused");
    if (!ok)
        return;
    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);)
        ol__runq_add(v);
}

static int start_cluster(struct ol__node *n, const char *db_path)
{
    const struct ol__config *cfg = &n->cfg;
    struct ol__cluster_config cc;
    struct ol__cluster_hooks hooks = {n, ol__node_effects, lease_cb,
                                      ol__logs_app};
    int rv;

    memset(&cc, 0, sizeof cc);
    cc.self_id = n->self_id;
    snprintf(cc.node_name, sizeof cc.node_name, "%s", cfg->node_name);
    snprintf(cc.listen, sizeof cc.listen, "%s", cfg->listen);
    snprintf(cc.labels, sizeof cc.labels, "%s", cfg->labels);
    snprintf(cc.cluster, sizeof cc.cluster, "%s", cfg->cluster_name);
    if (ol__path_join(cc.raft_dir, sizeof cc.raft_dir, cfg->data_dir, "raft"))
        return OL_EINVAL;
    snprintf(cc.db_path, sizeof cc.db_path, "%s", db_path);
    cc.election_ms = cfg->election_timeout_ms;
    cc.heartbeat_ms = cfg->heartbeat_timeout_ms;
    cc.failover_ms = cfg->failover_ms;
    cc.snapshot_threshold = cfg->snapshot_threshold;
    cc.snapshot_trailing = cfg->snapshot_trailing;
    cc.segment_mb = cfg->segment_mb;
    cc.feature_level = cfg->feature_level;
    cc.bootstrap = cfg->bootstrap;
    for (uint32_t i = 0; i < cfg->n_peers && i < 16; i++) {
        cc.peers[i].id = cfg->peers[i].id;
        snprintf(cc.peers[i].address, sizeof cc.peers[i].address, "%s",
                 cfg->peers[i].address);
        if (ol__pk_parse(cfg->peers[i].pubkey, cc.peers[i].pk) != 0)
            return OL_ECONFIG;
        snprintf(cc.peer_labels[i], sizeof cc.peer_labels[i], "%s",
                 cfg->peers[i].labels);
        cc.n_peers++;
    }
    n->paused = 1;
    rv = ol__cluster_create(n->loop, &cc, &n->store, n->sm, &n->key, &hooks,
                            &n->replica, n->errmsg);
    if (n->replica)
        n->inc = ol__cluster_incarnation(n->replica);
    return rv;
}

/* outlast-agent-host: [agents] host, $OUTLAST_AGENT_HOST, next to this
 * program, or where it is installed. */
static int find_host_exe(struct ol__node *n)
{
    char exe[PATH_MAX];
    const char *bin = NULL;
    ssize_t len;

    if (n->cfg.host_exe[0]) {
        snprintf(n->host_exe, sizeof n->host_exe, "%s", n->cfg.host_exe);
    } else if (getenv("OUTLAST_AGENT_HOST")) {
        snprintf(n->host_exe, sizeof n->host_exe, "%s",
                 getenv("OUTLAST_AGENT_HOST"));
    } else {
        len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (len > 0) {
            exe[len] = '\0';
            bin = dirname(exe);
            snprintf(n->host_exe, sizeof n->host_exe,
                     "%.4000s/outlast-agent-host", bin);
        }
        /* An install keeps it in libexecdir: look there relative to
         * bindir first, so that a staged install runs its own. */
        if (len > 0 && access(n->host_exe, X_OK) != 0 && OL_HOSTEXE_REL[0])
            snprintf(n->host_exe, sizeof n->host_exe, "%.4000s/%s", bin,
                     OL_HOSTEXE_REL);
        if (len <= 0 || access(n->host_exe, X_OK) != 0)
            snprintf(n->host_exe, sizeof n->host_exe, "%s", OL_HOSTEXE);
    }
    if (access(n->host_exe, X_OK) != 0) {
        ol__errf(n->errmsg,
                 "cannot run the agent host '%s': %s (set [agents] host, "
                 "or run every plugin with isolation = none)",
                 n->host_exe, strerror(errno));
        return OL_ECONFIG;
    }
    return 0;
}

/* Turn what the last run left in a step mark into a crash report; 1 if
 * it is a new one. */
static int report_slot(struct ol__mark *m, const struct ol__mark_slot *s,
                       const char *how)
{
    struct ol__mark_report *r = NULL;

    if (s->phase == OL_MARK_IDLE || s->name[0] == '\0')
        return 0;
    for (int i = 0; i < OL_MARK_REPORTS; i++) {
        if (m->reports[i].used && strcmp(m->reports[i].name, s->name) == 0)
            return 0; /* already waiting to be reported */
        if (!m->reports[i].used && r == NULL)
            r = &m->reports[i];
    }
    if (r == NULL)
        return 0;
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", s->name);
    r->epoch = s->epoch;
    r->req = ol__random_id();
    if (s->phase == OL_MARK_HANDLE)
        snprintf(r->reason, sizeof r->reason,
                 "the node died (%s) in handle() of a %s event", how,
                 ol__event_name((int)s->event));
    else
        snprintf(r->reason, sizeof r->reason, "the node died (%s) in %s",
                 how, ol__mark_phase_name(s->phase));
    r->used = 1;
    return 1;
}

/* The in-process step marks live in a file, so they outlive a crash. */
static int open_marks(struct ol__node *n)
{
    char path[PATH_MAX];
    struct ol__mark *m;
    int fd;

    if (ol__path_join(path, sizeof path, n->cfg.data_dir, "inproc.mark"))
        return OL_EINVAL;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, OL_MARK_SIZE) != 0) {
        ol__errf(n->errmsg, "step marks '%s': %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return OL_EIO;
    }
    m = mmap(NULL, OL_MARK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        ol__errf(n->errmsg, "step marks '%s': %s", path, strerror(errno));
        return OL_EIO;
    }
    if (m->magic == OL_MARK_MAGIC && m->version == OL_MARK_VERSION) {
        struct ol__mark_report keep[OL_MARK_REPORTS];
        char how[32];
        int found = 0;

        if (m->crash_sig > 0)
            snprintf(how, sizeof how, "%s", ol__signal_name(m->crash_sig));
        else if (m->exit_thread != -2)
            snprintf(how, sizeof how, "exit() called");
        else
            snprintf(how, sizeof how, "killed");
        if (m->crash_sig != -1)
            found += report_slot(m, &m->main, how);
        for (int i = 0; i < OL_MARK_WORKERS; i++)
            found += report_slot(m, &m->worker[i], how);
        n->n.crashes += (uint64_t)found;
        n->n.crash_kind[OL_CRASH_NODE] += (uint64_t)found;
        memcpy(keep, m->reports, sizeof keep);
        ol__mark_init(m);
        memcpy(m->reports, keep, sizeof keep);
    } else {
        ol__mark_init(m);
    }
    n->mark = m;
    return 0;
}

static void stop_signal_cb(uv_async_t *h);

int ol__node_init(struct ol__node *n, uv_loop_t *loop,
                  const struct ol__config *cfg)
{
    struct ol__sm_config smc;
    struct ol__nstate rec;
    char path[PATH_MAX], nspath[PATH_MAX], hex[OL_PK_HEX_SIZE];
    int created, have_rec = 0, rv;

    memset(n, 0, sizeof *n);
    n->loop = loop;
    n->cfg = *cfg;
    n->self_id = cfg->node_id;
    n->lock_fd = -1;
    n->started_ms = ol__wall_ms();
    ol__map_init(&n->agents);
    ol__map_init(&n->full);
    uv_prepare_init(loop, &n->hp_flusher);
    n->hp_flusher.data = n;
    uv_async_init(loop, &n->sig_async, stop_signal_cb);
    n->sig_async.data = n;
    uv_idle_init(loop, &n->runner);
    n->runner.data = n;
    uv_timer_init(loop, &n->drain_timer);
    n->drain_timer.data = n;
    uv_timer_init(loop, &n->crash_timer);
    n->crash_timer.data = n;
    uv_timer_init(loop, &n->sd_watchdog);
    n->sd_watchdog.data = n;
    n->handles_init = 1;
    ol__buf_init(&n->scratch);
    n->vcache = ol__verify_cache_create();
    ol__events_init(&n->events, cfg->cluster);
    signal(SIGPIPE, SIG_IGN);
    ol_log_set_level(cfg->log_level);
    ol_log_set_format(cfg->log_format);

    rv = ol__mkdirs(cfg->data_dir, 0700, n->errmsg);
    if (rv == 0)
        rv = lock_data_dir(n);
    if (rv == 0)
        rv = find_host_exe(n);
    if (rv != 0)
        return rv;
    if (ol__path_join(path, sizeof path, cfg->data_dir, "node.key"))
        return OL_EINVAL;
    rv = ol__key_load_or_create(&n->key, path, &created, n->errmsg);
    if (rv != 0)
        return rv;
    ol__pk_hex(n->key.pk, hex);
    ol_log(OL_LOG_INFO, "node %" PRIu64 " (%s) key %s: public %s",
           n->self_id, cfg->node_name, created ? "created" : "loaded", hex);

    if (ol__path_join(path, sizeof path, cfg->data_dir, "outlast.db") ||
        ol__path_join(nspath, sizeof nspath, cfg->data_dir,
                      OL_NSTATE_FILE))
        return OL_EINVAL;
    rv = ol__node_check_start(n, path, nspath, &rec, &have_rec);
    if (rv != 0)
        return rv;
    /* The data directory is this node's and in order: only now may the
     * step marks, the plugin code store and the watchdog touch it. */
    rv = open_marks(n);
    if (rv == 0)
        rv = ol__inproc_start(n, n->errmsg);
    if (rv == 0)
        rv = ol__codes_init(&n->codes, n, cfg->data_dir, cfg->plugin_dir,
                            n->errmsg);
    /* After a stop signal the node is gone within stop_timeout_ms,
     * drained or not; the drain itself gives up at three quarters. */
    if (rv == 0 && ol__watchdog_start(n->mark, cfg->stop_timeout_ms,
                                      &n->watchdog) != 0) {
        ol__errf(n->errmsg, "cannot start the watchdog");
        rv = OL_EIO;
    }
    if (rv != 0)
        return rv;
    rv = ol__store_open(&n->store, path,
                        cfg->cluster ? OL_STORE_WRITE_NORMAL
                                     : OL_STORE_WRITE_FULL);
    if (rv == 0) {
        rv = ol__store_open(&n->reader, path, OL_STORE_READ_SHARED);
        if (rv != 0)
            memcpy(n->store.errmsg, n->reader.errmsg, sizeof n->store.errmsg);
    }
    if (rv != 0) {
        ol__errf(n->errmsg, "%s", n->store.errmsg);
        return rv;
    }
    memset(&smc, 0, sizeof smc);
    smc.retain = cfg->retain;
    smc.mail_soft_n = cfg->mailbox_max;
    smc.mail_soft_bytes = (uint64_t)cfg->mailbox_max_kb << 10;
    rv = ol__sm_open(&n->store, &smc, &n->sm, n->errmsg);
    if (rv != 0)
        return rv;
    rv = ol__node_record_start(n, nspath, have_rec ? &rec : NULL);
    if (rv != 0)
        return rv;
    n->cluster = cfg->cluster;
    rv = register_self(n);
    if (rv != 0)
        return rv;
    if (cfg->cluster)
        rv = start_cluster(n, path);
    else
        rv = ol__local_create(loop, &n->store, n->sm, &n->key,
                              ol__node_effects, n, &n->replica);
    if (rv != 0)
        return rv;
    n->walck.fault_cb = ol__node_walck_fault;
    n->walck.fault_data = n;
    if (ol__walck_start(&n->walck, loop, n->store.db, path, n->errmsg) != 0) {
        /* SQLite's own checkpoints still run, inside the commits. */
        ol_log(OL_LOG_WARN, "%s; checkpointing inline", n->errmsg);
        n->errmsg[0] = '\0';
    }
    return 0;
}

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

/* Propose SPAWN for configured agents that do not exist yet. */
static int spawn_configured(struct ol__node *n)
{
    static const struct ol__config_agent examples[] = {
        {"counter", "counter", NULL},
        {"ledger", "ledger", NULL},
        {"pricewatch", "pricewatch", NULL},
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

static void stop_signal_cb(uv_async_t *h)
{
    struct ol__node *n = h->data;

    if (n->signals == 0 || n->stopping)
        return;
    ol_log(OL_LOG_INFO, "%s: draining commits and stopping agents",
           n->stop_signal == SIGINT ? "SIGINT" : "SIGTERM");
    ol__node_shutdown(n);
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

int ol__node_start(struct ol__node *n)
{
    const struct ol__sm_agent *row;
    char path[PATH_MAX];
    int rv, hosted = 0;

    /* In a cluster nothing is hosted yet: the rows name an older
     * incarnation, and the leader re-grants them to this one. */
    for (size_t i = 0; ol__sm_agent_next(n->sm, &i, &row);)
        if (row->mail_full)
            ol__node_mail_full(n, row->name, 1);
    for (size_t i = 0; ol__sm_agent_next(n->sm, &i, &row);) {
        if (!ol__node_owns(n, row))
            continue;
        ol__agent_host(n, row);
        hosted++;
    }
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
    {
        struct sigaction sa;

        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        signal_node = n;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
    }
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

void ol__node_mail_full(struct ol__node *n, const char *name, int full)
{
    char *key = ol__map_get(&n->full, name);

    if (full && key == NULL) {
        key = strdup(name);
        if (key == NULL || ol__map_put(&n->full, key, key) != 0) {
            free(key);
            return;
        }
        ol_log_rl(OL_LOG_WARN, "agent '%s': mailbox full; senders get "
                               "OL_AGENT_EFULL until it drains",
                  name);
    } else if (!full && key) {
        ol__map_del(&n->full, name);
        free(key);
    } else {
        return;
    }
    for (struct ol__hostproc *hp = n->hps; hp; hp = hp->next)
        ol__hp_full(hp, name, full);
}

void ol__node_code_current(struct ol__node *n, struct ol__code *c)
{
    const struct ol__sm_code *have, *want;
    struct ol__entry_w w;

    if (!n->cluster || n->sm == NULL || c->state != OL_CODE_READY)
        return;
    have = ol__sm_code(n->sm, c->kind, n->self_id);
    want = ol__sm_code(n->sm, c->kind, 0);
    if (have && memcmp(have->hash, c->hash, OL_HASH_SIZE) == 0 &&
        (!c->wanted ||
         (want && memcmp(want->hash, c->hash, OL_HASH_SIZE) == 0)))
        return;
    ol__entry_w_init(&w);
    if (ol__entry_add_code(&w, ol__random_id(), n->self_id, c->kind,
                           c->hash, c->version, c->wanted) == 0)
        (void)ol__node_propose(n, &w);
    ol__entry_w_close(&w);
}

/* Another node asked for a build of `kind`: say which one runs here, so
 * placement knows whether this node can take the kind's agents. */
static void code_wanted(struct ol__node *n, const char *kind)
{
    struct ol__code *c;
    char err[OL_ERRMSG_SIZE];

    if (ol__code_current(&n->codes, kind, 1, &c, err) == 0)
        ol__node_code_current(n, c);
}

void ol__node_effects(void *data, struct ol__effects *fx)
{
    struct ol__node *n = data;
    struct ol__effect *prev = NULL;

    for (struct ol__effect *e = fx->head; e; e = e->next) {
        if (e->type == OL_FX_AGENT && e->u.agent.epoch > n->max_epoch)
            n->max_epoch = e->u.agent.epoch;
        else if (e->type == OL_FX_CKPT && e->status == 0 &&
                 e->u.ckpt.epoch > n->max_epoch)
            n->max_epoch = e->u.ckpt.epoch;
    }
    /* What was just committed is durable: the record may say so. */
    if (n->sm)
        ol__nstate_note(&n->nst, n->store.commits, ol__sm_applied(n->sm),
                        n->max_epoch);
    for (struct ol__effect *e = fx->head; e; prev = e, e = e->next) {
        struct ol_agent *a;

        switch (e->type) {
        case OL_FX_CKPT:
            a = ol__agent_get(n, e->u.ckpt.agent);
            if (a)
                ol__step_committed(a, e);
            if (n->waiters && e->status == 0)
                ol__waiters_ckpt(n, e->u.ckpt.agent);
            break;
        case OL_FX_AGENT: {
            const struct ol__sm_agent *row = &e->u.agent;
            int mine = ol__node_owns(n, row);

            ol__events_agent(&n->events, row, 0);
            ol__waiters_agent(n, row);
            a = ol__agent_get(n, row->name);
            if (mine && !n->stopping)
                ol__agent_host(n, row);
            else if (row->handoff_ms && row->handoff_from == n->self_id)
                ol__agent_hand_over(n, row);
            else if (a && a->phase != OL_PHASE_CLOSING)
                ol__agent_release(a, ol__status_name(row->status));
            break;
        }
        case OL_FX_MAIL:
            a = ol__agent_get(n, e->u.mail.to);
            if (a)
                ol__agent_mail(a, e->u.mail.from, e->u.mail.seq,
                               e->u.mail.idx, e->u.mail.payload,
                               e->u.mail.len, e->u.mail.rowid);
            break;
        case OL_FX_CMD: {
            /* The state machine reports the agent row a command changed
             * right before the command's outcome. */
            const struct ol__sm_agent *row = NULL;

            if (prev && prev->type == OL_FX_AGENT &&
                strcmp(prev->u.agent.name, e->u.cmd.name) == 0)
                row = &prev->u.agent;
            if (e->u.cmd.cmd_type == OL_CMD_CRASH)
                ol__agent_crash_recorded(n, e->u.cmd.name, e->u.cmd.req,
                                         e->status, row);
            if (e->u.cmd.cmd_type == OL_CMD_CODE && e->status == 0 &&
                e->u.cmd.name[0] && !n->stopping)
                code_wanted(n, e->u.cmd.name);
            if (n->waiters == NULL)
                break;
            if (row == NULL && e->status == 0 && n->sm &&
                (e->u.cmd.cmd_type == OL_CMD_STOP ||
                 e->u.cmd.cmd_type == OL_CMD_START) && n->cluster)
                row = ol__sm_agent(n->sm, e->u.cmd.name);
            ol__waiters_effect(n, e, row);
            break;
        }
        case OL_FX_MAILBOX:
            ol__node_mail_full(n, e->u.box.name, e->u.box.full);
            break;
        case OL_FX_NODE:
            break;
        case OL_FX_STORAGE:
            ol__node_storage_fault(n, NULL, "commit: %s", e->errmsg);
            break;
        }
    }
}

/* ---- shutdown ---- */

void ol__node_close_store(struct ol__node *n)
{
    ol__sm_close(n->sm);
    n->sm = NULL;
    ol__walck_close(&n->walck);
    ol__store_close(&n->reader);
    ol__store_close(&n->store);
}

static void record_quiet(void *data)
{
    struct ol__node *n = data;

    ol__node_record_finish(n);
    ol_log(OL_LOG_INFO, "stopped");
}

static void replica_closed(void *data)
{
    struct ol__node *n = data;

    n->replica->vt->destroy(n->replica);
    n->replica = NULL;
    if (n->nst.timer_open)
        ol__nstate_quiesce(&n->nst, record_quiet, n);
    else
        record_quiet(n);
}

static void http_closed(void *data)
{
    struct ol__node *n = data;

    n->replica->vt->close(n->replica, replica_closed, n);
}

static void ctl_closed(void *data)
{
    struct ol__node *n = data;
    struct ol__http *h = n->http;

    n->ctl = NULL;
    n->http = NULL;
    ol__http_close(h, http_closed, n);
}

static void close_node_handles(struct ol__node *n)
{
    if (!n->handles_init)
        return;
    n->handles_init = 0;
    signal_node = NULL;
    uv_close((uv_handle_t *)&n->drain_timer, NULL);
    uv_close((uv_handle_t *)&n->crash_timer, NULL);
    uv_timer_stop(&n->sd_watchdog);
    uv_close((uv_handle_t *)&n->sd_watchdog, NULL);
    uv_close((uv_handle_t *)&n->runner, NULL);
    uv_close((uv_handle_t *)&n->sig_async, NULL);
    uv_close((uv_handle_t *)&n->hp_flusher, NULL);
    ol__inproc_stop(n);
}

static void finish_shutdown(struct ol__node *n)
{
    uv_timer_stop(&n->drain_timer);
    ol__logs_close(n);
    ol__agents_close_all(n);
    /* The hosts get their CLOSE items, then EOF, and exit. */
    for (struct ol__code *c = ol__codes_first(&n->codes); c; c = c->next)
        ol__hostproc_close(c->hp);
    close_node_handles(n);
    ol__waiters_drop(n);
    if (n->ctl)
        ol__ctl_close(n->ctl, ctl_closed, n);
    else
        ctl_closed(n);
}

static int drained(struct ol__node *n)
{
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v;

        if (a->phase == OL_PHASE_DRAINING || a->inflight)
            return 0;
    }
    return n->replica->vt->idle(n->replica);
}

/* A cluster node without a lease cannot commit: it has had no answer from
 * a majority for a lease's length, as the last node of a cluster being
 * stopped one node at a time has not.  Waiting would change nothing, and
 * nothing is lost by not waiting: its agents resume from their last
 * committed checkpoints wherever they run next.  It waits two election
 * timeouts first, for a lease lost only while the others elect a leader
 * (the node stopped before it led). */
static int alone(struct ol__node *n)
{
    return n->cluster &&
           n->drain_waited_ms >= 2 * n->cfg.election_timeout_ms &&
           n->replica->vt->lease_left(n->replica) <= 0;
}

static void drain_cb(uv_timer_t *t)
{
    struct ol__node *n = t->data;

    n->drain_waited_ms += 20;
    if (!drained(n) && alone(n)) {
        ol_log(OL_LOG_INFO,
               "no majority of the cluster answers (the last node of a "
               "cluster being stopped, or a partition): not waiting for "
               "commits; this node's agents resume from their last "
               "committed checkpoints");
        finish_shutdown(n);
        return;
    }
    if (drained(n) || n->drain_waited_ms >= n->cfg.stop_timeout_ms / 4 * 3) {
        if (!drained(n)) {
            ol_log(OL_LOG_WARN, "drain did not finish in %u ms; closing",
                   n->cfg.stop_timeout_ms / 4 * 3);
            n->exit_code = 1;
        }
        finish_shutdown(n);
        return;
    }
    uv_timer_start(t, drain_cb, 20, 0);
}

void ol__node_shutdown(struct ol__node *n)
{
    void *v;

    if (n->stopping)
        return;
    n->stopping = 1;
    (void)ol__notify("STOPPING=1\nSTATUS=draining commits and stopping "
                     "agents");
    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v;
        struct ol__ev *ev;

        if (a->phase != OL_PHASE_ACTIVE || !a->ready)
            continue;
        /* Events not yet delivered are still in the mailbox and the
         * timers, so they are delivered after the restart. */
        while (a->q_head) {
            ev = a->q_head;
            a->q_head = ev->next;
            ol__agent_free_ev(ev);
        }
        a->q_tail = NULL;
        a->q_len = 0;
        uv_timer_stop(&a->timer);
        a->phase = OL_PHASE_DRAINING;
        ev = calloc(1, sizeof *ev);
        if (ev == NULL)
            continue;
        ev->type = OL_EVENT_STOP;
        ev->final = 0;
        ol__agent_push(a, ev);
    }
    uv_timer_start(&n->drain_timer, drain_cb, 0, 0);
}

static void aborted(void *data)
{
    struct ol__node *n = data;

    if (n->replica) {
        n->replica->vt->destroy(n->replica);
        n->replica = NULL;
    }
    ol__node_record_finish(n);
}

void ol__node_abort(struct ol__node *n)
{
    /* The loop runs until every handle init opened is closed. */
    close_node_handles(n);
    if (n->replica)
        n->replica->vt->close(n->replica, aborted, n);
    else
        aborted(n);
}

void ol__node_free(struct ol__node *n)
{
    if (n->handles_init) {
        /* A node that never ran: close what init opened. */
        close_node_handles(n);
        uv_run(n->loop, UV_RUN_NOWAIT);
    }
    ol__watchdog_destroy(n->watchdog);
    n->watchdog = NULL;
    ol__verify_cache_destroy(n->vcache);
    n->vcache = NULL;
    ol__codes_close(&n->codes);
    if (n->mark) {
        ol__mark_uninstall();
        munmap(n->mark, OL_MARK_SIZE);
        n->mark = NULL;
    }
    {
        void *v;

        for (size_t i = 0; ol__map_next(&n->full, &i, &v);)
            free(v);
        ol__map_close(&n->full);
    }
    ol__key_close(&n->key);
    ol__buf_close(&n->scratch);
    ol__map_close(&n->agents);
    ol__events_close(&n->events);
    if (n->lock_fd >= 0)
        close(n->lock_fd);
    if (n->replica) {
        n->replica->vt->destroy(n->replica);
        n->replica = NULL;
    }
    ol__node_close_store(n);
}
