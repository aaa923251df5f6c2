/*
 * An outlast cluster of real daemons (see cb_outlast.h), set up as
 * tests/support/cluster.c sets up its own; control calls via ol__ctl_call.
 */
#include "cb_outlast.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "outlast/agent_util.h"
#include "cb_proc.h"
#include "runtime/ctl.h"
#include "base/err.h"
#include "base/hist.h"
#include "base/keys.h"

#define CALL_TIMEOUT_MS 30000

void cb_ol_defaults(struct cb_ol_opts *o)
{
    char exe[PATH_MAX];

    memset(o, 0, sizeof *o);
    o->n = 3;
    o->election_ms = 300;
    o->heartbeat_ms = 50;
    o->failover_ms = 600;
    /* OL_BENCH_LOG=debug (or trace) to read what the nodes did. */
    o->log_level = getenv("OL_BENCH_LOG") ? getenv("OL_BENCH_LOG") : "info";
    /* The bench programs live in <build>/bench/, next to benchload.so;
     * the daemon in <build>/runtime/bin/. */
    bu_exe_dir(exe, sizeof exe);
    snprintf(o->plugin_dir, sizeof o->plugin_dir, "%s", exe);
    snprintf(o->outlastd, sizeof o->outlastd, "%s/../runtime/bin/outlastd",
             exe);
}

static int write_config(struct cb_ol *c, int i, char pks[][OL_PK_HEX_SIZE])
{
    struct cb_ol_node *nd = &c->nodes[i];
    FILE *f = fopen(nd->conf, "w");

    if (f == NULL)
        return -1;
    fprintf(f,
            "[node]\n"
            "id = %" PRIu64 "\n"
            "data_dir = %s\n"
            "plugin_dir = %s\n"
            "log_level = %s\n"
            "labels = cloud=c%d\n"
            "[cluster]\n"
            "name = olbench\n"
            "listen = %s\n"
            "election_timeout_ms = %u\n"
            "heartbeat_timeout_ms = %u\n"
            "failover_ms = %u\n"
            "bootstrap = true\n",
            nd->id, nd->dir, c->o.plugin_dir, c->o.log_level, i + 1,
            nd->addr, c->o.election_ms, c->o.heartbeat_ms, c->o.failover_ms);
    if (c->o.cluster_extra)
        fprintf(f, "%s\n", c->o.cluster_extra);
    for (int j = 0; j < c->o.n; j++) {
        if (j == i)
            continue;
        fprintf(f,
                "[peer.%" PRIu64 "]\n"
                "address = %s\n"
                "pubkey = %s\n"
                "labels = cloud=c%d\n",
                c->nodes[j].id, c->nodes[j].addr, pks[j], j + 1);
    }
    if (c->o.extra)
        fprintf(f, "%s\n", c->o.extra);
    return fclose(f);
}

int cb_ol_init(struct cb_ol *c, const struct cb_ol_opts *o)
{
    char pks[CB_OL_MAX][OL_PK_HEX_SIZE], path[PATH_MAX + 16];
    char err[OL_ERRMSG_SIZE];
    int base;

    memset(c, 0, sizeof *c);
    c->o = *o;
    if (o->n < 1 || o->n > CB_OL_MAX)
        return -1;
    if (access(o->outlastd, X_OK) != 0) {
        fprintf(stderr, "bench: no outlastd at %s\n", o->outlastd);
        return -1;
    }
    if (cb_tmpdir("olclu", c->root, sizeof c->root) != 0) {
        perror("bench: scratch directory");
        return -1;
    }
    if ((base = cb_ports(o->n)) < 0) {
        fprintf(stderr, "bench: no free ports\n");
        return -1;
    }
    for (int i = 0; i < o->n; i++) {
        struct cb_ol_node *nd = &c->nodes[i];
        struct ol__key k;

        nd->id = (uint64_t)i + 1;
        nd->port = base + i;
        if (cb_wan_site(i, nd->ns, nd->addr) < 0)
            return -1;
        snprintf(nd->addr + strlen(nd->addr), 8, ":%d", nd->port);
        snprintf(nd->dir, sizeof nd->dir, "%s/n%d", c->root, i + 1);
        snprintf(nd->conf, sizeof nd->conf, "%s/n%d.ini", c->root, i + 1);
        snprintf(nd->log, sizeof nd->log, "%s/n%d.log", c->root, i + 1);
        snprintf(nd->sock, sizeof nd->sock, "%s/%s", nd->dir, OL_CTL_SOCKET);
        snprintf(nd->db, sizeof nd->db, "%s/outlast.db", nd->dir);
        if (mkdir(nd->dir, 0700) != 0 || ol__key_generate(&k) != 0)
            return -1;
        snprintf(path, sizeof path, "%s/node.key", nd->dir);
        if (ol__key_save(&k, path, err) != 0) {
            fprintf(stderr, "bench: %s\n", err);
            ol__key_close(&k);
            return -1;
        }
        ol__pk_hex(k.pk, pks[i]);
        ol__key_close(&k);
    }
    for (int i = 0; i < o->n; i++)
        if (write_config(c, i, pks) != 0)
            return -1;
    return 0;
}

