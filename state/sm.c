/*
 * The state machine's cache and statements.  An in-memory copy of the
 * agents and nodes tables answers every check the apply path makes
 * (sm_apply.c and its table), so a checkpoint costs one INSERT (plus a
 * DELETE once retention kicks in); the tables are written alongside, so a
 * restart rebuilds the same cache.  Effects are built here too.
 */
#include "sm.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "record/seal.h"
#include "sm_int.h"

void ol__effects_init(struct ol__effects *fx)
{
    memset(fx, 0, sizeof *fx);
}

static void effect_free(struct ol__effect *e)
{
    if (e->type == OL_FX_AGENT)
        free(e->u.agent.config);
    else if (e->type == OL_FX_MAIL)
        free(e->u.mail.payload);
    free(e);
}

void ol__effects_free(struct ol__effects *fx)
{
    struct ol__effect *e = fx->head, *next;

    for (; e; e = next) {
        next = e->next;
        effect_free(e);
    }
    ol__effects_init(fx);
}

void ol__effects_splice(struct ol__effects *to, struct ol__effects *from)
{
    if (from->head == NULL)
        return;
    if (to->tail)
        to->tail->next = from->head;
    else
        to->head = from->head;
    to->tail = from->tail;
    to->n += from->n;
    ol__effects_init(from);
}

struct ol__effect *ol__fx_add(struct ol__effects *fx, int type)
{
    struct ol__effect *e = calloc(1, sizeof *e);

    if (e == NULL)
        return NULL;
    e->type = type;
    if (fx->tail)
        fx->tail->next = e;
    else
        fx->head = e;
    fx->tail = e;
    fx->n++;
    return e;
}

void ol__fx_ckpt(struct ol__effects *fx, const char *agent,
                    uint64_t epoch, uint64_t seq, const uint8_t *hash,
                    int status, int dup, const char *why)
{
    struct ol__effect *e = ol__fx_add(fx, OL_FX_CKPT);

    if (e == NULL)
        return;
    e->status = status;
    snprintf(e->u.ckpt.agent, sizeof e->u.ckpt.agent, "%s", agent);
    e->u.ckpt.epoch = epoch;
    e->u.ckpt.seq = seq;
    e->u.ckpt.dup = dup;
    if (hash)
        memcpy(e->u.ckpt.hash, hash, OL_HASH_SIZE);
    if (why)
        snprintf(e->errmsg, sizeof e->errmsg, "%s", why);
}

void ol__fx_agent(struct ol__effects *fx, const struct ol__sm_agent *a)
{
    struct ol__effect *e = ol__fx_add(fx, OL_FX_AGENT);

    if (e == NULL)
        return;
    e->u.agent = *a;
    e->u.agent.config = malloc(a->config_len ? a->config_len : 1);
    if (e->u.agent.config)
        memcpy(e->u.agent.config, a->config, a->config_len);
    else
        e->u.agent.config_len = 0;
}

void ol__fx_cmd(struct ol__effects *fx, const struct ol__cmd *c,
                   int status, const char *why)
{
    struct ol__effect *e = ol__fx_add(fx, OL_FX_CMD);

    fx->last_req = c->req;
    fx->last_status = status;
    snprintf(fx->last_why, sizeof fx->last_why, "%s", why ? why : "");
    if (e == NULL)
        return;
    e->status = status;
    e->u.cmd.cmd_type = c->type;
    e->u.cmd.req = c->req;
    snprintf(e->u.cmd.name, sizeof e->u.cmd.name, "%s", c->name);
    if (why)
        snprintf(e->errmsg, sizeof e->errmsg, "%s", why);
}

void ol__fx_mail(struct ol__effects *fx, const char *to, const char *from,
                    uint64_t seq, uint32_t idx, const void *p, uint32_t len,
                    int64_t rowid)
{
    struct ol__effect *e = ol__fx_add(fx, OL_FX_MAIL);

    if (e == NULL)
        return;
    snprintf(e->u.mail.to, sizeof e->u.mail.to, "%s", to);
    snprintf(e->u.mail.from, sizeof e->u.mail.from, "%s", from);
    e->u.mail.seq = seq;
    e->u.mail.idx = idx;
    e->u.mail.rowid = rowid;
    e->u.mail.payload = malloc(len ? len : 1);
    if (e->u.mail.payload) {
        memcpy(e->u.mail.payload, p, len);
        e->u.mail.len = len;
    }
}

/* ---- statements ---- */

