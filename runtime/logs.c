/*
 * Agents' own logs: each hosted agent's lines go to a bounded ring (see
 * alog.h) as well as the daemon log, and `outlast logs NAME` (the control
 * op "logs") or GET /api/logs reads them from whichever node hosts the
 * agent.  When that is another node of the cluster, the request travels
 * as a runtime message over the authenticated transport and the answer
 * comes back the same way; a request that gets no answer in
 * LOGS_TIMEOUT_MS fails with OL_ETIMEOUT.
 *
 * Messages (msgpack arrays inside MSG_APP):
 *   [1, id, name, after, limit]           ask the host for lines
 *   [2, id, status, map: bin | err: str]  its answer (status 0: the map)
 *
 * The same channel carries one message that is not about logs:
 *   [3, name, epoch]   the sender, which owned agent `name` before, has
 *                      let it go: the new owner under `epoch` may end its
 *                      hand-off wait (agent_handoff.c)
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replication/cluster.h"
#include "alog.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mpr.h"
#include "base/pack.h"
#include "node.h"
#include "agent.h"
#include "logs.h"
#include "state/reads.h"

#define LOGS_TIMEOUT_MS 3000
#define LOGS_LIMIT_MAX 1000

enum { APP_LOGS_REQ = 1, APP_LOGS_RESP = 2, APP_HANDED_OVER = 3 };

/* A request waiting for another node's answer. */
struct ol__logfwd {
    struct ol__logfwd *next;
    struct ol__node *node;
    uint64_t id;
    uint64_t to;
    char name[OL_NAME_MAX + 1];
    ol__logs_cb cb;
    void *data;
    uv_timer_t timer;
};

void ol__agent_note(struct ol_agent *a, int level, int ring_only,
                    const char *fmt, ...)
{
    char line[OL_ALOG_LINE_MAX + 1];
    va_list ap;

    if (level > ol__log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (a->log == NULL && a->node->cfg.agent_log_lines)
        a->log = ol__alog_create(a->node->cfg.agent_log_lines);
    if (a->log)
        ol__alog_add(a->log, ol__wall_ms(), level, line);
    if (!ring_only)
        ol__log_agent(level, a->name, "%s", line);
}

void ol__agent_plugin_log(struct ol_agent *a, int level, const char *text,
                          size_t len)
{
    static struct ol_ratelimit rl;
    char line[512];
    unsigned suppressed;

    if (level > ol__log_level)
        return;
    if (len > sizeof line - 1)
        len = sizeof line - 1;
    memcpy(line, text, len);
    line[len] = '\0';
    /* A newline or an escape sequence from a plugin would forge log lines
     * or reach an operator's terminal; a NUL from a host process would cut
     * the line short. */
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)line[i] < 0x20 && line[i] != '\t') ||
            line[i] == 0x7f)
            line[i] = '?';
    /* Every line goes to the agent's own bounded ring; a chatty plugin
     * must not drown the node's log, so that copy is rate-limited. */
    ol__agent_note(a, level, 1, "%s", line);
    if (!ol__ratelimit_ok(&rl, 5, 10000, &suppressed))
        return;
    if (suppressed)
        ol__log(level, "(%u similar messages suppressed)", suppressed);
    ol__log_agent(level, a->name, "%s", line);
}

/* The answer for an agent hosted here, into `b`. */
static int pack_local(struct ol__node *n, const struct ol_agent *a,
                      uint64_t after, uint32_t limit, struct ol__buf *b)
{
    struct ol__pk_map m;
    msgpack_packer pk;

    msgpack_packer_init(&pk, b, ol__buf_write);
    ol__pk_map_begin(&m, &pk, b);
    ol__pk_kv_str(&m, "name", a->name);
    ol__pk_kv_uint(&m, "node", n->self_id);
    ol__pk_kv_uint(&m, "epoch", a->epoch);
    ol__pk_kv_uint(&m, "ring", ol__alog_id(a->log));
    ol__pk_kv_uint(&m, "first", ol__alog_first(a->log));
    ol__pk_kv_uint(&m, "next", ol__alog_next(a->log));
    ol__pk_key(&m, "lines");
    ol__alog_pack(a->log, after, limit, &pk);
    return ol__pk_map_end(&m);
}

/* ---- forwarding ---- */

static void fwd_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Unlink and answer a waiting request. */
static void fwd_answer(struct ol__logfwd *f, int status, const char *errmsg,
                       const void *map, size_t len)
{
    struct ol__logfwd **pp = &f->node->logfwd;

    while (*pp && *pp != f)
        pp = &(*pp)->next;
    if (*pp)
        *pp = f->next;
    uv_timer_stop(&f->timer);
    f->cb(f->data, status, errmsg, map, len);
    uv_close((uv_handle_t *)&f->timer, fwd_closed);
}

static void fwd_timeout(uv_timer_t *t)
{
    struct ol__logfwd *f = t->data;
    char msg[OL_ERRMSG_SIZE];

    snprintf(msg, sizeof msg,
             "logs '%s': node %" PRIu64 " hosts it but did not answer in %d "
             "ms (it may be down; its agents move after failover_ms)",
             f->name, f->to, LOGS_TIMEOUT_MS);
    fwd_answer(f, OL_ETIMEOUT, msg, NULL, 0);
}

