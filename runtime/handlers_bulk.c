/*
 * Bulk requests: spawn, stop or start many agents in one control request
 * ("spawn_many", "stop_many", "start_many").  Each agent gets the checks a
 * single request gets; the good ones become one command each, proposed
 * together in chunks, so the replica packs them into few log entries (the
 * cluster's proposer and the single node's group commit both batch what
 * is proposed at once).  The request is answered once every command's
 * outcome is known, with one result per agent and the counts.
 *
 * Like a single request, a bulk spawn answers for an agent after its first
 * checkpoint (or its quarantine, an error), and a bulk stop after its final
 * one; with "no_wait", each answers once its command has committed.
 *
 * With a request id, each agent's command id derives from it and the
 * agent's name, so the same bulk request sent again applies each command
 * once, and answers with each one's first outcome.
 */
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/json.h"
#include "base/map.h"
#include "base/sizes.h"
#include "code.h"
#include "node_view.h"
#include "handlers_int.h"

/* Commands per proposal: under the single node's batch limit and the
 * cluster proposer's per-entry count. */
#define BULK_CHUNK 4096

struct bulk_item {
    char name[OL_NAME_MAX + 1];
    char key[20]; /* the command id in hex: by_req's key */
    uint64_t id;
    int done;
    int waiting; /* committed; waits for its first (spawn) or final
                  * (stop) checkpoint */
    int status; /* 0 or OL_E* */
    char msg[200];
    int has_row;
    uint64_t owner, epoch;
    int row_status;
};

struct ol__bulk {
    struct ol__node *n;
    struct ol__ctl_req *req;
    char op[8]; /* spawn, stop, start */
    char kind[OL_KIND_MAX + 1];
    struct ol__buf cfg;
    struct ol__code *code;
    uint64_t base_id; /* from the request id; 0: none */
    int wait;         /* answer after first/final checkpoints */
    struct bulk_item *items;
    uint32_t n_items, left;
    struct ol__map by_req;  /* key -> item */
    struct ol__map by_name; /* name -> item */
};

static void bulk_free(struct ol__bulk *b)
{
    if (b == NULL)
        return;
    ol__map_close(&b->by_req);
    ol__map_close(&b->by_name);
    ol__buf_close(&b->cfg);
    if (b->code)
        ol__code_unref(b->code);
    free(b->items);
    free(b);
}