static const char *const sql[SM_N_STMTS] = {
    [ST_INS_CKPT] = "INSERT INTO checkpoints(agent, seq, epoch, time_ms, "
                    "hash, seal, idx, body, flags) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_GET_HASH] = "SELECT hash FROM checkpoints WHERE agent = ? AND seq = ?",
    [ST_PRUNE] = "DELETE FROM checkpoints WHERE agent = ? AND seq <= ? "
                 "RETURNING seal",
    [ST_SEAL_INS] = "INSERT OR IGNORE INTO seals(hash, body, sig, live) "
                    "VALUES(?, ?, ?, 0)",
    [ST_SEAL_ID] = "SELECT id FROM seals WHERE hash = ?",
    [ST_SEAL_LIVE] = "UPDATE seals SET live = live + ? WHERE id = ?",
    [ST_SEAL_GC] = "DELETE FROM seals WHERE id = ? AND live <= 0",
    [ST_AGENT_INS] = "INSERT INTO agents(name, kind, config, owner, epoch, "
                     "status, reason, req, created_ms, updated_ms, inc) "
                     "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_AGENT_UPD] = "UPDATE agents SET owner = ?, epoch = ?, status = ?, "
                     "reason = ?, updated_ms = ?, inc = ? WHERE name = ?",
    [ST_MAIL_INS] = "INSERT OR IGNORE INTO mailbox(to_agent, from_agent, "
                    "from_seq, idx, payload) VALUES(?, ?, ?, ?, ?)",
    [ST_MAIL_DEL] = "DELETE FROM mailbox WHERE to_agent = ? AND "
                    "from_agent = ? AND from_seq = ? AND idx = ? "
                    "RETURNING length(payload)",
    [ST_NODE_PUT] = "INSERT OR REPLACE INTO nodes(id, pk, address, labels, "
                    "removed) VALUES(?, ?, ?, ?, ?)",
    [ST_EVIDENCE] = "INSERT INTO evidence(agent, seq, time_ms, kind, "
                    "stored_hash, other_hash, other_body, note) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
    [ST_APPLIED] = "INSERT OR REPLACE INTO meta(key, value) "
                   "VALUES('applied_index', ?)",
    [ST_CRASH_PUT] = "INSERT OR REPLACE INTO crashes(name, n, since_ms, "
                     "floor, last_req, reason) VALUES(?, ?, ?, ?, ?, ?)",
    [ST_CODE_PUT] = "INSERT OR REPLACE INTO code(kind, node, hash, version) "
                    "VALUES(?, ?, ?, ?)",
    [ST_REQ_INS] = "INSERT INTO reqs(req, n, type, status, why) "
                   "VALUES(?, ?, ?, ?, ?)",
    [ST_REQ_EVICT] = "DELETE FROM reqs WHERE n < ?",
    [ST_REQ_WHY] = "SELECT why FROM reqs WHERE req = ?",
    [ST_AGENT_CFG] = "UPDATE agents SET config = ?, updated_ms = ? "
                     "WHERE name = ?",
    [ST_MAIL_CLEAR] = "DELETE FROM mailbox WHERE to_agent = ?",
};

/* Step a statement that returns no row we need, then reset it. */
int ol__sm_done(struct ol__sm *sm, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        ol_log_rl(OL_LOG_ERROR, "store: %s", sqlite3_errmsg(sm->st->db));
        return OL_EIO;
    }
    return 0;
}

/* ---- cache ---- */

void ol__sm_agent_free(struct ol__sm_agent *a)
{
    if (a == NULL)
        return;
    free(a->config);
    free(a);
}

static void cache_clear(struct ol__sm *sm)
{
    void *v;

    for (size_t i = 0; ol__map_next(&sm->agents, &i, &v);)
        ol__sm_agent_free(v);
    ol__map_close(&sm->agents);
    ol__map_init(&sm->agents);
    free(sm->nodes);
    sm->nodes = NULL;
    sm->n_nodes = 0;
    free(sm->code);
    sm->code = NULL;
    sm->n_code = 0;
}