int cb_ol_start_node(struct cb_ol *c, int i, int timeout_ms)
{
    struct cb_ol_node *nd = &c->nodes[i];
    char *argv[] = {c->o.outlastd, "--config", nd->conf, NULL};
    uint64_t end = cb_now_ms() + (uint64_t)timeout_ms;
    struct cb_ol_status st;

    nd->pid = cb_spawn_in(nd->ns, NULL, argv, nd->log);
    if (nd->pid < 0)
        return -1;
    while (cb_now_ms() < end) {
        int ws;

        if (cb_exited(nd->pid, &ws)) {
            fprintf(stderr, "bench: node %d exited at start; see %s\n", i + 1,
                    nd->log);
            nd->pid = 0;
            return -1;
        }
        if (cb_ol_status(c, i, 0, &st) == 0)
            return 0;
        cb_sleep_ms(10);
    }
    fprintf(stderr, "bench: node %d did not answer; see %s\n", i + 1,
            nd->log);
    return -1;
}

int cb_ol_start(struct cb_ol *c, int timeout_ms)
{
    /* Start every process first, then wait: a node only answers once it
     * has opened its store, not once it has peers. */
    for (int i = 0; i < c->o.n; i++)
        if (cb_ol_start_node(c, i, timeout_ms) != 0)
            return -1;
    return 0;
}

void cb_ol_kill(struct cb_ol *c, int i)
{
    cb_kill(c->nodes[i].pid, SIGKILL);
    c->nodes[i].pid = 0;
}

void cb_ol_destroy(struct cb_ol *c)
{
    if (c == NULL || c->root[0] == '\0')
        return;
    for (int i = 0; i < c->o.n; i++)
        if (c->nodes[i].pid > 0)
            cb_ol_kill(c, i);
    cb_tmpdir_remove(c->root);
    c->root[0] = '\0';
}

int cb_ol_dead(struct cb_ol *c)
{
    for (int i = 0; i < c->o.n; i++) {
        int st;

        if (c->nodes[i].pid > 0 && cb_exited(c->nodes[i].pid, &st)) {
            fprintf(stderr, "bench: node %d died (%s %d); see %s\n", i + 1,
                    WIFSIGNALED(st) ? "signal" : "exit code",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
                    c->nodes[i].log);
            c->nodes[i].pid = 0;
            return i;
        }
    }
    return -1;
}

int cb_ol_index(const struct cb_ol *c, uint64_t id)
{
    for (int i = 0; i < c->o.n; i++)
        if (c->nodes[i].id == id)
            return i;
    return -1;
}

/* ---- msgpack ---- */

static uint64_t get_u64(const msgpack_object *m, const char *key)
{
    uint64_t v = 0;

    return ol_mp_uint(ol_mp_get(m, key), &v) ? v : 0;
}

static void get_str(const msgpack_object *m, const char *key, char *out,
                    size_t cap)
{
    if (!ol_mp_str(ol_mp_get(m, key), out, cap))
        out[0] = '\0';
}

static int get_bool(const msgpack_object *m, const char *key)
{
    bool v = false;

    return ol_mp_bool(ol_mp_get(m, key), &v) && v;
}

/* A response: the unpacked map points into buf (msgpack_unpack_next does
 * not copy strings), so both live until reply_free. */