static void item_fail(struct ol__bulk *b, struct bulk_item *it, int status,
                      const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void item_fail(struct ol__bulk *b, struct bulk_item *it, int status,
                      const char *fmt, ...)
{
    va_list ap;

    if (it->done)
        return;
    va_start(ap, fmt);
    vsnprintf(it->msg, sizeof it->msg, fmt, ap);
    va_end(ap);
    it->status = status;
    it->done = 1;
    b->left--;
}

/* The command id of agent `name` in a bulk request with id `base`. */
static uint64_t item_id(uint64_t base, const char *op, const char *name)
{
    static const char domain[] = "outlast bulk item id v1";
    crypto_generichash_state h;
    uint8_t out[8], le[8];
    uint64_t v = 0;

    if (base == 0)
        return ol__random_id();
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(base >> (8 * i));
    crypto_generichash_init(&h, NULL, 0, sizeof out);
    crypto_generichash_update(&h, (const uint8_t *)domain, sizeof domain);
    crypto_generichash_update(&h, (const uint8_t *)op, strlen(op) + 1);
    crypto_generichash_update(&h, le, sizeof le);
    crypto_generichash_update(&h, (const uint8_t *)name, strlen(name));
    crypto_generichash_final(&h, out, sizeof out);
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | out[i];
    return v ? v : 1;
}

/* Add agent `o` (a msgpack string, or anything: then a bad name) as the
 * next item, with a single request's name check. */
static int item_add(struct ol__bulk *b, const char *s, size_t len)
{
    struct bulk_item *it = &b->items[b->n_items++];

    b->left++;
    snprintf(it->name, sizeof it->name, "%.*s",
             (int)(len < OL_NAME_MAX ? len : OL_NAME_MAX), s ? s : "");
    if (s == NULL || len > OL_NAME_MAX || memchr(s, 0, len) ||
        !ol__name_valid(it->name)) {
        item_fail(b, it, OL_EINVAL,
                  "%s: agent name must be 1-64 characters of A-Z a-z 0-9 "
                  ". _ - (not starting with . or -)",
                  b->op);
        return 0;
    }
    if (ol__map_get(&b->by_name, it->name)) {
        item_fail(b, it, OL_EINVAL, "%s '%s': named twice in this request",
                  b->op, it->name);
        it->name[0] = '\0'; /* not a key of by_name */
        return 0;
    }
    it->id = item_id(b->base_id, b->op, it->name);
    snprintf(it->key, sizeof it->key, "%016" PRIx64, it->id);
    if (ol__map_put(&b->by_name, it->name, it) != 0 ||
        ol__map_put(&b->by_req, it->key, it) != 0)
        return OL_ENOMEM;
    return 0;
}

/* Names whose row starts with `prefix` (not removed ones), sorted. */
static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_prefix(struct ol__bulk *b, const char *prefix)
{
    const struct ol__sm_agent *row;
    size_t it = 0, cap = 0, k = 0, plen = strlen(prefix);
    const char **names = NULL, **nn;
    int rv = 0;

    while (ol__node_row_next(b->n, &it, &row)) {
        if (row->status == OL_AGENT_REMOVED ||
            strncmp(row->name, prefix, plen) != 0)
            continue;
        if (k == cap) {
            cap = cap ? cap * 2 : 256;
            nn = realloc(names, cap * sizeof *names);
            if (nn == NULL) {
                free(names);
                return OL_ENOMEM;
            }
            names = nn;
        }
        names[k++] = row->name;
    }
    if (k > OL_BULK_MAX) {
        free(names);
        return OL_ETOOBIG;
    }
    if (k)
        qsort(names, k, sizeof *names, cmp_name);
    b->items = calloc(k ? k : 1, sizeof *b->items);
    if (b->items == NULL)
        rv = OL_ENOMEM;
    for (size_t i = 0; i < k && rv == 0; i++)
        rv = item_add(b, names[i], strlen(names[i]));
    free(names);
    return rv;
}

static int add_list(struct ol__bulk *b, const msgpack_object *names)
{
    uint32_t k = names->via.array.size;
    int rv = 0;

    b->items = calloc(k ? k : 1, sizeof *b->items);
    if (b->items == NULL)
        return OL_ENOMEM;
    for (uint32_t i = 0; i < k && rv == 0; i++) {
        const msgpack_object *o = &names->via.array.ptr[i];

        if (o->type == MSGPACK_OBJECT_STR)
            rv = item_add(b, o->via.str.ptr, o->via.str.size);
        else
            rv = item_add(b, NULL, 0);
    }
    return rv;
}

/* The answer: one result per agent, in request order, and the counts. */
static void bulk_answer(struct ol__bulk *b)
{
    struct ol__pk_map m;
    struct ol__resp r;
    uint32_t ok = 0;

    for (uint32_t i = 0; i < b->n_items; i++)
        ok += b->items[i].status == 0;
    ol__resp_begin(&r);
    ol__pk_kv_str(&r.m, "op", b->op);
    ol__pk_kv_uint(&r.m, "requested", b->n_items);
    ol__pk_kv_uint(&r.m, "succeeded", ok);
    ol__pk_kv_uint(&r.m, "failed", b->n_items - ok);
    ol__pk_key(&r.m, "results");
    msgpack_pack_array(&r.pk, b->n_items);
    for (uint32_t i = 0; i < b->n_items; i++) {
        const struct bulk_item *it = &b->items[i];

        ol__pk_map_begin(&m, &r.pk, &r.buf);
        ol__pk_kv_str(&m, "name", it->name);
        ol__pk_kv_bool(&m, "ok", it->status == 0);
        if (it->status != 0) {
            ol__pk_kv_str(&m, "code", ol_err_name(it->status));
            ol__pk_kv_str(&m, "error", it->msg);
        } else if (it->has_row) {
            ol__pk_kv_uint(&m, "owner", it->owner);
            ol__pk_kv_uint(&m, "epoch", it->epoch);
            ol__pk_kv_str(&m, "status", ol__status_name(it->row_status));
        }
        (void)ol__pk_map_end(&m);
    }
    ol__resp_send(&r, b->req);
}

/* Add item `it`'s command to `w`. */
static int item_cmd(struct ol__bulk *b, struct ol__entry_w *w,
                    const struct bulk_item *it)
{
    uint64_t owner = ol__node_clustered(b->n) ? 0 : ol__node_self(b->n);

    if (strcmp(b->op, "spawn") == 0)
        /* In a cluster the leader places it (owner 0). */
        return ol__entry_add_spawn(w, it->id, it->name, b->kind, b->cfg.base,
                                   b->cfg.len, owner, 0);
    if (strcmp(b->op, "stop") == 0)
        return ol__entry_add_stop(w, it->id, it->name);
    return ol__entry_add_start(w, it->id, it->name);
}

/* Propose the items [from, to) not yet decided, as one proposal. */
static void propose_chunk(struct ol__bulk *b, uint32_t from, uint32_t to)
{
    struct ol__entry_w w;
    int rv = 0;

    ol__entry_w_init(&w);
    for (uint32_t i = from; i < to; i++) {
        struct bulk_item *it = &b->items[i];

        if (it->done)
            continue;
        rv = item_cmd(b, &w, it);
        if (rv != 0)
            item_fail(b, it, rv, "%s '%s': %s", b->op, it->name,
                      ol_strerror(rv));
    }
    rv = w.n ? ol__node_propose(b->n, &w) : 0;
    ol__entry_w_close(&w);
    for (uint32_t i = from; i < to && rv != 0; i++)
        item_fail(b, &b->items[i], rv, "%s '%s': %s", b->op,
                  b->items[i].name, ol_strerror(rv));
}

/* Propose every item still undecided, then wait for their outcomes (or
 * answer now, when none is left).  Frees `b` unless it waits. */
static void bulk_submit(struct ol__bulk *b)
{
    struct ol__waiter *w;

    for (uint32_t i = 0; i < b->n_items; i += BULK_CHUNK)
        propose_chunk(b, i, i + BULK_CHUNK < b->n_items ? i + BULK_CHUNK
                                                         : b->n_items);
    if (b->left == 0) {
        bulk_answer(b);
        bulk_free(b);
        return;
    }
    w = calloc(1, sizeof *w);
    if (w == NULL) {
        ol__ctl_reply_error(b->req, OL_ENOMEM, "out of memory");
        bulk_free(b);
        return;
    }
    w->ctl = b->req;
    w->bulk = b;
    snprintf(w->op, sizeof w->op, "%s_many", b->op);
    w->next = *ol__node_waiters(b->n);
    *ol__node_waiters(b->n) = w;
}

static void item_row(struct bulk_item *it, const struct ol__sm_agent *row)
{
    if (row == NULL)
        return;
    it->has_row = 1;
    it->owner = row->owner;
    it->epoch = row->epoch;
    it->row_status = row->status;
}

/* Item `it` succeeded: 1 if it was the last, and `b` is answered and
 * freed. */
static int item_ok(struct ol__bulk *b, struct bulk_item *it)
{
    it->done = 1;
    it->waiting = 0;
    if (--b->left)
        return 0;
    bulk_answer(b);
    bulk_free(b);
    return 1;
}

int ol__bulk_effect(struct ol__bulk *b, const struct ol__effect *e,
                    const struct ol__sm_agent *row)
{
    char key[20];
    struct bulk_item *it;

    snprintf(key, sizeof key, "%016" PRIx64, e->u.cmd.req);
    it = ol__map_get(&b->by_req, key);
    if (it == NULL || it->done || it->waiting)
        return 0;
    if (e->status != 0) {
        item_fail(b, it, e->status, "%s '%s': %s", b->op, it->name,
                  e->errmsg[0] ? e->errmsg : ol_strerror(e->status));
        if (b->left)
            return 0;
        bulk_answer(b);
        bulk_free(b);
        return 1;
    }
    item_row(it, row);
    /* As a single spawn or stop (handlers_wait.c): a new agent's first
     * checkpoint, a stopping one's final; a retried spawn (no row)
     * answers now. */
    if (b->wait && row &&
        ((strcmp(b->op, "spawn") == 0 && row->head_seq == 0 &&
          row->status == OL_AGENT_RUNNING) ||
         (strcmp(b->op, "stop") == 0 &&
          row->status == OL_AGENT_STOPPING))) {
        it->waiting = 1;
        return 0;
    }
    return item_ok(b, it);
}

int ol__bulk_ckpt(struct ol__bulk *b, const char *name)
{
    struct bulk_item *it = ol__map_get(&b->by_name, name);

    if (it == NULL || !it->waiting || strcmp(b->op, "spawn") != 0)
        return 0;
    item_row(it, ol__node_row(b->n, name));
    return item_ok(b, it);
}

int ol__bulk_agent(struct ol__bulk *b, const struct ol__sm_agent *row)
{
    struct bulk_item *it = ol__map_get(&b->by_name, row->name);

    if (it == NULL || !it->waiting)
        return 0;
    item_row(it, row);
    if (strcmp(b->op, "spawn") == 0 &&
        row->status == OL_AGENT_QUARANTINED) {
        it->waiting = 0;
        item_fail(b, it, OL_EPLUGIN,
                  "spawn '%s': the agent was quarantined before its first "
                  "checkpoint: %s; it is kept (fix it, then `outlast "
                  "start`, or `outlast rm` it)",
                  it->name, row->reason);
        if (b->left)
            return 0;
        bulk_answer(b);
        bulk_free(b);
        return 1;
    }
    return item_ok(b, it);
}

void ol__bulk_drop(struct ol__bulk *b)
{
    ol__ctl_reply_error(b->req, OL_ESHUTDOWN,
                        "%s: the node is shutting down with %" PRIu32
                        " of %" PRIu32 " outcomes unknown",
                        b->op, b->left, b->n_items);
    bulk_free(b);
}

static void bulk_loaded(void *data, int status, const char *errmsg)
{
    struct ol__bulk *b = data;

    if (status != 0) {
        ol__ctl_reply_error(b->req, status, "spawn (kind %s): %s", b->kind,
                            errmsg);
        bulk_free(b);
    } else if (ol__node_stopping(b->n)) {
        ol__ctl_reply_error(b->req, OL_ESHUTDOWN,
                            "spawn: the node is shutting down");
        bulk_free(b);
    } else {
        bulk_submit(b);
    }
}

/* A spawn's kind and config (the same for every agent), as a single
 * spawn checks them.  Returns 0, or -1 after replying. */
static int spawn_args(struct ol__bulk *b, const msgpack_object *args)
{
    const msgpack_object *cfg = ol__arg(args, "config");
    msgpack_packer pk;

    if (ol__arg_str(args, "kind", b->kind, sizeof b->kind) != 0 ||
        !ol__name_valid(b->kind)) {
        ol__ctl_reply_error(b->req, OL_EINVAL, "spawn: missing or bad kind");
        return -1;
    }
    if (cfg && cfg->type != MSGPACK_OBJECT_MAP &&
        cfg->type != MSGPACK_OBJECT_NIL) {
        ol__ctl_reply_error(b->req, OL_EINVAL,
                            "spawn: config must be a JSON object");
        return -1;
    }
    if (cfg && ol__mp_object_depth(cfg) > OL_JSON_MAX_DEPTH) {
        ol__ctl_reply_error(b->req, OL_ETOOBIG,
                            "spawn: config nests deeper than %d levels of "
                            "arrays and objects (the limit)",
                            OL_JSON_MAX_DEPTH);
        return -1;
    }
    {
        char err[OL_ERRMSG_SIZE];

        if (!ol__affinity_ok(cfg, err, sizeof err)) {
            ol__ctl_reply_error(b->req, OL_EINVAL, "spawn: %s", err);
            return -1;
        }
    }
    msgpack_packer_init(&pk, &b->cfg, ol__buf_write);
    if (cfg && cfg->type == MSGPACK_OBJECT_MAP)
        msgpack_pack_object(&pk, *cfg);
    else
        msgpack_pack_map(&pk, 0);
    if (b->cfg.base == NULL || b->cfg.len > OL_AGENT_MSG_MAX) {
        ol__ctl_reply_error(b->req, OL_ETOOBIG,
                            "spawn: config over %u bytes", OL_AGENT_MSG_MAX);
        return -1;
    }
    return 0;
}

/* The agents a request names: "names" (a list), or for stop and start
 * "prefix" (every agent whose name starts with it; "" only with "all").
 * Returns 0, or -1 after replying. */
static int bulk_targets(struct ol__bulk *b, const msgpack_object *args)
{
    const msgpack_object *names = ol__arg(args, "names");
    const msgpack_object *all = ol__arg(args, "all");
    char prefix[OL_NAME_MAX + 2];
    int rv, has_prefix, is_all = all && all->type == MSGPACK_OBJECT_BOOLEAN &&
                                 all->via.boolean;

    has_prefix = ol__arg(args, "prefix") != NULL;
    if (has_prefix && ol__arg_str(args, "prefix", prefix, sizeof prefix)) {
        ol__ctl_reply_error(b->req, OL_EINVAL,
                            "%s: prefix must be a string of at most %d "
                            "characters", b->op, OL_NAME_MAX);
        return -1;
    }
    if (is_all && !has_prefix) {
        prefix[0] = '\0';
        has_prefix = 1;
    }
    if (strcmp(b->op, "spawn") == 0 ? (names == NULL || has_prefix)
                                     : (names != NULL) == has_prefix) {
        ol__ctl_reply_error(b->req, OL_EINVAL,
                            "%s: needs a list of names%s", b->op,
                            strcmp(b->op, "spawn") == 0 ? "" : " or a prefix");
        return -1;
    }
    if (names && names->type != MSGPACK_OBJECT_ARRAY) {
        ol__ctl_reply_error(b->req, OL_EINVAL, "%s: names must be a list",
                            b->op);
        return -1;
    }
    if (has_prefix && prefix[0] == '\0' && !is_all) {
        ol__ctl_reply_error(b->req, OL_EINVAL,
                            "%s: an empty prefix matches every agent; say "
                            "\"all\" to mean that",
                            b->op);
        return -1;
    }
    if (names && names->via.array.size > OL_BULK_MAX) {
        ol__ctl_reply_error(b->req, OL_ETOOBIG,
                            "%s: %" PRIu32 " names; at most %u per request",
                            b->op, names->via.array.size, OL_BULK_MAX);
        return -1;
    }
    rv = names ? add_list(b, names) : add_prefix(b, prefix);
    if (rv == OL_ETOOBIG)
        ol__ctl_reply_error(b->req, rv, "%s: the prefix matches over %u "
                            "agents, the most one request takes",
                            b->op, OL_BULK_MAX);
    else if (rv != 0)
        ol__ctl_reply_error(b->req, rv, "%s: %s", b->op, ol_strerror(rv));
    else if (b->n_items == 0)
        ol__ctl_reply_error(b->req, OL_ENOTFOUND,
                            "%s: no agent's name starts with '%s'", b->op,
                            prefix);
    return rv != 0 || b->n_items == 0 ? -1 : 0;
}

void ol__op_bulk(struct ol__node *n, struct ol__ctl_req *req,
                 const char *op, const msgpack_object *args)
{
    struct ol__bulk *b = calloc(1, sizeof *b);
    struct ol__code *code;
    char err[OL_ERRMSG_SIZE];
    int rv;

    if (b == NULL) {
        ol__ctl_reply_error(req, OL_ENOMEM, "out of memory");
        return;
    }
    b->n = n;
    b->req = req;
    snprintf(b->op, sizeof b->op, "%.*s", (int)strcspn(op, "_"), op);
    ol__map_init(&b->by_req);
    ol__map_init(&b->by_name);
    {
        const msgpack_object *nw = ol__arg(args, "no_wait");

        b->wait = !(nw && nw->type == MSGPACK_OBJECT_BOOLEAN &&
                    nw->via.boolean);
    }
    ol__buf_init(&b->cfg);
    if ((ol__arg(args, "request_id") &&
         ol__request_ids(req, op, args, &b->base_id, NULL) != 0) ||
        (strcmp(b->op, "spawn") == 0 && spawn_args(b, args) != 0) ||
        bulk_targets(b, args) != 0) {
        bulk_free(b);
        return;
    }
    if (strcmp(b->op, "spawn") != 0) {
        bulk_submit(b);
        return;
    }
    rv = ol__code_current(ol__node_codes(n), b->kind, 1, &code, err);
    if (rv != 0) {
        ol__ctl_reply_error(req, rv, "spawn (kind %s): %s", b->kind, err);
        bulk_free(b);
        return;
    }
    ol__code_ref(code);
    b->code = code;
    ol__code_wait(b->code, bulk_loaded, b);
}