static int load_heads(struct ol__sm *sm)
{
    sqlite3_stmt *st;
    void *v;
    int rv = ol__store_prepare(
        sm->st,
        "SELECT seq, hash, time_ms FROM checkpoints WHERE agent = ? "
        "ORDER BY seq DESC LIMIT 1",
        &st);

    if (rv != 0)
        return rv;
    for (size_t i = 0; ol__map_next(&sm->agents, &i, &v);) {
        struct ol__sm_agent *a = v;

        sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW &&
            sqlite3_column_bytes(st, 1) == OL_HASH_SIZE) {
            a->head_seq = (uint64_t)sqlite3_column_int64(st, 0);
            memcpy(a->head_hash, sqlite3_column_blob(st, 1), OL_HASH_SIZE);
            a->head_time_ms = sqlite3_column_int64(st, 2);
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return 0;
}

static int load_agents(struct ol__sm *sm)
{
    sqlite3_stmt *st;
    int rv = ol__store_prepare(sm->st,
                               "SELECT name, kind, config, owner, epoch, "
                               "status, reason, req, inc FROM agents",
                               &st);

    if (rv != 0)
        return rv;
    while (rv == 0 && sqlite3_step(st) == SQLITE_ROW) {
        struct ol__sm_agent *a = calloc(1, sizeof *a);
        int n = sqlite3_column_bytes(st, 2);

        if (a == NULL || (a->config = malloc(n ? (size_t)n : 1)) == NULL) {
            free(a);
            rv = OL_ENOMEM;
            break;
        }
        snprintf(a->name, sizeof a->name, "%s", sqlite3_column_text(st, 0));
        snprintf(a->kind, sizeof a->kind, "%s", sqlite3_column_text(st, 1));
        if (n)
            memcpy(a->config, sqlite3_column_blob(st, 2), (size_t)n);
        a->config_len = (uint32_t)n;
        a->owner = (uint64_t)sqlite3_column_int64(st, 3);
        a->epoch = (uint64_t)sqlite3_column_int64(st, 4);
        a->status = sqlite3_column_int(st, 5);
        snprintf(a->reason, sizeof a->reason, "%s",
                 sqlite3_column_text(st, 6));
        a->req = (uint64_t)sqlite3_column_int64(st, 7);
        a->inc = (uint64_t)sqlite3_column_int64(st, 8);
        rv = ol__map_put(&sm->agents, a->name, a);
        if (rv != 0)
            ol__sm_agent_free(a);
    }
    sqlite3_finalize(st);
    if (rv == 0)
        rv = load_heads(sm);
    return rv ? rv : ol__sm_load_crashes(sm);
}

static int load_nodes(struct ol__sm *sm)
{
    sqlite3_stmt *st;
    int rv = ol__store_prepare(
        sm->st, "SELECT id, pk, address, labels, removed FROM nodes", &st);

    if (rv != 0)
        return rv;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct ol__sm_node n;

        memset(&n, 0, sizeof n);
        n.id = (uint64_t)sqlite3_column_int64(st, 0);
        if (sqlite3_column_bytes(st, 1) != OL_PK_SIZE)
            continue;
        memcpy(n.pk, sqlite3_column_blob(st, 1), OL_PK_SIZE);
        snprintf(n.address, sizeof n.address, "%s",
                 sqlite3_column_text(st, 2));
        snprintf(n.labels, sizeof n.labels, "%s", sqlite3_column_text(st, 3));
        n.removed = sqlite3_column_int(st, 4);
        if (ol__sm_cache_node(sm, &n) != 0) {
            rv = OL_ENOMEM;
            break;
        }
    }
    sqlite3_finalize(st);
    return rv;
}

int ol__sm_cache_node(struct ol__sm *sm, const struct ol__sm_node *n)
{
    struct ol__sm_node *nodes;

    for (size_t i = 0; i < sm->n_nodes; i++) {
        if (sm->nodes[i].id == n->id) {
            sm->nodes[i] = *n;
            return 0;
        }
    }
    nodes = realloc(sm->nodes, (sm->n_nodes + 1) * sizeof *nodes);
    if (nodes == NULL)
        return OL_ENOMEM;
    sm->nodes = nodes;
    sm->nodes[sm->n_nodes++] = *n;
    return 0;
}

void ol__sm_effects_all(const struct ol__sm *sm, struct ol__effects *fx)
{
    const struct ol__sm_agent *a;

    for (size_t i = 0; ol__sm_agent_next(sm, &i, &a);)
        ol__fx_agent(fx, a);
}

int ol__sm_reload(struct ol__sm *sm)
{
    int64_t applied = 0;
    int rv;

    cache_clear(sm);
    rv = ol__store_meta_get_int(sm->st, "applied_index", &applied);
    if (rv != 0 && rv != OL_ENOTFOUND)
        return rv;
    sm->applied = (uint64_t)applied;
    rv = load_agents(sm);
    if (rv == 0)
        rv = load_nodes(sm);
    if (rv == 0)
        rv = ol__sm_load_code(sm);
    if (rv == 0)
        rv = ol__sm_reqs_load(sm);
    return rv;
}

int ol__sm_open(struct ol__store *st, const struct ol__sm_config *cfg,
                struct ol__sm **out, char *errmsg)
{
    struct ol__sm *sm = calloc(1, sizeof *sm);
    int rv = 0;

    if (sm == NULL)
        return OL_ENOMEM;
    sm->st = st;
    sm->cfg = *cfg;
    ol__map_init(&sm->agents);
    for (int i = 0; i < SM_N_STMTS && rv == 0; i++)
        rv = ol__store_prepare(st, sql[i], &sm->stmt[i]);
    if (rv == 0)
        rv = ol__sm_reload(sm);
    if (rv != 0) {
        ol__errf(errmsg, "%s", st->errmsg);
        ol__sm_close(sm);
        return rv;
    }
    *out = sm;
    return 0;
}

