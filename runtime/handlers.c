/*
 * The daemon's answers to control requests: the dispatch by operation,
 * what every handler shares (arguments, answers, command ids), and the
 * cluster and log operations.  Reads go to the loop thread's own
 * read-only connection (handlers_query.c); changes are proposed as
 * commands (handlers_agents.c), and the request waits until the state
 * machine reports the command's outcome (handlers_wait.c), so "spawned"
 * means committed.  Handlers see the node through node_view.h.
 */
#include <limits.h>
#include <sodium.h>
#include <string.h>

#include "base/err.h"
#include "base/keys.h"
#include "base/log.h"
#include "base/mpr.h"
#include "base/pack.h"
#include "base/sizes.h"
#include "replication/cluster.h"
#include "replication/placement.h"
#include "handlers.h"
#include "logs.h"
#include "node_view.h"
#include "upgrade.h"
#include "handlers_int.h"

const msgpack_object *ol__arg(const msgpack_object *args, const char *key)
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

int ol__arg_str(const msgpack_object *args, const char *key, char *out,
                size_t cap)
{
    const msgpack_object *o = ol__arg(args, key);

    if (o == NULL || o->type != MSGPACK_OBJECT_STR ||
        o->via.str.size >= cap || memchr(o->via.str.ptr, 0, o->via.str.size))
        return -1;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return 0;
}

