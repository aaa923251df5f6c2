/*
 * The control requests that change agents: spawn, stop, start, send,
 * config and rm.  Each is checked, proposed as a command, and answered
 * when the command's outcome is known (handlers_wait.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h> /* replication/replica.h needs it first */

#include "base/err.h"
#include "base/json.h"
#include "base/sizes.h"
#include "replication/placement.h"
#include "code.h"
#include "replication/replica.h"
#include "node_view.h"
#include "handlers_int.h"

/* Does `o` nest no deeper than JSON may?  Otherwise reply
 * "OP 'NAME': WHAT nests deeper ..." and return 0. */
static int depth_ok(struct ol__ctl_req *req, const char *op,
                    const char *name, const char *what,
                    const msgpack_object *o)
{
    if (ol__mp_object_depth(o) <= OL_JSON_MAX_DEPTH)
        return 1;
    ol__ctl_reply_error(req, OL_ETOOBIG,
                        "%s '%s': %s nests deeper than %d levels of arrays "
                        "and objects (the limit)",
                        op, name, what, OL_JSON_MAX_DEPTH);
    return 0;
}

/* Pack `o` into `b` (initialised here).  Returns 0, or -1 after replying
 * that it is over OL_AGENT_MSG_MAX (b is then closed). */
static int pack_value(struct ol__ctl_req *req, const char *op,
                      const char *name, const char *what,
                      const msgpack_object *o, struct ol__buf *b)
{
    msgpack_packer pk;

    ol__buf_init(b);
    msgpack_packer_init(&pk, b, ol__buf_write);
    msgpack_pack_object(&pk, *o);
    if (b->base != NULL && b->len <= OL_AGENT_MSG_MAX)
        return 0;
    ol__buf_close(b);
    ol__ctl_reply_error(req, OL_ETOOBIG, "%s '%s': %s over %u bytes", op,
                        name, what, OL_AGENT_MSG_MAX);
    return -1;
}

/* A command was added to `w` (`rv`, the outcome): propose it and wait
 * for command `id`, or reply with the error.  Closes `w`. */
static void submit(struct ol__node *n, struct ol__ctl_req *req,
                   struct ol__entry_w *w, int rv, uint64_t id,
                   const char *op, const char *name, uint64_t msg_seq)
{
    if (rv == 0)
        ol__propose_and_wait(n, req, w, id, op, name, msg_seq);
    else
        ol__ctl_reply_error(req, rv, "%s '%s': %s", op, name,
                            ol_strerror(rv));
    ol__entry_w_close(w);
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
    uint64_t id; /* the command id (ol__request_ids()) */
    int wait;    /* answer after the first checkpoint, not the spawn */
};

static void spawn_loaded(void *data, int status, const char *errmsg)
{
    struct spawn_wait *sw = data;
    struct ol__node *n = sw->n;
    uint64_t owner = ol__node_clustered(n) ? 0 : ol__node_self(n);
    struct ol__waiter *wt;
    struct ol__entry_w w;
    uint64_t id = sw->id;
    int rv;

    if (status != 0) {
        ol__ctl_reply_error(sw->req, status, "spawn '%s': %s", sw->name,
                            errmsg);
    } else if (ol__node_stopping(n)) {
        ol__ctl_reply_error(sw->req, OL_ESHUTDOWN,
                            "spawn '%s': the node is shutting down",
                            sw->name);
    } else {
        ol__entry_w_init(&w);
        /* In a cluster the leader places it (owner 0). */
        rv = ol__entry_add_spawn(&w, id, sw->name, sw->kind, sw->cfg.base,
                                 sw->cfg.len, owner, 0);
        if (rv == 0) {
            ol__propose_and_wait(n, sw->req, &w, id, "spawn", sw->name, 0);
            wt = sw->wait ? ol__waiter_of(n, sw->req) : NULL;
            if (wt)
                wt->first = 1;
        } else
            ol__ctl_reply_error(sw->req, rv, "spawn '%s': %s", sw->name,
                                ol_strerror(rv));
        ol__entry_w_close(&w);
    }
    ol__buf_close(&sw->cfg);
    ol__code_unref(sw->code);
    free(sw);
}

int ol__affinity_ok(const msgpack_object *cfg, char *err, size_t cap)
{
    static const char *const keys[] = {"prefer", "avoid"};
    char v[OL_LABELS_MAX + 1];

    if (cfg == NULL || cfg->type != MSGPACK_OBJECT_MAP)
        return 1;
    for (size_t k = 0; k < 2; k++) {
        const msgpack_object *o = ol__arg(cfg, keys[k]);

        if (o == NULL)
            continue;
        if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= sizeof v) {
            snprintf(err, cap, "config key '%s' must be a string of labels "
                               "(k=v,k=v) up to %d bytes",
                     keys[k], OL_LABELS_MAX);
            return 0;
        }
        memcpy(v, o->via.str.ptr, o->via.str.size);
        v[o->via.str.size] = '\0';
        if (!ol__label_list_valid(v)) {
            snprintf(err, cap, "config key '%s' must be labels k=v,k=v "
                               "(letters, digits, _ . -), not '%.60s'",
                     keys[k], v);
            return 0;
        }
    }
    return 1;
}

