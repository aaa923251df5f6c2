/*
 * The daemon's answers to control requests.  Reads go to the loop thread's
 * own read-only connection through the shared queries; changes are
 * proposed as commands, and the request waits until the state machine
 * reports the command's outcome, so "spawned" means committed.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "hostproc.h"
#include "http.h"
#include "base/json.h"
#include "base/log.h"
#include "node.h"
#include "ol_config.h"
#include "state/query.h"
#include "base/mpr.h"
#include "base/pack.h"
#include "upgrade.h"
#include "replication/cluster.h"

static const msgpack_object *arg(const msgpack_object *args, const char *key)
{
    size_t klen = strlen(key);

    if (args->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < args->via.map.size; i++) {
        const msgpack_object_kv *kv = &args->via.map.ptr[i];

        if (kv->key.type == MSGPACK_OBJECT_STR &&
            kv->key.via.str.size == klen &&
            memcmp(kv->key.via.str.ptr, key, klen) == 0)
            return &kv->val;
    }
    return NULL;
}

/* Copy a string argument; 0, or -1 if missing, not a string or too long. */
static int arg_str(const msgpack_object *args, const char *key, char *out,
                   size_t cap)
{
    const msgpack_object *o = arg(args, key);

    if (o == NULL || o->type != MSGPACK_OBJECT_STR ||
        o->via.str.size >= cap || memchr(o->via.str.ptr, 0, o->via.str.size))
        return -1;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return 0;
}

/* The longest request id a client may give. */
#define REQUEST_ID_MAX 128

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v ? v : 1;
}

/*
 * The command id for a mutating request.  With "request_id" (1-128
 * printable ASCII characters) it is derived from it: the first 8 bytes of
 * BLAKE2b over a domain prefix, the operation and the id, so that the same
 * request sent again, through any node, is the same command and the state
 * machine applies it once; the next 8 bytes give a send its message
 * sequence, so the mailbox row is the same too.  Without one both are
 * random.  Returns 0, or -1 after replying with an error that names the
 * field.
 */
static int request_ids(struct ol__ctl_req *req, const char *op,
                       const msgpack_object *args, uint64_t *id,
                       uint64_t *seq)
{
    static const char domain[] = "outlast request id v1";
    const msgpack_object *o = arg(args, "request_id");
    crypto_generichash_state h;
    uint8_t out[16];

    if (o == NULL) {
        *id = ol__random_id();
        if (seq)
            *seq = ol__random_id();
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 ||
        o->via.str.size > REQUEST_ID_MAX) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "%s: request_id must be a string of 1-%d "
                            "printable characters",
                            op, REQUEST_ID_MAX);
        return -1;
    }
    for (uint32_t i = 0; i < o->via.str.size; i++) {
        unsigned char ch = (unsigned char)o->via.str.ptr[i];

        if (ch < 0x20 || ch > 0x7e) {
            ol__ctl_reply_error(req, OL_EINVAL,
                                "%s: request_id has a byte that is not "
                                "printable ASCII (0x%02x at %u)",
                                op, ch, i);
            return -1;
        }
    }
    crypto_generichash_init(&h, NULL, 0, sizeof out);
    crypto_generichash_update(&h, (const uint8_t *)domain, sizeof domain);
    crypto_generichash_update(&h, (const uint8_t *)op, strlen(op) + 1);
    crypto_generichash_update(&h, (const uint8_t *)o->via.str.ptr,
                              o->via.str.size);
    crypto_generichash_final(&h, out, sizeof out);
    *id = le64(out);
    if (seq)
        *seq = le64(out + 8);
    return 0;
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);

    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pk_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    pk_str(pk, k);
    msgpack_pack_uint64(pk, v);
}

struct resp {
    struct ol__buf buf;
    msgpack_packer pk;
};

/* Start a response map with `n` entries after "ok". */
static void resp_begin(struct resp *r, uint32_t n)
{
    ol__buf_init(&r->buf);
    msgpack_packer_init(&r->pk, &r->buf, ol__buf_write);
    msgpack_pack_map(&r->pk, n + 1);
    pk_str(&r->pk, "ok");
    msgpack_pack_true(&r->pk);
}

static void resp_send(struct resp *r, struct ol__ctl_req *req)
{
    size_t off = 0;

    /* Maps are counted by hand above; a miscount must not reach a client
     * as bytes it cannot parse. */
    if (r->buf.base == NULL)
        ol__ctl_reply_error(req, OL_ENOMEM, "out of memory");
    else if (ol__mp_check(r->buf.base, r->buf.len, &off) != 0) {
        ol_log(OL_LOG_ERROR, "internal: malformed response (byte %zu)", off);
        ol__ctl_reply_error(req, OL_EMALFORMED,
                            "internal error: malformed response");
    } else
        ol__ctl_reply(req, r->buf.base, r->buf.len);
    ol__buf_close(&r->buf);
}

static void pack_live_one(msgpack_packer *pk, const struct ol_agent *a)
{
    msgpack_pack_map(pk, 9);
    pk_kv_u64(pk, "steps", a->steps);
    pk_kv_u64(pk, "commit_us", a->commit_us);
    pk_kv_u64(pk, "held", a->n_outbox);
    pk_str(pk, "local");
    msgpack_pack_true(pk);
    pk_str(pk, "degraded");
    if (a->degraded)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    pk_str(pk, "phase");
    pk_str(pk, ol__agent_phase_name(a));
    pk_kv_u64(pk, "queued", a->q_len);
    pk_kv_u64(pk, "committed_seq", a->committed_seq);
    pk_str(pk, "reason");
    pk_str(pk, a->reason);
}