int ol__arg_name(struct ol__ctl_req *req, const char *op,
                 const msgpack_object *args, char name[OL_NAME_MAX + 2])
{
    if (ol__arg_str(args, "name", name, OL_NAME_MAX + 2) == 0 &&
        ol__name_valid(name))
        return 0;
    ol__ctl_reply_error(req, OL_EINVAL, "%s: missing or bad agent name", op);
    return -1;
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
int ol__request_ids(struct ol__ctl_req *req, const char *op,
                    const msgpack_object *args, uint64_t *id,
                    uint64_t *seq)
{
    static const char domain[] = "outlast request id v1";
    const msgpack_object *o = ol__arg(args, "request_id");
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

void ol__resp_begin(struct ol__resp *r)
{
    ol__buf_init(&r->buf);
    msgpack_packer_init(&r->pk, &r->buf, ol__buf_write);
    ol__pk_map_begin(&r->m, &r->pk, &r->buf);
    ol__pk_kv_bool(&r->m, "ok", 1);
}

void ol__resp_send(struct ol__resp *r, struct ol__ctl_req *req)
{
    size_t off = 0;

    /* Parts of an answer come from elsewhere (a replica's status, a
     * peer's log lines): bytes a client cannot parse must not reach it. */
    if (ol__pk_map_end(&r->m) != 0 || r->buf.base == NULL)
        ol__ctl_reply_error(req, OL_ENOMEM, "out of memory");
    else if (ol__mp_check(r->buf.base, r->buf.len, &off) != 0) {
        ol_log(OL_LOG_ERROR, "internal: malformed response (byte %zu)", off);
        ol__ctl_reply_error(req, OL_EMALFORMED,
                            "internal error: malformed response");
    } else
        ol__ctl_reply(req, r->buf.base, r->buf.len);
    ol__buf_close(&r->buf);
}

void ol__resp_row(struct ol__resp *r, const struct ol__sm_agent *row)
{
    ol__pk_kv_str(&r->m, "kind", row->kind);
    ol__pk_kv_uint(&r->m, "owner", row->owner);
    ol__pk_kv_uint(&r->m, "epoch", row->epoch);
    ol__pk_kv_str(&r->m, "status", ol__status_name(row->status));
}

static void op_upgrade(struct ol__node *n, struct ol__ctl_req *req,
                       const msgpack_object *args)
{
    char kind[OL_KIND_MAX + 2], file[PATH_MAX];
    const msgpack_object *f = ol__arg(args, "file");

    if (ol__arg_str(args, "kind", kind, sizeof kind) != 0 ||
        !ol__name_valid(kind)) {
        ol__ctl_reply_error(req, OL_EINVAL, "upgrade: missing or bad kind");
        return;
    }
    if (f && ol__arg_str(args, "file", file, sizeof file) != 0) {
        ol__ctl_reply_error(req, OL_EINVAL, "upgrade '%s': bad file name",
                            kind);
        return;
    }
    ol__op_upgrade(n, req, kind, f ? file : NULL);
}

static void member_done(void *data, int status, const char *msg)
{
    struct ol__ctl_req *req = data;
    struct ol__resp r;

    if (status != 0) {
        ol__ctl_reply_error(req, status, "%s", msg);
        return;
    }
    ol__resp_begin(&r);
    ol__pk_kv_str(&r.m, "message", msg);
    ol__resp_send(&r, req);
}

/* cluster.promote / cluster.demote: node `id` becomes a voter or a
 * standby. */
static void op_cluster_role(struct ol__node *n, struct ol__ctl_req *req,
                            const char *op, uint64_t id)
{
    char err[OL_ERRMSG_SIZE];
    int promote = strcmp(op, "cluster.promote") == 0;
    int rv = ol__cluster_set_role(ol__node_replica(n), id,
                                  promote ? OL_ROLE_VOTER : OL_ROLE_STANDBY,
                                  member_done, req, err);

    if (rv != 0)
        ol__ctl_reply_error(req, rv, "cluster %s: %s",
                            promote ? "promote" : "demote", err);
}

static void transfer_done(void *data, int status,
                          const struct ol__cluster_transfer_result *res)
{
    struct ol__ctl_req *req = data;
    struct ol__resp r;

    if (status != 0) {
        ol__ctl_reply_error(req, status, "cluster transfer: %s",
                            res->message);
        return;
    }
    ol__resp_begin(&r);
    ol__pk_kv_uint(&r.m, "leader", res->leader);
    ol__pk_kv_str(&r.m, "address", res->address);
    ol__pk_kv_uint(&r.m, "term", res->term);
    ol__pk_kv_uint(&r.m, "elapsed_ms", res->elapsed_ms);
    ol__pk_kv_str(&r.m, "message", res->message);
    ol__resp_send(&r, req);
}

/* cluster.transfer {id?}: answered when the transfer ends. */
static void op_transfer(struct ol__node *n, struct ol__ctl_req *req,
                        const msgpack_object *id)
{
    char err[OL_ERRMSG_SIZE];
    int rv;

    if (id && (id->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
               id->via.u64 == 0)) {
        ol__ctl_reply_error(req, OL_EINVAL, "cluster transfer: the node id "
                                            "must be a positive whole "
                                            "number");
        return;
    }
    rv = ol__cluster_transfer(ol__node_replica(n), id ? id->via.u64 : 0,
                              transfer_done, req, err);
    if (rv != 0)
        ol__ctl_reply_error(req, rv, "cluster transfer: %s", err);
}

static void op_cluster(struct ol__node *n, struct ol__ctl_req *req,
                       const char *op, const msgpack_object *args)
{
    char err[OL_ERRMSG_SIZE], addr[OL_ADDR_MAX], pkhex[80];
    char labels[OL_LABELS_MAX + 1] = "";
    const msgpack_object *id = ol__arg(args, "id");
    uint8_t pk[OL_PK_SIZE];
    struct ol__resp r;
    int rv;

    if (strcmp(op, "cluster.status") == 0) {
        ol__resp_begin(&r);
        ol__pk_key(&r.m, "cluster");
        ol__cluster_status(ol__node_replica(n), &r.pk);
        ol__node_pack_wire(n, &r.m);
        ol__resp_send(&r, req);
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
    if (strcmp(op, "cluster.transfer") == 0) {
        op_transfer(n, req, id);
        return;
    }
    if (id == NULL || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        id->via.u64 == 0) {
        ol__ctl_reply_error(req, OL_EINVAL, "%s: missing node id", op);
        return;
    }
    if (strcmp(op, "cluster.remove") == 0) {
        rv = ol__cluster_remove(ol__node_replica(n), id->via.u64,
                                member_done, req, err);
        if (rv != 0)
            ol__ctl_reply_error(req, rv, "cluster remove: %s", err);
        return;
    }
    if (strcmp(op, "cluster.promote") == 0 ||
        strcmp(op, "cluster.demote") == 0) {
        op_cluster_role(n, req, op, id->via.u64);
        return;
    }
    if (strcmp(op, "cluster.add") != 0) {
        ol__ctl_reply_error(req, OL_EINVAL, "unknown operation '%s'", op);
        return;
    }
    if (ol__arg_str(args, "address", addr, sizeof addr) != 0 || !addr[0] ||
        ol__arg_str(args, "pk", pkhex, sizeof pkhex) != 0 ||
        ol__pk_parse(pkhex, pk) != 0) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "cluster add: needs an address and the new "
                            "node's public key (64 hex digits)");
        return;
    }
    (void)ol__arg_str(args, "labels", labels, sizeof labels);
    rv = ol__cluster_add(ol__node_replica(n), id->via.u64, addr, pk, labels,
                         member_done, req, err);
    if (rv != 0)
        ol__ctl_reply_error(req, rv, "cluster add: %s", err);
}

static void logs_done(void *data, int status, const char *errmsg,
                      const void *map, size_t len)
{
    struct ol__ctl_req *req = data;
    struct ol__resp r;

    if (status != 0) {
        ol__ctl_reply_error(req, status, "%s", errmsg);
        return;
    }
    ol__resp_begin(&r);
    ol__pk_key(&r.m, "logs");
    /* The map is already msgpack (checked if it came from a peer). */
    if (ol__buf_append(&r.buf, map, len) != 0) {
        ol__buf_close(&r.buf);
        ol__ctl_reply_error(req, OL_ENOMEM, "out of memory");
        return;
    }
    ol__resp_send(&r, req);
}

static void op_logs(struct ol__node *n, struct ol__ctl_req *req,
                    const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    const msgpack_object *after = ol__arg(args, "after");
    const msgpack_object *lim = ol__arg(args, "limit");

    if (ol__arg_name(req, "logs", args, name) != 0)
        return;
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
        ol__op_status(n, req, args);
    else if (strcmp(op, "logs") == 0)
        op_logs(n, req, args);
    else if (strcmp(op, "agents") == 0 || strcmp(op, "show") == 0 ||
             strcmp(op, "history") == 0)
        ol__op_query(n, req, op, args);
    else if (strcmp(op, "effects") == 0)
        ol__op_effects(n, req, args);
    else if (ol__node_stopping(n))
        ol__ctl_reply_error(req, OL_ESHUTDOWN, "%s: the node is shutting "
                                                "down", op);
    else if (strcmp(op, "spawn") == 0)
        ol__op_spawn(n, req, args);
    else if (strcmp(op, "stop") == 0 || strcmp(op, "start") == 0)
        ol__op_simple(n, req, op, args);
    else if (strcmp(op, "spawn_many") == 0 ||
             strcmp(op, "stop_many") == 0 || strcmp(op, "start_many") == 0)
        ol__op_bulk(n, req, op, args);
    else if (strcmp(op, "rm") == 0)
        ol__op_rm(n, req, args);
    else if (strcmp(op, "config") == 0)
        ol__op_config(n, req, args);
    else if (strcmp(op, "send") == 0)
        ol__op_send(n, req, args);
    else if (strcmp(op, "upgrade") == 0)
        op_upgrade(n, req, args);
    else if (strncmp(op, "cluster.", 8) == 0 && !ol__node_clustered(n))
        ol__ctl_reply_error(req, OL_ESTATE,
                            "%s: this node runs alone (its config has no "
                            "[cluster] section)",
                            op);
    else if (strncmp(op, "cluster.", 8) == 0)
        op_cluster(n, req, op, args);
    else
        ol__ctl_reply_error(req, OL_EINVAL, "unknown operation '%s'", op);
}