struct reply {
    msgpack_unpacked u;
    void *buf;
};

static void reply_free(struct reply *r)
{
    msgpack_unpacked_destroy(&r->u);
    free(r->buf);
    r->buf = NULL;
}

/* Send the request in `sb` over `sock`; on an `ok` answer, r->u.data holds
 * it.  0 or -1 with err set.  Free r either way. */
static int call(const char *sock, const msgpack_sbuffer *sb, struct reply *r,
                char *err)
{
    size_t len = 0, off = 0;

    msgpack_unpacked_init(&r->u);
    r->buf = NULL;
    if (ol__ctl_call(sock, sb->data, sb->size, &r->buf, &len,
                     CALL_TIMEOUT_MS, err) != 0)
        return -1;
    if (msgpack_unpack_next(&r->u, r->buf, len, &off) !=
        MSGPACK_UNPACK_SUCCESS) {
        snprintf(err, OL_ERRMSG_SIZE, "malformed response");
        return -1;
    }
    if (!get_bool(&r->u.data, "ok")) {
        get_str(&r->u.data, "error", err, OL_ERRMSG_SIZE);
        return -1;
    }
    return 0;
}

/* Start a control request {op: OP, ...} of `pairs` pairs in all. */
static void req_begin(msgpack_sbuffer *sb, msgpack_packer *pk, uint32_t pairs,
                      const char *op)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(pk, pairs);
    ol_mp_pack_str(pk, "op");
    ol_mp_pack_str(pk, op);
}

int cb_ol_status(struct cb_ol *c, int i, int reset, struct cb_ol_status *out)
{
    const msgpack_object *cm, *ag, *nd;
    char err[OL_ERRMSG_SIZE], role[16];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct reply u;
    int rv;

    memset(out, 0, sizeof *out);
    req_begin(&sb, &pk, reset ? 2 : 1, "status");
    if (reset) {
        ol_mp_pack_str(&pk, "reset");
        msgpack_pack_true(&pk);
    }
    rv = call(c->nodes[i].sock, &sb, &u, err);
    out->t_us = ol__now_us();
    out->cpu_s = cb_proc_cpu_s(c->nodes[i].pid);
    msgpack_sbuffer_destroy(&sb);
    if (rv == 0) {
        cm = ol_mp_get(&u.u.data, "commits");
        ag = ol_mp_get(&u.u.data, "agents");
        nd = ol_mp_get(&u.u.data, "node");
        out->checkpoints = get_u64(cm, "checkpoints");
        out->batches = get_u64(cm, "batches");
        out->p50_us = get_u64(cm, "latency_p50_us");
        out->p99_us = get_u64(cm, "latency_p99_us");
        out->max_us = get_u64(cm, "latency_max_us");
        out->samples = get_u64(cm, "latency_samples");
        out->agents_total = get_u64(ag, "total");
        out->agents_local = get_u64(ag, "local");
        get_str(nd, "role", role, sizeof role);
        out->leader = strcmp(role, "leader") == 0;
        get_str(nd, "http", out->http, sizeof out->http);
    }
    reply_free(&u);
    return rv;
}

int cb_ol_view(struct cb_ol *c, int i, struct cb_ol_view *out)
{
    const msgpack_object *cl, *nodes;
    char err[OL_ERRMSG_SIZE], role[16];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct reply u;
    int rv;

    memset(out, 0, sizeof *out);
    if (c->nodes[i].pid <= 0)
        return -1;
    req_begin(&sb, &pk, 1, "cluster.status");
    rv = call(c->nodes[i].sock, &sb, &u, err);
    msgpack_sbuffer_destroy(&sb);
    if (rv == 0 && (cl = ol_mp_get(&u.u.data, "cluster")) != NULL) {
        out->wire_out = get_u64(ol_mp_get(&u.u.data, "wire"), "bytes_out");
        out->leader = get_u64(cl, "leader");
        out->term = get_u64(cl, "term");
        out->commit_index = get_u64(cl, "commit_index");
        out->snapshots_taken =
            get_u64(ol_mp_get(cl, "counters"), "snapshots_taken");
        get_str(cl, "role", role, sizeof role);
        out->role_leader = strcmp(role, "leader") == 0;
        nodes = ol_mp_get(cl, "nodes");
        for (uint32_t k = 0; nodes && nodes->type == MSGPACK_OBJECT_ARRAY &&
                             k < nodes->via.array.size && k < CB_OL_MAX;
             k++) {
            const msgpack_object *n = &nodes->via.array.ptr[k];

            out->nodes[k].id = get_u64(n, "id");
            out->nodes[k].agents = get_u64(n, "agents");
            get_str(n, "health", out->nodes[k].health,
                    sizeof out->nodes[k].health);
            out->n_nodes++;
        }
    } else
        rv = -1;
    reply_free(&u);
    return rv;
}