/* live: {name: {...}} for the agents hosted here (or just `only`). */
static void pack_live(struct ol__node *n, msgpack_packer *pk,
                      const char *only)
{
    struct ol_agent *a;
    uint32_t count = 0;
    void *v;

    if (only) {
        /* One agent: its own live map (empty if not hosted here). */
        a = ol__agent_get(n, only);
        if (a)
            pack_live_one(pk, a);
        else
            msgpack_pack_map(pk, 0);
        return;
    }
    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);)
        count++;
    msgpack_pack_map(pk, count);
    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        a = v;
        pk_str(pk, a->name);
        pack_live_one(pk, a);
    }
}

/* Agents in the store with `status` (0: all but the removed). */
static uint64_t count_status(struct ol__node *n, int status)
{
    sqlite3_stmt *st;
    uint64_t v = 0;

    if (sqlite3_prepare_v2(n->reader.db,
                           status ? "SELECT count(*) FROM agents WHERE "
                                    "status = ?"
                                  : "SELECT count(*) FROM agents WHERE "
                                    "status != 5",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (status)
        sqlite3_bind_int(st, 1, status);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static uint64_t batches(struct ol__node *n)
{
    struct ol__replica_counters rc;

    n->replica->vt->counters(n->replica, &rc);
    return rc.batches;
}

/* Agent-host processes and what bad agents did on this node. */
static void pack_hosts(struct ol__node *n, msgpack_packer *pk)
{
    uint64_t running = 0;

    for (const struct ol__hostproc *hp = n->hps; hp; hp = hp->next)
        running += hp->state != OL_HP_DEAD;
    pk_str(pk, "hosts");
    msgpack_pack_map(pk, 5);
    pk_kv_u64(pk, "running", running);
    pk_kv_u64(pk, "started", n->n.host_starts);
    pk_kv_u64(pk, "restarts", n->n.host_deaths);
    pk_str(pk, "crashes");
    msgpack_pack_map(pk, OL_CRASH_KINDS);
    for (int k = 0; k < OL_CRASH_KINDS; k++)
        pk_kv_u64(pk, ol__crash_kind_name(k), n->n.crash_kind[k]);
    pk_kv_u64(pk, "crash_loop_quarantines", n->n.quarantined_crash);
}

static void op_status(struct ol__node *n, struct ol__ctl_req *req,
                      const msgpack_object *args)
{
    const msgpack_object *reset = arg(args, "reset");
    struct resp r;
    char hex[OL_PK_HEX_SIZE];
    uint32_t local = 0, degraded = 0;
    struct stat st;
    char dbpath[PATH_MAX + 16], http[64];
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        struct ol_agent *a = v;

        if (a->degraded)
            degraded++;
        else if (a->phase == OL_PHASE_ACTIVE)
            local++;
    }
    ol__pk_hex(n->key.pk, hex);
    snprintf(dbpath, sizeof dbpath, "%s/outlast.db", n->cfg.data_dir);
    resp_begin(&r, 7);
    pk_str(&r.pk, "storage");
    msgpack_pack_map(&r.pk, 4);
    pk_str(&r.pk, "state");
    pk_str(&r.pk, n->storage.errors ? "damaged" : "ok");
    pk_kv_u64(&r.pk, "errors", n->storage.errors);
    pk_str(&r.pk, "first");
    pk_str(&r.pk, n->storage.first);
    pk_kv_u64(&r.pk, "first_ms", (uint64_t)n->storage.first_ms);
    pk_str(&r.pk, "node");
    msgpack_pack_map(&r.pk, 9);
    pk_str(&r.pk, "http");
    ol__http_address(n->http, http, sizeof http);
    pk_str(&r.pk, http);
    pk_kv_u64(&r.pk, "id", n->self_id);
    pk_str(&r.pk, "name");
    pk_str(&r.pk, n->cfg.node_name);
    pk_str(&r.pk, "pk");
    pk_str(&r.pk, hex);
    pk_str(&r.pk, "version");
    pk_str(&r.pk, OL_VERSION);
    pk_str(&r.pk, "mode");
    pk_str(&r.pk, n->cluster ? "cluster" : "single");
    pk_str(&r.pk, "role");
    /* A single node is a cluster of one, and leads it. */
    pk_str(&r.pk, n->replica->vt->is_leader(n->replica) ? "leader"
                                                        : "follower");
    pk_str(&r.pk, "data_dir");
    pk_str(&r.pk, n->cfg.data_dir);
    pk_kv_u64(&r.pk, "uptime_ms", (uint64_t)(ol__wall_ms() - n->started_ms));
    pk_str(&r.pk, "agents");
    msgpack_pack_map(&r.pk, 8);
    pk_kv_u64(&r.pk, "total", count_status(n, 0));
    pk_kv_u64(&r.pk, "removed", count_status(n, OL_AGENT_REMOVED));
    pk_kv_u64(&r.pk, "running", count_status(n, OL_AGENT_RUNNING));
    pk_kv_u64(&r.pk, "stopping", count_status(n, OL_AGENT_STOPPING));
    pk_kv_u64(&r.pk, "stopped", count_status(n, OL_AGENT_STOPPED));
    pk_kv_u64(&r.pk, "quarantined", count_status(n, OL_AGENT_QUARANTINED));
    pk_kv_u64(&r.pk, "degraded", degraded);
    pk_kv_u64(&r.pk, "local", local);
    pk_str(&r.pk, "commits");
    msgpack_pack_map(&r.pk, 11);
    pk_kv_u64(&r.pk, "checkpoints", n->n.checkpoints);
    pk_kv_u64(&r.pk, "batches", batches(n));
    pk_kv_u64(&r.pk, "refused", n->n.refused);
    pk_kv_u64(&r.pk, "steps", n->n.steps);
    pk_kv_u64(&r.pk, "quarantined", n->n.quarantined);
    pk_kv_u64(&r.pk, "latency_p50_us",
              ol__hist_quantile(&n->commit_lat, 0.50));
    pk_kv_u64(&r.pk, "latency_p99_us",
              ol__hist_quantile(&n->commit_lat, 0.99));
    pk_kv_u64(&r.pk, "latency_max_us", n->commit_lat.max_us);
    pk_kv_u64(&r.pk, "latency_samples", n->commit_lat.count);
    /* The database is the main file and its WAL: recent commits live in
     * the WAL until a checkpoint copies them over. */
    {
        char wal[sizeof dbpath + 4];
        uint64_t main_b = stat(dbpath, &st) == 0 ? (uint64_t)st.st_size : 0;
        uint64_t wal_b;

        snprintf(wal, sizeof wal, "%s-wal", dbpath);
        wal_b = stat(wal, &st) == 0 ? (uint64_t)st.st_size : 0;
        pk_kv_u64(&r.pk, "bytes_db", main_b + wal_b);
        pk_kv_u64(&r.pk, "bytes_wal", wal_b);
    }
    pack_hosts(n, &r.pk);
    pk_str(&r.pk, "stopping");
    if (n->stopping)
        msgpack_pack_true(&r.pk);
    else
        msgpack_pack_false(&r.pk);
    pk_str(&r.pk, "replica");
    n->replica->vt->status(n->replica, &r.pk);
    resp_send(&r, req);
    /* {"reset": true}: the latency figures above start a new window. */
    if (reset && reset->type == MSGPACK_OBJECT_BOOLEAN && reset->via.boolean)
        ol__hist_reset(&n->commit_lat);
}

/* The filter of an `agents` request: all, status, kind, owner, prefix,
 * after, limit.  Strings point into `args`, copied into `buf`.  Returns 0,
 * or -1 after replying with an error that names the field. */
struct filter_buf {
    char kind[OL_KIND_MAX + 2], prefix[OL_NAME_MAX + 2];
    char after[OL_NAME_MAX + 2], status[24];
};

static int agent_filter(struct ol__ctl_req *req, const msgpack_object *args,
                        struct ol__agent_filter *f, struct filter_buf *b)
{
    const msgpack_object *o;

    memset(f, 0, sizeof *f);
    o = arg(args, "all");
    f->all = o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
    if (arg(args, "status")) {
        if (arg_str(args, "status", b->status, sizeof b->status) != 0 ||
            (f->status = ol__status_parse(b->status)) == 0) {
            ol__ctl_reply_error(req, OL_EINVAL,
                                "agents: status must be running, stopping, "
                                "stopped, quarantined or removed");
            return -1;
        }
    }
    if (arg(args, "kind")) {
        if (arg_str(args, "kind", b->kind, sizeof b->kind) != 0 ||
            !ol__name_valid(b->kind)) {
            ol__ctl_reply_error(req, OL_EINVAL, "agents: bad kind");
            return -1;
        }
        f->kind = b->kind;
    }
    if (arg(args, "prefix")) {
        if (arg_str(args, "prefix", b->prefix, sizeof b->prefix) != 0 ||
            strlen(b->prefix) > OL_NAME_MAX) {
            ol__ctl_reply_error(req, OL_EINVAL, "agents: bad name prefix");
            return -1;
        }
        f->prefix = b->prefix;
    }
    if (arg(args, "after")) {
        if (arg_str(args, "after", b->after, sizeof b->after) != 0 ||
            strlen(b->after) > OL_NAME_MAX) {
            ol__ctl_reply_error(req, OL_EINVAL, "agents: bad 'after' name");
            return -1;
        }
        f->after = b->after;
    }
    o = arg(args, "owner");
    if (o && (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 == 0)) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "agents: owner must be a node id (1 or more)");
        return -1;
    }
    f->owner = o ? o->via.u64 : 0;
    o = arg(args, "limit");
    if (o && (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
              o->via.u64 > UINT32_MAX)) {
        ol__ctl_reply_error(req, OL_EINVAL, "agents: bad limit");
        return -1;
    }
    f->limit = o ? (uint32_t)o->via.u64 : 0;
    return 0;
}

