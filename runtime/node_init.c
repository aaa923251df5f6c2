/*
 * Opening a node (ol__node_init): the data directory and its lock, the
 * key, the step marks, the store and state machine, and the replica,
 * single or clustered.
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
#include "base/log.h"
#include "base/pack.h"
#include "replication/cluster.h"
#include "state/verify.h"
#include "host.h"
#include "logs.h"
#include "node.h"
#include "ol_config.h"
#include "restart.h"
#include "resume.h"
#include "step.h"
#include "watchdog.h"
#include "node_int.h"
#include "hostapi.h"

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
    ol__node_code_later(n);
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
    cc.drift_pct = cfg->clock_drift_pct;
    cc.snapshot_threshold = cfg->snapshot_threshold;
    cc.snapshot_trailing = cfg->snapshot_trailing;
    cc.snapshot_mb = cfg->snapshot_mb;
    cc.segment_mb = cfg->segment_mb;
    cc.moves_in_flight = cfg->moves_in_flight;
    cc.feature_level = cfg->feature_level;
    cc.bootstrap = cfg->bootstrap;
    cc.compress_off = cfg->compress_off;
    cc.dial_only = cfg->dial_only;
    snprintf(cc.leader_preference, sizeof cc.leader_preference, "%s",
             cfg->leader_preference);
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

/* The node's fields and loop handles, before anything can fail. */
static void init_handles(struct ol__node *n, uv_loop_t *loop,
                         const struct ol__config *cfg)
{
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
    uv_async_init(loop, &n->sig_async, ol__node_stop_signal_cb);
    n->sig_async.data = n;
    uv_idle_init(loop, &n->runner);
    n->runner.data = n;
    ol__resume_init(n);
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
}

/* The store's two connections on database `path`, and the state
 * machine over the writer. */
static int open_store(struct ol__node *n, const char *path)
{
    const struct ol__config *cfg = &n->cfg;
    struct ol__sm_config smc;
    int rv;

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
    return ol__sm_open(&n->store, &smc, &n->sm, n->errmsg);
}

int ol__node_init(struct ol__node *n, uv_loop_t *loop,
                  const struct ol__config *cfg)
{
    struct ol__nstate rec;
    char path[PATH_MAX], nspath[PATH_MAX], hex[OL_PK_HEX_SIZE];
    int created, have_rec = 0, rv;

    init_handles(n, loop, cfg);
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
    rv = open_store(n, path);
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