void ol__op_spawn(struct ol__node *n, struct ol__ctl_req *req,
                  const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2], kind[OL_KIND_MAX + 2];
    char err[OL_ERRMSG_SIZE];
    const msgpack_object *cfg = ol__arg(args, "config");
    struct spawn_wait *sw;
    struct ol__code *code;
    msgpack_packer pk;
    uint64_t id;
    int rv;

    if (ol__arg_str(args, "name", name, sizeof name) != 0 ||
        !ol__name_valid(name)) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "spawn: agent name must be 1-64 characters of "
                            "A-Z a-z 0-9 . _ - (not starting with . or -)");
        return;
    }
    if (ol__arg_str(args, "kind", kind, sizeof kind) != 0 ||
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
    if (cfg && !depth_ok(req, "spawn", name, "config", cfg))
        return;
    if (!ol__affinity_ok(cfg, err, sizeof err)) {
        ol__ctl_reply_error(req, OL_EINVAL, "spawn '%s': %s", name, err);
        return;
    }
    if (ol__request_ids(req, "spawn", args, &id, NULL) != 0)
        return;
    rv = ol__code_current(ol__node_codes(n), kind, 1, &code, err);
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
        const msgpack_object *nw = ol__arg(args, "no_wait");

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
    uint32_t have = ol__node_replica(n)->vt->level(ol__node_replica(n));

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

void ol__op_simple(struct ol__node *n, struct ol__ctl_req *req,
                   const char *op, const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    struct ol__entry_w w;
    uint64_t id;
    int rv;

    if (ol__arg_name(req, op, args, name) != 0)
        return;
    if (ol__request_ids(req, op, args, &id, NULL) != 0)
        return;
    ol__entry_w_init(&w);
    if (strcmp(op, "stop") == 0)
        rv = ol__entry_add_stop(&w, id, name);
    else
        rv = ol__entry_add_start(&w, id, name);
    submit(n, req, &w, rv, id, op, name, 0);
}

void ol__op_send(struct ol__node *n, struct ol__ctl_req *req,
                 const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    const msgpack_object *msg = ol__arg(args, "message");
    struct ol__entry_w w;
    struct ol__buf mb;
    uint64_t id, seq;
    int rv;

    if (ol__arg_name(req, "send", args, name) != 0)
        return;
    if (msg == NULL) {
        ol__ctl_reply_error(req, OL_EINVAL, "send '%s': missing message",
                            name);
        return;
    }
    if (ol__request_ids(req, "send", args, &id, &seq) != 0)
        return;
    if (!depth_ok(req, "send", name, "message", msg) ||
        pack_value(req, "send", name, "message", msg, &mb) != 0)
        return;
    ol__entry_w_init(&w);
    rv = ol__entry_add_send(&w, id, name, seq, mb.base, mb.len);
    ol__buf_close(&mb);
    submit(n, req, &w, rv, id, "send", name, seq);
}

/* `rm`: a final stop (the agent's last checkpoint), then RM, which leaves
 * the row as a tombstone.  With a request id both commands' ids derive
 * from it, so a retried rm applies each once. */
void ol__op_rm(struct ol__node *n, struct ol__ctl_req *req,
               const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    const struct ol__sm_agent *row;
    struct ol__entry_w w;
    uint64_t rm_id, stop_id;
    struct ol__waiter *wt;
    int rv, live;

    if (ol__arg_name(req, "rm", args, name) != 0)
        return;
    if (!level_ok(n, req, "rm", OL_CMD_RM) ||
        ol__request_ids(req, "rm", args, &rm_id, &stop_id) != 0)
        return;
    row = ol__node_row(n, name);
    live = row && (row->status == OL_AGENT_RUNNING ||
                   row->status == OL_AGENT_STOPPING);
    ol__entry_w_init(&w);
    rv = live ? ol__entry_add_stop(&w, stop_id, name)
              : ol__entry_add_rm(&w, rm_id, name);
    if (rv == 0) {
        ol__propose_and_wait(n, req, &w, live ? stop_id : rm_id, "rm",
                             name, 0);
        wt = live ? ol__waiter_of(n, req) : NULL;
        if (wt) {
            wt->first = 2;
            wt->rm_id = rm_id;
        }
    } else {
        ol__ctl_reply_error(req, rv, "rm '%s': %s", name, ol_strerror(rv));
    }
    ol__entry_w_close(&w);
}

/* A new config for an agent: a CONFIG command, so the row and the
 * agent's mailbox change together. */
void ol__op_config(struct ol__node *n, struct ol__ctl_req *req,
                   const msgpack_object *args)
{
    char name[OL_NAME_MAX + 2];
    const msgpack_object *cfg = ol__arg(args, "config");
    struct ol__entry_w w;
    struct ol__buf b;
    uint64_t id, seq;
    int rv;

    if (ol__arg_name(req, "config", args, name) != 0)
        return;
    if (cfg == NULL || cfg->type != MSGPACK_OBJECT_MAP) {
        ol__ctl_reply_error(req, OL_EINVAL,
                            "config '%s': the config must be a JSON object",
                            name);
        return;
    }
    if (!depth_ok(req, "config", name, "config", cfg) ||
        !level_ok(n, req, "config", OL_CMD_CONFIG) ||
        ol__request_ids(req, "config", args, &id, &seq) != 0 ||
        pack_value(req, "config", name, "config", cfg, &b) != 0)
        return;
    ol__entry_w_init(&w);
    rv = ol__entry_add_config(&w, id, name, seq, b.base, b.len);
    ol__buf_close(&b);
    submit(n, req, &w, rv, id, "config", name, 0);
}