static void op_query(struct ol__node *n, struct ol__ctl_req *req,
                     const char *op, const msgpack_object *args)
{
    char name[OL_NAME_MAX + 1] = "";
    char err[OL_ERRMSG_SIZE] = "";
    const msgpack_object *lim;
    uint64_t limit = 50;
    struct ol__agent_filter f;
    struct filter_buf fb;
    struct resp r;
    int rv;

    if (strcmp(op, "agents") != 0 &&
        arg_str(args, "name", name, sizeof name) != 0) {
        ol__ctl_reply_error(req, OL_EINVAL, "%s: missing agent name", op);
        return;
    }
    lim = arg(args, "limit");
    if (lim && lim->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        limit = lim->via.u64;
    if (strcmp(op, "agents") == 0 && agent_filter(req, args, &f, &fb) != 0)
        return;
    resp_begin(&r, 2);
    if (strcmp(op, "agents") == 0) {
        pk_str(&r.pk, "agents");
        rv = ol__query_agents(n->reader.db, &r.pk, &f, err);
    } else if (strcmp(op, "show") == 0) {
        pk_str(&r.pk, "agent");
        rv = ol__query_show(n->reader.db, name, &r.pk, err);
    } else {
        pk_str(&r.pk, "history");
        rv = ol__query_history(n->reader.db, name,
                               limit > UINT32_MAX ? UINT32_MAX
                                                  : (uint32_t)limit,
                               &r.pk, err);
    }
    if (rv != 0) {
        ol__buf_close(&r.buf);
        if (ol__sqlite_damaged(n->reader.db))
            ol__node_storage_fault(n, name[0] ? name : NULL, "%s: %s", op,
                                   err[0] ? err : ol_strerror(rv));
        ol__ctl_reply_error(req, rv, "%s", err[0] ? err : ol_strerror(rv));
        return;
    }
    pk_str(&r.pk, "live");
    pack_live(n, &r.pk, strcmp(op, "show") == 0 ? name : NULL);
    resp_send(&r, req);
}

static void wait_for(struct ol__node *n, struct ol__ctl_req *req,
                     uint64_t id, const char *op, const char *name,
                     uint64_t msg_seq)
{
    struct ol__waiter *w = calloc(1, sizeof *w);

    if (w == NULL) {
        ol__ctl_reply_error(req, OL_ENOMEM, "out of memory");
        return;
    }
    w->req = id;
    w->ctl = req;
    w->msg_seq = msg_seq;
    snprintf(w->op, sizeof w->op, "%s", op);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->next = n->waiters;
    n->waiters = w;
}

static void propose_and_wait(struct ol__node *n, struct ol__ctl_req *req,
                             struct ol__entry_w *w, uint64_t id,
                             const char *op, const char *name,
                             uint64_t msg_seq)
{
    int rv = ol__node_propose(n, w);

    if (rv != 0)
        ol__ctl_reply_error(req, rv, "%s '%s': %s", op, name,
                            ol_strerror(rv));
    else
        wait_for(n, req, id, op, name, msg_seq);
}

/* The waiter just added for `req` (the list's head). */
static void waiter_first(struct ol__node *n, struct ol__ctl_req *req)
{
    if (n->waiters && n->waiters->ctl == req)
        n->waiters->first = 1;
}

/* A spawn waits until its plugin has loaded (in its host process), so a
 * plugin that does not load is refused before anything is committed. */
struct spawn_wait {
    struct ol__node *n;
    struct ol__ctl_req *req;
    struct ol__code *code;
    char name[OL_NAME_MAX + 1];
    char kind[OL_KIND_MAX + 1];
    struct ol__buf cfg;
    uint64_t id; /* the command id (request_ids()) */
    int wait;    /* answer after the first checkpoint, not the spawn */
};

static void spawn_loaded(void *data, int status, const char *errmsg)
{
    struct spawn_wait *sw = data;
    struct ol__node *n = sw->n;
    struct ol__entry_w w;
    uint64_t id = sw->id;
    int rv;

    if (status != 0) {
        ol__ctl_reply_error(sw->req, status, "spawn '%s': %s", sw->name,
                            errmsg);
    } else if (n->stopping) {
        ol__ctl_reply_error(sw->req, OL_ESHUTDOWN,
                            "spawn '%s': the node is shutting down",
                            sw->name);
    } else {
        ol__entry_w_init(&w);
        /* In a cluster the leader places it (owner 0). */
        rv = ol__entry_add_spawn(&w, id, sw->name, sw->kind, sw->cfg.base,
                                 sw->cfg.len, n->cluster ? 0 : n->self_id,
                                 0);
        if (rv == 0) {
            propose_and_wait(n, sw->req, &w, id, "spawn", sw->name, 0);
            if (sw->wait)
                waiter_first(n, sw->req);
        } else
            ol__ctl_reply_error(sw->req, rv, "spawn '%s': %s", sw->name,
                                ol_strerror(rv));
        ol__entry_w_close(&w);
    }
    ol__buf_close(&sw->cfg);
    ol__code_unref(sw->code);
    free(sw);
}

static void op_spawn(struct ol__node *n, struct ol__ctl_req *req,
                     const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2], kind[OL_KIND_MAX + 2];
    char err[OL_ERRMSG_SIZE];
    const msgpack_object *cfg = arg(args, "config");
    struct spawn_wait *sw;
    struct ol__code *code;
    msgpack_packer pk;
    uint64_t id;
    int rv;

    if (arg_str(args, "name", name, sizeof name) != 0 ||
        !ol__name_valid(name)) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "spawn: agent name must be 1-64 characters of "
                            "A-Z a-z 0-9 . _ - (not starting with . or -)");
        return;
    }
    if (arg_str(args, "kind", kind, sizeof kind) != 0 ||
        !ol__name_valid(kind)) {
        ol__ctl_reply_error(req, OL_EINVAL, "spawn: missing or bad kind");
        return;
    }
    if (cfg && cfg->type != MSGPACK_OBJECT_MAP &&
        cfg->type != MSGPACK_OBJECT_NIL) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "spawn '%s': config must be a JSON object", name);
        return;
    }
    if (cfg && ol__mp_object_depth(cfg) > OL_JSON_MAX_DEPTH) {
        ol__ctl_reply_error(req, OL_ETOOBIG,
                            "spawn '%s': config nests deeper than %d levels "
                            "of arrays and objects (the limit)",
                            name, OL_JSON_MAX_DEPTH);
        return;
    }
    if (request_ids(req, "spawn", args, &id, NULL) != 0)
        return;
    rv = ol__code_current(&n->codes, kind, 1, &code, err);
    if (rv != 0) {
        ol__ctl_reply_error(req, rv, "spawn '%s': %s", name, err);
        return;
    }
    sw = calloc(1, sizeof *sw);
    if (sw == NULL) {
        ol__ctl_reply_error(req, OL_ENOMEM, "out of memory");
        return;
    }
    sw->n = n;
    sw->req = req;
    sw->id = id;
    {
        const msgpack_object *nw = arg(args, "no_wait");

        sw->wait = !(nw && nw->type == MSGPACK_OBJECT_BOOLEAN &&
                     nw->via.boolean);
    }
    snprintf(sw->name, sizeof sw->name, "%s", name);
    snprintf(sw->kind, sizeof sw->kind, "%s", kind);
    ol__buf_init(&sw->cfg);
    msgpack_packer_init(&pk, &sw->cfg, ol__buf_write);
    if (cfg && cfg->type == MSGPACK_OBJECT_MAP)
        msgpack_pack_object(&pk, *cfg);
    else
        msgpack_pack_map(&pk, 0);
    if (sw->cfg.len > OL_AGENT_MSG_MAX) {
        ol__buf_close(&sw->cfg);
        free(sw);
        ol__ctl_reply_error(req, OL_ETOOBIG, "spawn '%s': config over %u "
                            "bytes", name, OL_AGENT_MSG_MAX);
        return;
    }
    ol__code_ref(code);
    sw->code = code;
    ol__code_wait(code, spawn_loaded, sw);
}

