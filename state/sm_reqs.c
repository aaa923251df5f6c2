/*
 * Exactly-once commands: the table of applied request ids.  Every command
 * but CKPTS and NOOP carries a `req` chosen by its proposer (random, or
 * derived from a client's request id), and a proposer that hears nothing
 * back sends the same command again, possibly through another node.  The
 * state machine remembers the request ids of the newest applied commands
 * with their outcomes: a command whose id is remembered is not applied
 * again, and its outcome is the first one, so a client whose retry was
 * caught hears "ok" and not "an agent with that name exists".
 *
 * The table is replicated state.  Every node records the same commands in
 * the same order, each under the next value of an apply counter, and
 * evicts the lowest counter once it holds OL_SM_REQS_MAX ids, so all
 * replicas hold the same set; snapshots carry it (sm_snap.c).  It lives in
 * the reqs table, written in the apply transaction, with an in-memory copy
 * for the lookup: a FIFO ring in counter order and an open-addressing
 * index over it (linear probing, deletion by backward shift).
 *
 * Checkpoint bodies do not go through it: they are idempotent by (agent,
 * seq) and hash already (a repeat is reported as a duplicate), and they are
 * the hot path, where a row per checkpoint would double the writes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "sm_int.h"

struct ol__sm_req {
    uint64_t req;
    int64_t n;      /* apply counter: the order of eviction */
    int32_t status; /* the first outcome: 0 or OL_E* */
    uint32_t type;
};

static size_t reqs_cap(const struct ol__sm *sm)
{
    return sm->cfg.reqs_max ? sm->cfg.reqs_max : OL_SM_REQS_MAX;
}

static size_t home(const struct ol__sm_reqs *t, uint64_t req)
{
    /* Client ids are hashed and the others random, but mix anyway so
     * that ids that differ only in their high bits spread. */
    return (size_t)((req * 0x9e3779b97f4a7c15ull) >> 17) & t->mask;
}

void ol__sm_reqs_clear(struct ol__sm_reqs *t)
{
    free(t->ring);
    free(t->index);
    memset(t, 0, sizeof *t);
}

static int reqs_alloc(struct ol__sm *sm)
{
    struct ol__sm_reqs *t = &sm->reqs;
    size_t cap = reqs_cap(sm), slots = 16;

    if (t->ring)
        return 0;
    while (slots < cap * 2)
        slots *= 2;
    t->ring = calloc(cap, sizeof *t->ring);
    t->index = calloc(slots, sizeof *t->index);
    if (t->ring == NULL || t->index == NULL) {
        ol__sm_reqs_clear(t);
        return OL_ENOMEM;
    }
    t->cap = cap;
    t->mask = slots - 1;
    return 0;
}

/* The index slot that holds `req`, or the empty slot where it would go. */
static size_t find(const struct ol__sm_reqs *t, uint64_t req)
{
    size_t i = home(t, req);

    while (t->index[i] != 0 && t->ring[t->index[i] - 1].req != req)
        i = (i + 1) & t->mask;
    return i;
}

static void index_del(struct ol__sm_reqs *t, size_t i)
{
    size_t j = i;

    for (;;) {
        size_t h;

        j = (j + 1) & t->mask;
        if (t->index[j] == 0)
            break;
        h = home(t, t->ring[t->index[j] - 1].req);
        /* The entry at j may fill the hole at i unless its home lies
         * (cyclically) after i, up to j. */
        if (((j - h) & t->mask) < ((j - i) & t->mask))
            continue;
        t->index[i] = t->index[j];
        i = j;
    }
    t->index[i] = 0;
}

static const struct ol__sm_req *lookup(const struct ol__sm_reqs *t,
                                       uint64_t req)
{
    size_t i;

    if (t->count == 0)
        return NULL;
    i = find(t, req);
    return t->index[i] ? &t->ring[t->index[i] - 1] : NULL;
}

/* Drop the oldest id from memory. */
static void evict_one(struct ol__sm_reqs *t)
{
    index_del(t, find(t, t->ring[t->head].req));
    t->head = (t->head + 1) % t->cap;
    t->count--;
}

/* Add an id to memory as the newest, evicting the oldest when full. */
static void cache_add(struct ol__sm_reqs *t, const struct ol__sm_req *r)
{
    size_t pos, i;

    if (t->count == t->cap)
        evict_one(t);
    pos = (t->head + t->count) % t->cap;
    t->ring[pos] = *r;
    t->count++;
    i = find(t, r->req);
    t->index[i] = (uint32_t)pos + 1;
    if (r->n >= t->next_n)
        t->next_n = r->n + 1;
}