/* Start message `type` of `n` elements (the type included) in `b`. */
static void app_begin(struct ol__buf *b, msgpack_packer *pk, uint32_t n,
                      uint64_t type)
{
    ol__buf_init(b);
    msgpack_packer_init(pk, b, ol__buf_write);
    msgpack_pack_array(pk, n);
    msgpack_pack_uint64(pk, type);
}

/* Send what app_begin() started to node `to`, and free it. */
static int app_send(struct ol__node *n, uint64_t to, struct ol__buf *b)
{
    int rv = b->base ? ol__cluster_send_app(n->replica, to, b->base, b->len)
                     : OL_ENOMEM;

    ol__buf_close(b);
    return rv;
}

static int send_req(struct ol__node *n, struct ol__logfwd *f, uint64_t after,
                    uint32_t limit)
{
    struct ol__buf b;
    msgpack_packer pk;

    app_begin(&b, &pk, 5, APP_LOGS_REQ);
    msgpack_pack_uint64(&pk, f->id);
    ol__pk_str(&pk, f->name);
    msgpack_pack_uint64(&pk, after);
    msgpack_pack_uint64(&pk, limit);
    return app_send(n, f->to, &b);
}

static void forward(struct ol__node *n, const char *name, uint64_t owner,
                    uint64_t after, uint32_t limit, ol__logs_cb cb,
                    void *data)
{
    struct ol__logfwd *f = calloc(1, sizeof *f);
    char msg[OL_ERRMSG_SIZE];
    int rv;

    if (f == NULL) {
        cb(data, OL_ENOMEM, "out of memory", NULL, 0);
        return;
    }
    f->node = n;
    f->id = ol__random_id();
    f->to = owner;
    snprintf(f->name, sizeof f->name, "%s", name);
    f->cb = cb;
    f->data = data;
    rv = send_req(n, f, after, limit);
    if (rv != 0) {
        snprintf(msg, sizeof msg, "logs '%s': cannot ask node %" PRIu64
                                  ", which hosts it: %s",
                 name, owner, ol_strerror(rv));
        free(f);
        cb(data, rv, msg, NULL, 0);
        return;
    }
    uv_timer_init(n->loop, &f->timer);
    f->timer.data = f;
    uv_timer_start(&f->timer, fwd_timeout, LOGS_TIMEOUT_MS, 0);
    f->next = n->logfwd;
    n->logfwd = f;
}

/* A single node's agent status from its read connection (0: none). */
static int single_status(struct ol__node *n, const char *name)
{
    int status = 0;
    int rv = ol__read_agent_status(n->reader.db, name, &status);

    return rv == 0 ? status : rv == OL_ENOTFOUND ? 0 : OL_AGENT_STOPPED;
}

void ol__logs_fetch(struct ol__node *n, const char *name, uint64_t after,
                    uint32_t limit, ol__logs_cb cb, void *data)
{
    const struct ol_agent *a = ol__agent_get(n, name);
    const struct ol__sm_agent *row;
    char msg[OL_ERRMSG_SIZE];
    struct ol__buf b;
    int rv, status;

    if (limit == 0 || limit > LOGS_LIMIT_MAX)
        limit = LOGS_LIMIT_MAX;
    if (a) {
        ol__buf_init(&b);
        rv = pack_local(n, a, after, limit, &b);
        if (rv == 0)
            cb(data, 0, NULL, b.base, b.len);
        else
            cb(data, rv, "out of memory", NULL, 0);
        ol__buf_close(&b);
        return;
    }
    if (n->stopping) {
        snprintf(msg, sizeof msg, "logs '%s': the node is shutting down",
                 name);
        cb(data, OL_ESHUTDOWN, msg, NULL, 0);
        return;
    }
    /* In a cluster the state machine is the loop's: find the owner.  A
     * single node hosts every running agent itself. */
    row = n->cluster ? ol__sm_agent(n->sm, name) : NULL;
    if (n->cluster && row == NULL) {
        snprintf(msg, sizeof msg, "logs: no agent '%s'", name);
        cb(data, OL_ENOTFOUND, msg, NULL, 0);
        return;
    }
    if (row && row->owner && row->owner != n->self_id &&
        (row->status == OL_AGENT_RUNNING ||
         row->status == OL_AGENT_STOPPING)) {
        forward(n, name, row->owner, after, limit, cb, data);
        return;
    }
    status = row ? row->status : single_status(n, name);
    if (status == 0) {
        snprintf(msg, sizeof msg, "logs: no agent '%s'", name);
        cb(data, OL_ENOTFOUND, msg, NULL, 0);
        return;
    }
    snprintf(msg, sizeof msg,
             "logs '%s': the agent runs on no node now (%s); its lines went "
             "to the daemon log of the node that ran it",
             name,
             status == OL_AGENT_STOPPED       ? "stopped"
             : status == OL_AGENT_QUARANTINED ? "quarantined"
                                              : "not placed yet");
    cb(data, OL_ESTATE, msg, NULL, 0);
}