/* A command that a voter at an older feature level could not apply is
 * refused here, with the levels, rather than by the proposer. */
static int level_ok(struct ol__node *n, struct ol__ctl_req *req,
                    const char *op, uint32_t type)
{
    uint32_t need = ol__cmd_need(type);
    uint32_t have = n->replica->vt->level(n->replica);

    if (have >= need)
        return 1;
    ol__ctl_reply_error(req, OL_ENOTSUP,
                        "%s: the cluster runs feature level %" PRIu32
                        " and `%s` needs level %" PRIu32 ": every voter must "
                        "run a version that has it (and no [cluster] "
                        "feature_level below it); see `outlast cluster "
                        "status`",
                        op, have, op, need);
    return 0;
}

static void op_simple(struct ol__node *n, struct ol__ctl_req *req,
                      const char *op, const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    struct ol__entry_w w;
    uint64_t id;
    int rv;

    if (arg_str(args, "name", name, sizeof name) != 0 ||
        !ol__name_valid(name)) {
        ol__ctl_reply_error(req, OL_EINVAL, "%s: missing or bad agent name",
                            op);
        return;
    }
    if (request_ids(req, op, args, &id, NULL) != 0)
        return;
    ol__entry_w_init(&w);
    if (strcmp(op, "stop") == 0)
        rv = ol__entry_add_stop(&w, id, name);
    else
        rv = ol__entry_add_start(&w, id, name);
    if (rv == 0)
        propose_and_wait(n, req, &w, id, op, name, 0);
    else
        ol__ctl_reply_error(req, rv, "%s '%s': %s", op, name,
                            ol_strerror(rv));
    ol__entry_w_close(&w);
}