int ol__sm_reqs_load(struct ol__sm *sm)
{
    struct ol__sm_reqs *t = &sm->reqs;
    sqlite3_stmt *st;
    int rv;

    ol__sm_reqs_clear(t);
    t->next_n = 1;
    rv = ol__store_prepare(sm->st,
                           "SELECT req, n, type, status FROM reqs "
                           "ORDER BY n",
                           &st);
    if (rv != 0)
        return rv;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct ol__sm_req r;

        r.req = (uint64_t)sqlite3_column_int64(st, 0);
        r.n = sqlite3_column_int64(st, 1);
        r.type = (uint32_t)sqlite3_column_int64(st, 2);
        r.status = (int32_t)sqlite3_column_int64(st, 3);
        /* A repeated id in the table is damage, not a command: the later
         * row is kept out of memory rather than indexed twice. */
        if (r.req == 0 || lookup(t, r.req) != NULL)
            continue;
        /* Memory is taken at the first id, not for every store opened. */
        rv = reqs_alloc(sm);
        if (rv != 0)
            break;
        cache_add(t, &r);
    }
    sqlite3_finalize(st);
    return rv;
}

size_t ol__sm_reqs_count(const struct ol__sm *sm)
{
    return sm->reqs.count;
}

int ol__sm_reqs_get(const struct ol__sm *sm, uint64_t req, int *status)
{
    const struct ol__sm_req *r = lookup(&sm->reqs, req);

    if (r == NULL)
        return 0;
    if (status)
        *status = r->status;
    return 1;
}

/* The first outcome's message, from the store (rare: only on a repeat). */
static void stored_why(struct ol__sm *sm, uint64_t req, char *out, size_t cap)
{
    sqlite3_stmt *st = sm->stmt[ST_REQ_WHY];

    out[0] = '\0';
    sqlite3_bind_int64(st, 1, (sqlite3_int64)req);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, cap, "%s", sqlite3_column_text(st, 0));
    sqlite3_reset(st);
}

/* Record the outcome of a command just applied: the row, then eviction of
 * everything below the oldest id kept. */
static int record(struct ol__sm *sm, const struct ol__cmd *c, int status,
                  const char *why)
{
    struct ol__sm_reqs *t = &sm->reqs;
    sqlite3_stmt *st = sm->stmt[ST_REQ_INS];
    struct ol__sm_req r;

    r.req = c->req;
    r.n = t->next_n;
    r.type = c->type;
    r.status = status;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r.req);
    sqlite3_bind_int64(st, 2, r.n);
    sqlite3_bind_int64(st, 3, r.type);
    sqlite3_bind_int64(st, 4, r.status);
    sqlite3_bind_text(st, 5, why ? why : "", -1, SQLITE_STATIC);
    if (ol__sm_done(sm, st) != 0)
        return OL_EIO;
    cache_add(t, &r);
    st = sm->stmt[ST_REQ_EVICT];
    sqlite3_bind_int64(st, 1, t->ring[t->head].n);
    return ol__sm_done(sm, st);
}

int ol__sm_apply_once(struct ol__sm *sm, const struct ol__cmd *c,
                      struct ol__effects *fx)
{
    const struct ol__sm_req *r;
    const struct ol__sm_agent *a;
    char why[sizeof fx->last_why];
    int rv;

    if (c->req == 0 || c->type == OL_CMD_CKPTS)
        return ol__sm_apply_cmd(sm, c, fx);
    if (sm->reqs.ring == NULL && reqs_alloc(sm) != 0)
        return OL_EIO;
    r = lookup(&sm->reqs, c->req);
    if (r != NULL) {
        if (r->type != c->type)
            ol_log_rl(OL_LOG_WARN,
                      "request %016" PRIx64 ": a %s repeats the id of a "
                      "%s applied before; not applied",
                      c->req, ol__cmd_info(c->type)
                                  ? ol__cmd_info(c->type)->name : "command",
                      ol__cmd_info(r->type) ? ol__cmd_info(r->type)->name
                                            : "command");
        ol_log(OL_LOG_DEBUG, "request %016" PRIx64 " applied before; "
                             "repeat ignored", c->req);
        why[0] = '\0';
        if (r->status != 0)
            stored_why(sm, c->req, why, sizeof why);
        /* A waiting client is answered as the first time: with the agent's
         * row (as it is now) before the outcome. */
        a = r->status == 0 && (c->type == OL_CMD_SPAWN ||
                               c->type == OL_CMD_STOP ||
                               c->type == OL_CMD_START)
                ? ol__map_get(&sm->agents, c->name)
                : NULL;
        if (a)
            ol__fx_agent(fx, a);
        ol__fx_cmd(fx, c, r->status, why[0] ? why : NULL);
        return 0;
    }
    fx->last_req = 0;
    rv = ol__sm_apply_cmd(sm, c, fx);
    if (rv != 0)
        return rv;
    /* Commands that report no outcome of their own succeeded. */
    if (fx->last_req == c->req)
        return record(sm, c, fx->last_status, fx->last_why);
    return record(sm, c, 0, NULL);
}