int cb_ol_agents(struct cb_ol *c, int i, struct cb_ol_agent **out,
                 uint32_t *ready)
{
    const msgpack_object *list, *live;
    char err[OL_ERRMSG_SIZE], status[24];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct reply u;
    int n = -1;

    *out = NULL;
    if (ready)
        *ready = 0;
    if (c->nodes[i].pid <= 0)
        return -1;
    req_begin(&sb, &pk, 1, "agents");
    if (call(c->nodes[i].sock, &sb, &u, err) == 0 &&
        (list = ol_mp_get(&u.u.data, "agents")) != NULL &&
        list->type == MSGPACK_OBJECT_ARRAY) {
        n = (int)list->via.array.size;
        *out = calloc((size_t)n + 1, sizeof **out);
        for (int k = 0; k < n && *out; k++) {
            const msgpack_object *a = &list->via.array.ptr[k];
            struct cb_ol_agent *o = &(*out)[k];

            get_str(a, "name", o->name, sizeof o->name);
            get_str(a, "status", status, sizeof status);
            o->running = strcmp(status, "running") == 0;
            o->owner = get_u64(a, "owner");
            o->epoch = get_u64(a, "epoch");
            o->seq = get_u64(a, "seq");
        }
        live = ol_mp_get(&u.u.data, "live");
        for (uint32_t k = 0; ready && live &&
                             live->type == MSGPACK_OBJECT_MAP &&
                             k < live->via.map.size;
             k++)
            if (get_u64(&live->via.map.ptr[k].val, "committed_seq") >= 1)
                (*ready)++;
    }
    msgpack_sbuffer_destroy(&sb);
    reply_free(&u);
    return n;
}

int cb_ol_wait_leader(struct cb_ol *c, int timeout_ms)
{
    uint64_t end = cb_now_ms() + (uint64_t)timeout_ms;

    do {
        struct cb_ol_view v;
        uint64_t lid = 0;
        int agree = 1, li;

        for (int i = 0; i < c->o.n && agree; i++) {
            if (c->nodes[i].pid <= 0)
                continue;
            if (cb_ol_view(c, i, &v) != 0 || v.leader == 0 ||
                (lid && v.leader != lid))
                agree = 0;
            else
                lid = v.leader;
        }
        li = cb_ol_index(c, lid);
        if (agree && li >= 0 && c->nodes[li].pid > 0 &&
            cb_ol_view(c, li, &v) == 0 && v.role_leader)
            return li;
        cb_sleep_ms(20);
    } while (cb_now_ms() < end);
    return -1;
}

int cb_ol_request(struct cb_ol *c, int via, const void *req, size_t len,
                  char *err)
{
    msgpack_sbuffer sb = {.size = len, .data = (char *)req, .alloc = len};
    struct reply u;
    int rv = call(c->nodes[via].sock, &sb, &u, err);

    reply_free(&u);
    return rv;
}