static void op_send(struct ol__node *n, struct ol__ctl_req *req,
                    const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    const msgpack_object *msg = arg(args, "message");
    struct ol__entry_w w;
    struct ol__buf mb;
    msgpack_packer pk;
    uint64_t id, seq;
    int rv;

    if (arg_str(args, "name", name, sizeof name) != 0 ||
        !ol__name_valid(name)) {
        ol__ctl_reply_error(req, OL_EINVAL, "send: missing or bad agent name");
        return;
    }
    if (msg == NULL) {
        ol__ctl_reply_error(req, OL_EINVAL, "send '%s': missing message",
                            name);
        return;
    }
    if (request_ids(req, "send", args, &id, &seq) != 0)
        return;
    if (ol__mp_object_depth(msg) > OL_JSON_MAX_DEPTH) {
        ol__ctl_reply_error(req, OL_ETOOBIG,
                            "send '%s': message nests deeper than %d levels "
                            "of arrays and objects (the limit)",
                            name, OL_JSON_MAX_DEPTH);
        return;
    }
    ol__buf_init(&mb);
    msgpack_packer_init(&pk, &mb, ol__buf_write);
    msgpack_pack_object(&pk, *msg);
    if (mb.base == NULL || mb.len > OL_AGENT_MSG_MAX) {
        ol__buf_close(&mb);
        ol__ctl_reply_error(req, OL_ETOOBIG,
                            "send '%s': message over %u bytes", name,
                            OL_AGENT_MSG_MAX);
        return;
    }
    ol__entry_w_init(&w);
    rv = ol__entry_add_send(&w, id, name, seq, mb.base, mb.len);
    ol__buf_close(&mb);
    if (rv == 0)
        propose_and_wait(n, req, &w, id, "send", name, seq);
    else
        ol__ctl_reply_error(req, rv, "send '%s': %s", name, ol_strerror(rv));
    ol__entry_w_close(&w);
}

