/*
 * The control requests that only read: `status`, and `agents`, `show`
 * and `history` from the loop thread's read-only connection, with the
 * live figures of the agents hosted here.
 */
#include <stdint.h>
#include <string.h>

#include "base/err.h"
#include "base/sizes.h"
#include "state/query.h"
#include "state/store.h"
#include "node_view.h"
#include "handlers_int.h"

void ol__op_status(struct ol__node *n, struct ol__ctl_req *req,
                   const msgpack_object *args)
{
    const msgpack_object *reset = ol__arg(args, "reset");
    struct ol__resp r;

    ol__resp_begin(&r);
    ol__node_pack_status(n, &r.m);
    ol__resp_send(&r, req);
    /* {"reset": true}: the latency figures above start a new window. */
    if (reset && reset->type == MSGPACK_OBJECT_BOOLEAN && reset->via.boolean)
        ol__node_status_reset(n);
}

/* The filter of an `agents` request: all, status, kind, owner, prefix,
 * after, limit.  Strings point into `args`, copied into `buf`.  Returns 0,
 * or -1 after replying with an error that names the field. */
struct filter_buf {
    char kind[OL_KIND_MAX + 2], prefix[OL_NAME_MAX + 2];
    char after[OL_NAME_MAX + 2], status[24];
};

/* An optional string of the filter, `key`, copied into `buf`: a kind
 * (`kind`) or a name or its prefix.  0 (*out set if given), or -1 after
 * replying "agents: MSG". */
static int filter_str(struct ol__ctl_req *req, const msgpack_object *args,
                      const char *key, char *buf, size_t cap, int kind,
                      const char *msg, const char **out)
{
    if (ol__arg(args, key) == NULL)
        return 0;
    if (ol__arg_str(args, key, buf, cap) != 0 ||
        (kind ? !ol__name_valid(buf) : strlen(buf) > OL_NAME_MAX)) {
        ol__ctl_reply_error(req, OL_EINVAL, "agents: %s", msg);
        return -1;
    }
    *out = buf;
    return 0;
}

static int agent_filter(struct ol__ctl_req *req, const msgpack_object *args,
                        struct ol__agent_filter *f, struct filter_buf *b)
{
    const msgpack_object *o;

    memset(f, 0, sizeof *f);
    o = ol__arg(args, "all");
    f->all = o && o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
    if (ol__arg(args, "status")) {
        if (ol__arg_str(args, "status", b->status, sizeof b->status) != 0 ||
            (f->status = ol__status_parse(b->status)) == 0) {
            ol__ctl_reply_error(req, OL_EINVAL,
                                "agents: status must be running, stopping, "
                                "stopped, quarantined or removed");
            return -1;
        }
    }
    if (filter_str(req, args, "kind", b->kind, sizeof b->kind, 1,
                   "bad kind", &f->kind) != 0 ||
        filter_str(req, args, "prefix", b->prefix, sizeof b->prefix, 0,
                   "bad name prefix", &f->prefix) != 0 ||
        filter_str(req, args, "after", b->after, sizeof b->after, 0,
                   "bad 'after' name", &f->after) != 0)
        return -1;
    o = ol__arg(args, "owner");
    if (o && (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 == 0)) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "agents: owner must be a node id (1 or more)");
        return -1;
    }
    f->owner = o ? o->via.u64 : 0;
    o = ol__arg(args, "limit");
    if (o && (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
              o->via.u64 > UINT32_MAX)) {
        ol__ctl_reply_error(req, OL_EINVAL, "agents: bad limit");
        return -1;
    }
    f->limit = o ? (uint32_t)o->via.u64 : 0;
    return 0;
}

void ol__op_query(struct ol__node *n, struct ol__ctl_req *req,
                  const char *op, const msgpack_object *args)
{
    char name[OL_NAME_MAX + 1] = "";
    char err[OL_ERRMSG_SIZE] = "";
    const msgpack_object *lim;
    uint64_t limit = 50;
    struct ol__agent_filter f;
    struct filter_buf fb;
    struct ol__resp r;
    int rv;

    if (strcmp(op, "agents") != 0 &&
        ol__arg_str(args, "name", name, sizeof name) != 0) {
        ol__ctl_reply_error(req, OL_EINVAL, "%s: missing agent name", op);
        return;
    }
    lim = ol__arg(args, "limit");
    if (lim && lim->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        limit = lim->via.u64;
    if (strcmp(op, "agents") == 0 && agent_filter(req, args, &f, &fb) != 0)
        return;
    ol__resp_begin(&r);
    if (strcmp(op, "agents") == 0) {
        ol__pk_key(&r.m, "agents");
        rv = ol__query_agents(ol__node_reader(n), &r.pk, &f, err);
    } else if (strcmp(op, "show") == 0) {
        ol__pk_key(&r.m, "agent");
        rv = ol__query_show(ol__node_reader(n), name, &r.pk, err);
    } else {
        ol__pk_key(&r.m, "history");
        rv = ol__query_history(ol__node_reader(n), name,
                               limit > UINT32_MAX ? UINT32_MAX
                                                  : (uint32_t)limit,
                               &r.pk, err);
    }
    if (rv != 0) {
        ol__buf_close(&r.buf);
        if (ol__sqlite_damaged(ol__node_reader(n)))
            ol__node_storage_fault(n, name[0] ? name : NULL, "%s: %s", op,
                                   err[0] ? err : ol_strerror(rv));
        ol__ctl_reply_error(req, rv, "%s", err[0] ? err : ol_strerror(rv));
        return;
    }
    ol__pk_key(&r.m, "live");
    ol__node_pack_live(n, &r.pk, &r.buf,
                       strcmp(op, "show") == 0 ? name : NULL);
    ol__resp_send(&r, req);
}