int cb_ol_stop(struct cb_ol *c, int via, const char *name)
{
    char err[OL_ERRMSG_SIZE];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct reply u;
    int rv;

    req_begin(&sb, &pk, 2, "stop");
    ol_mp_pack_str(&pk, "name");
    ol_mp_pack_str(&pk, name);
    rv = call(c->nodes[via].sock, &sb, &u, err);
    if (rv != 0)
        fprintf(stderr, "bench: stop '%s': %s\n", name, err);
    reply_free(&u);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

/* ---- spawning many agents ---- */

struct spawner {
    const char *sock, *prefix;
    const void *config;
    size_t config_len;
    uint32_t n;
    atomic_uint next;
    atomic_int failed;
    atomic_uint retries;
    char err[OL_ERRMSG_SIZE];
    pthread_mutex_t mu;
};

static void *spawn_worker(void *arg)
{
    struct spawner *s = arg;
    char err[OL_ERRMSG_SIZE], name[80];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct reply u;
    uint32_t i;
    int rc;

    while (!atomic_load(&s->failed) &&
           (i = atomic_fetch_add(&s->next, 1)) < s->n) {
        snprintf(name, sizeof name, "%s%06u", s->prefix, i);
        req_begin(&sb, &pk, 5, "spawn");
        /* Setup, not measured: answer at commit, not first checkpoint. */
        ol_mp_pack_str(&pk, "no_wait");
        msgpack_pack_true(&pk);
        ol_mp_pack_str(&pk, "kind");
        ol_mp_pack_str(&pk, "benchload");
        ol_mp_pack_str(&pk, "name");
        ol_mp_pack_str(&pk, name);
        ol_mp_pack_str(&pk, "config");
        msgpack_sbuffer_write(&sb, s->config, s->config_len);
        /* ol__ctl_call treats a full listen backlog (EAGAIN from a
         * non-blocking AF_UNIX connect) as a connect in progress and then
         * fails in send() with ENOTCONN: nothing was sent, so retry. */
        for (int tries = 0;; tries++) {
            rc = call(s->sock, &sb, &u, err);
            if (rc == 0 || tries == 100 ||
                strstr(err, "send: Transport endpoint is not connected") ==
                    NULL)
                break;
            reply_free(&u);
            atomic_fetch_add(&s->retries, 1);
            cb_sleep_ms(5);
        }
        if (rc != 0 && !atomic_exchange(&s->failed, 1)) {
            pthread_mutex_lock(&s->mu);
            snprintf(s->err, sizeof s->err, "spawn '%s': %s", name, err);
            pthread_mutex_unlock(&s->mu);
        }
        reply_free(&u);
        msgpack_sbuffer_destroy(&sb);
    }
    return NULL;
}

int cb_ol_spawn(struct cb_ol *c, int via, const char *prefix, uint32_t n,
                uint32_t inflight, const void *config, size_t config_len)
{
    struct spawner s;
    pthread_t *th;
    uint32_t k, started = 0;

    if (inflight == 0)
        inflight = 1;
    if (inflight > n)
        inflight = n;
    memset(&s, 0, sizeof s);
    s.sock = c->nodes[via].sock;
    s.prefix = prefix;
    s.config = config;
    s.config_len = config_len;
    s.n = n;
    atomic_init(&s.next, 0);
    atomic_init(&s.failed, 0);
    atomic_init(&s.retries, 0);
    pthread_mutex_init(&s.mu, NULL);
    th = calloc(inflight, sizeof *th);
    if (th == NULL)
        return -1;
    for (k = 0; k < inflight; k++)
        if (pthread_create(&th[k], NULL, spawn_worker, &s) == 0)
            started++;
        else
            break;
    for (k = 0; k < started; k++)
        pthread_join(th[k], NULL);
    free(th);
    pthread_mutex_destroy(&s.mu);
    if (atomic_load(&s.retries))
        fprintf(stderr, "bench: %u spawn connect(s) retried (listen backlog "
                        "full)\n",
                atomic_load(&s.retries));
    if (atomic_load(&s.failed) || started == 0) {
        fprintf(stderr, "bench: %s\n", s.err[0] ? s.err : "no spawner");
        return -1;
    }
    return 0;
}

void *cb_benchload_config(uint32_t size, uint32_t interval_ms,
                          uint64_t start_at_ms, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1 + (interval_ms != 0) + (start_at_ms != 0));
    ol_mp_pack_str(&pk, "size");
    msgpack_pack_uint32(&pk, size);
    if (interval_ms) {
        ol_mp_pack_str(&pk, "interval_ms");
        msgpack_pack_uint32(&pk, interval_ms);
    }
    if (start_at_ms) {
        ol_mp_pack_str(&pk, "start_at_ms");
        msgpack_pack_uint64(&pk, start_at_ms);
    }
    *len = sb.size;
    return msgpack_sbuffer_release(&sb);
}