/* Propose the RM a waiting `rm` was waiting to send.  Returns 0, or -1
 * after answering the waiter (which the caller then frees). */
static int rm_now(struct ol__node *n, struct ol__waiter *wt)
{
    struct ol__entry_w w;
    int rv;

    ol__entry_w_init(&w);
    rv = ol__entry_add_rm(&w, wt->rm_id, wt->name);
    if (rv == 0)
        rv = ol__node_propose(n, &w);
    ol__entry_w_close(&w);
    if (rv != 0) {
        ol__ctl_reply_error(wt->ctl, rv, "rm '%s': %s", wt->name,
                            ol_strerror(rv));
        return -1;
    }
    wt->req = wt->rm_id;
    wt->first = 0;
    return 0;
}

/* `rm`: a final stop (the agent's last checkpoint), then RM, which leaves
 * the row as a tombstone.  With a request id both commands' ids derive
 * from it, so a retried rm applies each once. */
static void op_rm(struct ol__node *n, struct ol__ctl_req *req,
                  const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    const struct ol__sm_agent *row;
    struct ol__entry_w w;
    uint64_t rm_id, stop_id;
    int rv, live;

    if (arg_str(args, "name", name, sizeof name) != 0 ||
        !ol__name_valid(name)) {
        ol__ctl_reply_error(req, OL_EINVAL, "rm: missing or bad agent name");
        return;
    }
    if (!level_ok(n, req, "rm", OL_CMD_RM) ||
        request_ids(req, "rm", args, &rm_id, &stop_id) != 0)
        return;
    row = n->sm ? ol__sm_agent(n->sm, name) : NULL;
    live = row && (row->status == OL_AGENT_RUNNING ||
                   row->status == OL_AGENT_STOPPING);
    ol__entry_w_init(&w);
    rv = live ? ol__entry_add_stop(&w, stop_id, name)
              : ol__entry_add_rm(&w, rm_id, name);
    if (rv == 0) {
        propose_and_wait(n, req, &w, live ? stop_id : rm_id, "rm", name, 0);
        if (live && n->waiters && n->waiters->ctl == req) {
            n->waiters->first = 2;
            n->waiters->rm_id = rm_id;
        }
    } else {
        ol__ctl_reply_error(req, rv, "rm '%s': %s", name, ol_strerror(rv));
    }
    ol__entry_w_close(&w);
}

/* A new config for an agent: a CONFIG command, so the row and the
 * agent's mailbox change together. */
static void op_config(struct ol__node *n, struct ol__ctl_req *req,
                      const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    const msgpack_object *cfg = arg(args, "config");
    struct ol__entry_w w;
    struct ol__buf b;
    msgpack_packer pk;
    uint64_t id, seq;
    int rv;

    if (arg_str(args, "name", name, sizeof name) != 0 ||
        !ol__name_valid(name)) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "config: missing or bad agent name");
        return;
    }
    if (cfg == NULL || cfg->type != MSGPACK_OBJECT_MAP) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "config '%s': the config must be a JSON object",
                            name);
        return;
    }
    if (ol__mp_object_depth(cfg) > OL_JSON_MAX_DEPTH) {
        ol__ctl_reply_error(req, OL_ETOOBIG,
                            "config '%s': config nests deeper than %d "
                            "levels of arrays and objects (the limit)",
                            name, OL_JSON_MAX_DEPTH);
        return;
    }
    if (!level_ok(n, req, "config", OL_CMD_CONFIG) ||
        request_ids(req, "config", args, &id, &seq) != 0)
        return;
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_object(&pk, *cfg);
    if (b.base == NULL || b.len > OL_AGENT_MSG_MAX) {
        ol__buf_close(&b);
        ol__ctl_reply_error(req, OL_ETOOBIG,
                            "config '%s': config over %u bytes", name,
                            OL_AGENT_MSG_MAX);
        return;
    }
    ol__entry_w_init(&w);
    rv = ol__entry_add_config(&w, id, name, seq, b.base, b.len);
    ol__buf_close(&b);
    if (rv == 0)
        propose_and_wait(n, req, &w, id, "config", name, 0);
    else
        ol__ctl_reply_error(req, rv, "config '%s': %s", name,
                            ol_strerror(rv));
    ol__entry_w_close(&w);
}

static void op_upgrade(struct ol__node *n, struct ol__ctl_req *req,
                       const msgpack_object *args)
{
    char kind[OL_KIND_MAX + 2], file[PATH_MAX];
    const msgpack_object *f = arg(args, "file");

    if (arg_str(args, "kind", kind, sizeof kind) != 0 ||
        !ol__name_valid(kind)) {
        ol__ctl_reply_error(req, OL_EINVAL, "upgrade: missing or bad kind");
        return;
    }
    if (f && arg_str(args, "file", file, sizeof file) != 0) {
        ol__ctl_reply_error(req, OL_EINVAL, "upgrade '%s': bad file name",
                            kind);
        return;
    }
    ol__op_upgrade(n, req, kind, f ? file : NULL);
}