void ol__sm_close(struct ol__sm *sm)
{
    if (sm == NULL)
        return;
    cache_clear(sm);
    ol__sm_reqs_clear(&sm->reqs);
    for (int i = 0; i < SM_N_STMTS; i++)
        sqlite3_finalize(sm->stmt[i]);
    free(sm);
}

const struct ol__sm_agent *ol__sm_agent(const struct ol__sm *sm,
                                        const char *name)
{
    return ol__map_get(&sm->agents, name);
}

int ol__sm_agent_next(const struct ol__sm *sm, size_t *iter,
                      const struct ol__sm_agent **out)
{
    void *v;

    if (!ol__map_next(&sm->agents, iter, &v))
        return 0;
    *out = v;
    return 1;
}

const struct ol__sm_node *ol__sm_node(const struct ol__sm *sm, uint64_t id)
{
    for (size_t i = 0; i < sm->n_nodes; i++)
        if (sm->nodes[i].id == id)
            return &sm->nodes[i];
    return NULL;
}

size_t ol__sm_nodes(const struct ol__sm *sm, const struct ol__sm_node **out)
{
    *out = sm->nodes;
    return sm->n_nodes;
}

uint64_t ol__sm_applied(const struct ol__sm *sm)
{
    return sm->applied;
}

int ol__sm_set_applied(struct ol__sm *sm, uint64_t index)
{
    sqlite3_stmt *st = sm->stmt[ST_APPLIED];

    sqlite3_bind_int64(st, 1, (sqlite3_int64)index);
    if (ol__sm_done(sm, st) != 0)
        return OL_EIO;
    sm->applied = index;
    return 0;
}

int ol__sm_stored_hash(struct ol__sm *sm, const char *agent, uint64_t seq,
                       uint8_t out[OL_HASH_SIZE])
{
    sqlite3_stmt *st = sm->stmt[ST_GET_HASH];
    int rc, found = 0;

    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == OL_HASH_SIZE) {
        memcpy(out, sqlite3_column_blob(st, 0), OL_HASH_SIZE);
        found = 1;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return OL_EIO;
    return found;
}

void ol__sm_effects_mail(struct ol__sm *sm, struct ol__effects *fx)
{
    sqlite3_stmt *st;

    if (ol__store_prepare(sm->st,
                          "SELECT id, to_agent, from_agent, from_seq, idx, "
                          "payload FROM mailbox ORDER BY id",
                          &st) != 0)
        return;
    while (sqlite3_step(st) == SQLITE_ROW)
        ol__fx_mail(fx, (const char *)sqlite3_column_text(st, 1),
                    (const char *)sqlite3_column_text(st, 2),
                    (uint64_t)sqlite3_column_int64(st, 3),
                    (uint32_t)sqlite3_column_int64(st, 4),
                    sqlite3_column_blob(st, 5),
                    (uint32_t)sqlite3_column_bytes(st, 5),
                    sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
}

const char *ol__sm_errmsg(const struct ol__sm *sm)
{
    return sm->errmsg;
}

void ol__sm_stats(const struct ol__sm *sm, struct ol__sm_stats *out)
{
    *out = sm->stats;
}

/* ---- writes shared by the commands ---- */

int ol__sm_write_agent(struct ol__sm *sm, const struct ol__sm_agent *a)
{
    sqlite3_stmt *st = sm->stmt[ST_AGENT_UPD];

    sqlite3_bind_int64(st, 1, (sqlite3_int64)a->owner);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a->epoch);
    sqlite3_bind_int(st, 3, a->status);
    sqlite3_bind_text(st, 4, a->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, sm->now_ms);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)a->inc);
    sqlite3_bind_text(st, 7, a->name, -1, SQLITE_STATIC);
    return ol__sm_done(sm, st);
}

int ol__sm_write_node(struct ol__sm *sm, const struct ol__sm_node *n)
{
    sqlite3_stmt *st = sm->stmt[ST_NODE_PUT];

    sqlite3_bind_int64(st, 1, (sqlite3_int64)n->id);
    sqlite3_bind_blob(st, 2, n->pk, OL_PK_SIZE, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, n->address, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, n->labels, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, n->removed);
    return ol__sm_done(sm, st);
}

int ol__sm_put_node(struct ol__sm *sm, const struct ol__sm_node *n)
{
    int rv = ol__store_begin(sm->st);

    if (rv != 0)
        return rv;
    rv = ol__sm_write_node(sm, n);
    if (rv == 0)
        rv = ol__store_commit(sm->st);
    if (rv != 0) {
        ol__store_rollback(sm->st);
        return rv;
    }
    return ol__sm_cache_node(sm, n);
}