void ol__logs_close(struct ol__node *n)
{
    while (n->logfwd)
        fwd_answer(n->logfwd, OL_ESHUTDOWN,
                   "logs: the node is shutting down", NULL, 0);
}

/* ---- the other side ---- */

static void send_resp(struct ol__node *n, uint64_t to, uint64_t id,
                      int status, const char *errmsg, const void *map,
                      size_t len)
{
    struct ol__buf b;
    msgpack_packer pk;

    app_begin(&b, &pk, 4, APP_LOGS_RESP);
    msgpack_pack_uint64(&pk, id);
    msgpack_pack_int(&pk, status);
    if (status == 0) {
        msgpack_pack_bin(&pk, len);
        msgpack_pack_bin_body(&pk, map, len);
    } else {
        ol__pk_str(&pk, errmsg ? errmsg : ol_strerror(status));
    }
    (void)app_send(n, to, &b);
}

static void on_req(struct ol__node *n, uint64_t from, struct ol__mpr *r)
{
    char name[OL_NAME_MAX + 1], msg[OL_ERRMSG_SIZE];
    uint64_t id, after, limit;
    const struct ol_agent *a;
    struct ol__buf b;

    if (ol__mpr_uint(r, &id) || ol__mpr_strcpy(r, name, sizeof name) ||
        ol__mpr_uint(r, &after) || ol__mpr_uint(r, &limit) ||
        !ol__name_valid(name)) {
        ol_log_rl(OL_LOG_WARN, "logs request from node %" PRIu64
                               " is malformed",
                  from);
        return;
    }
    if (limit == 0 || limit > LOGS_LIMIT_MAX)
        limit = LOGS_LIMIT_MAX;
    a = ol__agent_get(n, name);
    if (a == NULL) {
        snprintf(msg, sizeof msg,
                 "logs '%s': node %" PRIu64 " does not host it (it may have "
                 "just moved; ask again)",
                 name, n->self_id);
        send_resp(n, from, id, OL_ENOTFOUND, msg, NULL, 0);
        return;
    }
    ol__buf_init(&b);
    if (pack_local(n, a, after, (uint32_t)limit, &b) == 0)
        send_resp(n, from, id, 0, NULL, b.base, b.len);
    else
        send_resp(n, from, id, OL_ENOMEM, "out of memory", NULL, 0);
    ol__buf_close(&b);
}

static void on_resp(struct ol__node *n, uint64_t from, struct ol__mpr *r)
{
    struct ol__logfwd *f;
    uint64_t id;
    int64_t status;
    const void *p;
    uint32_t len;
    char msg[OL_ERRMSG_SIZE];

    if (ol__mpr_uint(r, &id) || ol__mpr_int(r, &status) || status > 0 ||
        status < -1000)
        return;
    for (f = n->logfwd; f && (f->id != id || f->to != from); f = f->next)
        ;
    if (f == NULL)
        return; /* answered already (timed out) */
    if (status == 0) {
        /* The answer is another node's bytes: check before relaying. */
        if (ol__mpr_bin(r, &p, &len) || ol__mp_check(p, len, NULL) != 0) {
            snprintf(msg, sizeof msg,
                     "logs '%s': node %" PRIu64 " sent a malformed answer",
                     f->name, from);
            fwd_answer(f, OL_EMALFORMED, msg, NULL, 0);
            return;
        }
        fwd_answer(f, 0, NULL, p, len);
        return;
    }
    if (ol__mpr_strcpy(r, msg, sizeof msg) != 0)
        snprintf(msg, sizeof msg, "%s", ol_strerror((int)status));
    fwd_answer(f, (int)status, msg, NULL, 0);
}

void ol__logs_send_handed_over(struct ol__node *n, uint64_t to,
                               const char *name, uint64_t epoch)
{
    struct ol__buf b;
    msgpack_packer pk;

    if (n->replica == NULL || n->cluster == 0)
        return;
    app_begin(&b, &pk, 3, APP_HANDED_OVER);
    ol__pk_str(&pk, name);
    msgpack_pack_uint64(&pk, epoch);
    (void)app_send(n, to, &b);
}

static void on_handed_over(struct ol__node *n, uint64_t from,
                           struct ol__mpr *r)
{
    char name[OL_NAME_MAX + 1];
    uint64_t epoch;

    if (ol__mpr_strcpy(r, name, sizeof name) == 0 &&
        ol__mpr_uint(r, &epoch) == 0)
        ol__agent_handed_over(n, from, name, epoch);
}

void ol__logs_app(void *data, uint64_t from, const void *p, size_t len)
{
    struct ol__node *n = data;
    struct ol__mpr r;
    uint32_t count;
    uint64_t type;

    ol__mpr_init(&r, p, len);
    if (ol__mpr_array(&r, &count) || ol__mpr_uint(&r, &type))
        return;
    if (type == APP_LOGS_REQ && count == 5)
        on_req(n, from, &r);
    else if (type == APP_LOGS_RESP && count == 4)
        on_resp(n, from, &r);
    else if (type == APP_HANDED_OVER && count == 3)
        on_handed_over(n, from, &r);
}