/* The agent's row in an answer: four entries. */
static void pack_row(struct resp *r, const struct ol__sm_agent *row)
{
    pk_str(&r->pk, "kind");
    pk_str(&r->pk, row->kind);
    pk_kv_u64(&r->pk, "owner", row->owner);
    pk_kv_u64(&r->pk, "epoch", row->epoch);
    pk_str(&r->pk, "status");
    pk_str(&r->pk, ol__status_name(row->status));
}

static void answer(struct ol__waiter *w, const struct ol__effect *e,
                   const struct ol__sm_agent *row)
{
    struct resp r;

    if (e->status != 0) {
        ol__ctl_reply_error(w->ctl, e->status, "%s '%s': %s", w->op,
                            w->name, e->errmsg[0] ? e->errmsg
                                                  : ol_strerror(e->status));
        return;
    }
    resp_begin(&r, 1 + (w->msg_seq != 0) + (row ? 4 : 0));
    pk_str(&r.pk, "name");
    pk_str(&r.pk, w->name);
    if (w->msg_seq)
        pk_kv_u64(&r.pk, "msg_seq", w->msg_seq);
    if (row)
        pack_row(&r, row);
    resp_send(&r, w->ctl);
}

void ol__waiters_effect(struct ol__node *n, const struct ol__effect *e,
                        const struct ol__sm_agent *row)
{
    struct ol__waiter **pp = &n->waiters, *w;

    if (e->u.cmd.req == 0)
        return;
    /* Every waiter for the command: a client that sent the same request
     * id twice to this node waits twice for one command. */
    while ((w = *pp) != NULL) {
        if (w->req != e->u.cmd.req) {
            pp = &w->next;
            continue;
        }
        /* `stop` answers once the final checkpoint has committed. */
        if (e->status == 0 && strcmp(w->op, "stop") == 0 && row &&
            row->status == OL_AGENT_STOPPING) {
            w->req = 0;
            pp = &w->next;
            continue;
        }
        /* An rm whose stop committed: remove once the final checkpoint
         * has (the agent is STOPPING until then), or now. */
        if (e->status == 0 && w->first == 2) {
            if (row && row->status == OL_AGENT_STOPPING) {
                w->req = 0;
                pp = &w->next;
                continue;
            }
            if (rm_now(n, w) == 0) {
                pp = &w->next;
                continue;
            }
            *pp = w->next;
            free(w);
            continue;
        }
        /* A new agent's spawn answers after its first checkpoint (or its
         * quarantine), so a plugin that refuses its config fails the
         * spawn.  A retried spawn (no row) answers now. */
        if (e->status == 0 && w->first && row) {
            w->req = 0;
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        answer(w, e, row);
        free(w);
    }
}

void ol__waiters_agent(struct ol__node *n, const struct ol__sm_agent *row)
{
    struct ol__waiter **pp = &n->waiters, *w;
    struct resp r;

    if (row->status == OL_AGENT_RUNNING || row->status == OL_AGENT_STOPPING)
        return;
    while ((w = *pp) != NULL) {
        if (w->req != 0 || strcmp(w->name, row->name) != 0) {
            pp = &w->next;
            continue;
        }
        if (w->first == 2) {
            /* The rm's stop is done: now the tombstone. */
            if (rm_now(n, w) == 0) {
                pp = &w->next;
                continue;
            }
            *pp = w->next;
            free(w);
            continue;
        }
        *pp = w->next;
        if (w->first && row->status == OL_AGENT_QUARANTINED) {
            ol__ctl_reply_error(w->ctl, OL_EPLUGIN,
                                "spawn '%s': the agent was quarantined "
                                "before its first checkpoint: %s; it is "
                                "kept (fix it, then `outlast start`, or "
                                "`outlast rm` it)",
                                w->name, row->reason);
            free(w);
            continue;
        }
        resp_begin(&r, 5);
        pk_str(&r.pk, "name");
        pk_str(&r.pk, w->name);
        pack_row(&r, row);
        resp_send(&r, w->ctl);
        free(w);
    }
}

void ol__waiters_ckpt(struct ol__node *n, const char *name)
{
    struct ol__waiter **pp = &n->waiters, *w;
    const struct ol__sm_agent *row;
    struct resp r;

    while ((w = *pp) != NULL) {
        if (w->req != 0 || w->first != 1 || strcmp(w->name, name) != 0) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        row = n->sm ? ol__sm_agent(n->sm, name) : NULL;
        resp_begin(&r, 1 + (row ? 4 : 0));
        pk_str(&r.pk, "name");
        pk_str(&r.pk, w->name);
        if (row)
            pack_row(&r, row);
        resp_send(&r, w->ctl);
        free(w);
    }
}

void ol__waiters_drop(struct ol__node *n)
{
    struct ol__waiter *w = n->waiters, *next;

    for (; w; w = next) {
        next = w->next;
        ol__ctl_reply_error(w->ctl, OL_ESHUTDOWN,
                            "%s '%s': the node is shutting down; the outcome "
                            "is unknown",
                            w->op, w->name);
        free(w);
    }
    n->waiters = NULL;
}

static void member_done(void *data, int status, const char *msg)
{
    struct ol__ctl_req *req = data;
    struct resp r;

    if (status != 0) {
        ol__ctl_reply_error(req, status, "%s", msg);
        return;
    }
    resp_begin(&r, 1);
    pk_str(&r.pk, "message");
    pk_str(&r.pk, msg);
    resp_send(&r, req);
}

static void op_cluster(struct ol__node *n, struct ol__ctl_req *req,
                       const char *op, const msgpack_object *args)
{
    char err[OL_ERRMSG_SIZE], addr[OL_ADDR_MAX], pkhex[80], labels[OL_LABELS_MAX + 1] = "";
    const msgpack_object *id = arg(args, "id");
    uint8_t pk[OL_PK_SIZE];
    struct resp r;
    int rv;

    if (strcmp(op, "cluster.status") == 0) {
        resp_begin(&r, 1);
        pk_str(&r.pk, "cluster");
        ol__cluster_status(n->replica, &r.pk);
        resp_send(&r, req);
        return;
    }
    if (strcmp(op, "cluster.init") == 0) {
        ol__ctl_reply_error(req, OL_ESTATE,
                            "cluster.init: this node is running; bootstrap "
                            "with `outlast cluster init --config FILE` "
                            "before its first start, or set bootstrap = "
                            "true in [cluster]");
        return;
    }
    if (id == NULL || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        id->via.u64 == 0) {
        ol__ctl_reply_error(req, OL_EINVAL, "%s: missing node id", op);
        return;
    }
    if (strcmp(op, "cluster.remove") == 0) {
        rv = ol__cluster_remove(n->replica, id->via.u64, member_done, req,
                                err);
        if (rv != 0)
            ol__ctl_reply_error(req, rv, "cluster remove: %s", err);
        return;
    }
    if (strcmp(op, "cluster.add") != 0) {
        ol__ctl_reply_error(req, OL_EINVAL, "unknown operation '%s'", op);
        return;
    }
    if (arg_str(args, "address", addr, sizeof addr) != 0 || !addr[0] ||
        arg_str(args, "pk", pkhex, sizeof pkhex) != 0 ||
        ol__pk_parse(pkhex, pk) != 0) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "cluster add: needs an address and the new "
                            "node's public key (64 hex digits)");
        return;
    }
    (void)arg_str(args, "labels", labels, sizeof labels);
    rv = ol__cluster_add(n->replica, id->via.u64, addr, pk, labels,
                         member_done, req, err);
    if (rv != 0)
        ol__ctl_reply_error(req, rv, "cluster add: %s", err);
}

static void logs_done(void *data, int status, const char *errmsg,
                      const void *map, size_t len)
{
    struct ol__ctl_req *req = data;
    struct resp r;

    if (status != 0) {
        ol__ctl_reply_error(req, status, "%s", errmsg);
        return;
    }
    resp_begin(&r, 1);
    pk_str(&r.pk, "logs");
    /* The map is already msgpack (checked if it came from a peer). */
    if (ol__buf_append(&r.buf, map, len) != 0) {
        ol__buf_close(&r.buf);
        ol__ctl_reply_error(req, OL_ENOMEM, "out of memory");
        return;
    }
    resp_send(&r, req);
}

static void op_logs(struct ol__node *n, struct ol__ctl_req *req,
                    const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    const msgpack_object *after = arg(args, "after"), *lim = arg(args,
                                                                 "limit");

    if (arg_str(args, "name", name, sizeof name) != 0 ||
        !ol__name_valid(name)) {
        ol__ctl_reply_error(req, OL_EINVAL, "logs: missing or bad agent name");
        return;
    }
    if ((after && after->type != MSGPACK_OBJECT_POSITIVE_INTEGER) ||
        (lim && (lim->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                 lim->via.u64 == 0 || lim->via.u64 > 1000))) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "logs: 'after' must be a whole number and "
                            "'limit' one from 1 to 1000");
        return;
    }
    ol__logs_fetch(n, name, after ? after->via.u64 : 0,
                   lim ? (uint32_t)lim->via.u64 : 200, logs_done, req);
}

void ol__ctl_handle(void *data, struct ol__ctl_req *req, const char *op,
                    const msgpack_object *args)
{
    struct ol__node *n = data;

    if (strcmp(op, "status") == 0)
        op_status(n, req, args);
    else if (strcmp(op, "logs") == 0)
        op_logs(n, req, args);
    else if (strcmp(op, "agents") == 0 || strcmp(op, "show") == 0 ||
             strcmp(op, "history") == 0)
        op_query(n, req, op, args);
    else if (n->stopping)
        ol__ctl_reply_error(req, OL_ESHUTDOWN, "%s: the node is shutting "
                                                "down", op);
    else if (strcmp(op, "spawn") == 0)
        op_spawn(n, req, args);
    else if (strcmp(op, "stop") == 0 || strcmp(op, "start") == 0)
        op_simple(n, req, op, args);
    else if (strcmp(op, "rm") == 0)
        op_rm(n, req, args);
    else if (strcmp(op, "config") == 0)
        op_config(n, req, args);
    else if (strcmp(op, "send") == 0)
        op_send(n, req, args);
    else if (strcmp(op, "upgrade") == 0)
        op_upgrade(n, req, args);
    else if (strncmp(op, "cluster.", 8) == 0 && !n->cluster)
        ol__ctl_reply_error(req, OL_ESTATE,
                            "%s: this node runs alone (its config has no "
                            "[cluster] section)",
                            op);
    else if (strncmp(op, "cluster.", 8) == 0)
        op_cluster(n, req, op, args);
    else
        ol__ctl_reply_error(req, OL_EINVAL, "unknown operation '%s'", op);
}
