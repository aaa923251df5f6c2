/*
 * Read-only queries over a node's database: the answers to `agents`,
 * `show` and `history`, packed as msgpack.  The daemon runs them on its
 * reader connection; the CLI runs them on a database file it opened itself.
 *
 * Each query packs into a scratch buffer first and copies the finished value
 * to the caller's packer, so a query that fails half way leaves nothing
 * behind.  The database file is input: blobs that are embedded as msgpack
 * are checked first, and a head checkpoint is verified before its state is
 * shown.
 */
#include "query.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verify.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/mpr.h"
#include "base/pack.h"
#include "store.h"

/* Maps are written with base/pack.h's map writer, which counts its own
 * pairs; a buffer that could not grow shows in ol__pk_map_end, and the
 * other packing calls return nonzero.  Callers OR the results together
 * and check once. */

/* A blob as lowercase hex ("" for NULL or empty). */
static int kv_hex(struct ol__pk_map *m, const char *k, const void *p,
                  size_t n)
{
    char small[2 * 64 + 1];
    char *hex = n <= 64 ? small : malloc(2 * n + 1);

    if (hex == NULL)
        return -1;
    if (p == NULL)
        n = 0;
    ol__hex(p, n, hex);
    ol__pk_kv_str(m, k, hex);
    if (hex != small)
        free(hex);
    return 0;
}

static int map_end(struct ol__pk_map *m)
{
    return ol__pk_map_end(m) != 0;
}

static int pack_raw(msgpack_packer *pk, const void *p, size_t n)
{
    return pk->callback(pk->data, p, n);
}

/* Hand the finished scratch value (an optional header, then the body) to
 * the caller's packer in one piece. */
static int finish(const struct ol__buf *head, const struct ol__buf *b,
                  int bad, msgpack_packer *pk, char *errmsg)
{
    struct ol__buf all;
    int rv = 0;

    ol__buf_init(&all);
    if (bad || (head && ol__buf_append(&all, head->base, head->len)) ||
        ol__buf_append(&all, b->base, b->len) ||
        pack_raw(pk, all.base, all.len) != 0) {
        ol__errf(errmsg, "query: out of memory packing the result");
        rv = OL_ENOMEM;
    }
    ol__buf_close(&all);
    return rv;
}

/* A scratch buffer with its packer. */
struct scratch {
    struct ol__buf b;
    msgpack_packer pk;
};

static void scratch_init(struct scratch *s)
{
    ol__buf_init(&s->b);
    msgpack_packer_init(&s->pk, &s->b, ol__buf_write);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);

    return t ? (const char *)t : "";
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st,
                   char *errmsg)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK) {
        ol__errf(errmsg, "query: prepare: %s", sqlite3_errmsg(db));
        return OL_EIO;
    }
    return 0;
}

static int step_failed(sqlite3 *db, sqlite3_stmt *st, const char *what,
                       char *errmsg)
{
    ol__errf(errmsg, "query %s: %s", what, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return OL_EIO;
}

/* ---- agents ---- */

/* Removed agents (tombstones, status 5) only when asked for.  Names are
 * [A-Za-z0-9._-], all below '~', so a prefix is a range of the primary
 * key. */
static const char agents_sql[] =
    "SELECT name, kind, status, owner, epoch, reason FROM agents"
    " WHERE (status != 5 OR ?1 OR ?2 = 5) AND (?2 = 0 OR status = ?2)"
    "   AND (?3 IS NULL OR kind = ?3) AND (?4 = 0 OR owner = ?4)"
    "   AND (?5 IS NULL OR (name >= ?5 AND name < ?5 || '~'))"
    "   AND (?6 IS NULL OR name > ?6)"
    " ORDER BY name LIMIT ?7";

/* Each agent's head and mailbox on their own: a damaged page costs the
 * agents whose rows are on it (their reason says so), not the listing. */
static const char agent_head_sql[] =
    "SELECT seq, time_ms, hash FROM checkpoints WHERE agent = ?1 ORDER BY "
    "seq DESC LIMIT 1";
static const char agent_mail_sql[] =
    "SELECT count(*) FROM mailbox WHERE to_agent = ?1";

static void bind_filter(sqlite3_stmt *st, const struct ol__agent_filter *f)
{
    sqlite3_bind_int(st, 1, f->all != 0);
    sqlite3_bind_int(st, 2, f->status);
    if (f->kind)
        sqlite3_bind_text(st, 3, f->kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)f->owner);
    if (f->prefix)
        sqlite3_bind_text(st, 5, f->prefix, -1, SQLITE_STATIC);
    if (f->after)
        sqlite3_bind_text(st, 6, f->after, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, f->limit ? (sqlite3_int64)f->limit : -1);
}

/* One agent of the listing, into `rows`: its agents row `st`, with its
 * head from `hd` and its mailbox count from `mb`.  Returns nonzero if
 * packing failed. */
static int pack_agent(sqlite3 *db, sqlite3_stmt *st, sqlite3_stmt *hd,
                      sqlite3_stmt *mb, msgpack_packer *rp,
                      struct ol__buf *rows)
{
    struct ol__pk_map m;
    char reason[OL_ERRMSG_SIZE];
    int hrc, mrc, bad = 0;

    snprintf(reason, sizeof reason, "%s", col_text(st, 5));
    sqlite3_bind_text(hd, 1, col_text(st, 0), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(mb, 1, col_text(st, 0), -1, SQLITE_TRANSIENT);
    hrc = sqlite3_step(hd);
    if (hrc != SQLITE_ROW && hrc != SQLITE_DONE && reason[0] == '\0')
        snprintf(reason, sizeof reason,
                 "its newest checkpoint cannot be read: %s",
                 sqlite3_errmsg(db));
    mrc = sqlite3_step(mb);
    ol__pk_map_begin(&m, rp, rows);
    ol__pk_kv_str(&m, "name", col_text(st, 0));
    ol__pk_kv_str(&m, "kind", col_text(st, 1));
    ol__pk_kv_str(&m, "status", ol__status_name(sqlite3_column_int(st, 2)));
    ol__pk_kv_uint(&m, "owner", (uint64_t)sqlite3_column_int64(st, 3));
    ol__pk_kv_uint(&m, "epoch", (uint64_t)sqlite3_column_int64(st, 4));
    ol__pk_kv_uint(&m, "seq", hrc == SQLITE_ROW
                                  ? (uint64_t)sqlite3_column_int64(hd, 0)
                                  : 0);
    ol__pk_kv_int(&m, "time_ms",
                  hrc == SQLITE_ROW ? sqlite3_column_int64(hd, 1) : 0);
    bad |= kv_hex(&m, "hash",
                  hrc == SQLITE_ROW ? sqlite3_column_blob(hd, 2) : NULL,
                  hrc == SQLITE_ROW ? (size_t)sqlite3_column_bytes(hd, 2)
                                    : 0);
    ol__pk_kv_str(&m, "reason", reason);
    ol__pk_kv_uint(&m, "mailbox",
                   mrc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(mb, 0)
                                     : 0);
    sqlite3_reset(hd);
    sqlite3_reset(mb);
    return bad | map_end(&m);
}

int ol__query_agents(sqlite3 *db, msgpack_packer *pk,
                     const struct ol__agent_filter *f, char *errmsg)
{
    static const struct ol__agent_filter none;
    struct scratch head;
    struct ol__buf rows;
    msgpack_packer rp;
    sqlite3_stmt *st, *hd = NULL, *mb = NULL;
    uint32_t n = 0;
    int bad = 0, rc, rv;

    if ((rv = prepare(db, agents_sql, &st, errmsg)) != 0)
        return rv;
    bind_filter(st, f ? f : &none);
    if ((rv = prepare(db, agent_head_sql, &hd, errmsg)) != 0 ||
        (rv = prepare(db, agent_mail_sql, &mb, errmsg)) != 0) {
        sqlite3_finalize(st);
        sqlite3_finalize(hd);
        return rv;
    }
    ol__buf_init(&rows);
    msgpack_packer_init(&rp, &rows, ol__buf_write);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bad |= pack_agent(db, st, hd, mb, &rp, &rows);
        n++;
    }
    sqlite3_finalize(hd);
    sqlite3_finalize(mb);
    if (rc != SQLITE_DONE) {
        ol__buf_close(&rows);
        return step_failed(db, st, "agents", errmsg);
    }
    sqlite3_finalize(st);
    scratch_init(&head);
    bad |= msgpack_pack_array(&head.pk, n);
    rv = finish(&head.b, &rows, bad, pk, errmsg);
    ol__buf_close(&head.b);
    ol__buf_close(&rows);
    return rv;
}

/* ---- show ---- */

struct agent_row {
    char *kind;
    uint8_t *config;
    size_t config_len;
    uint64_t owner, epoch;
    int status;
    char *reason;
    uint64_t mailbox;
};

static void agent_row_free(struct agent_row *a)
{
    free(a->kind);
    free(a->config);
    free(a->reason);
}

static int load_agent(sqlite3 *db, const char *name, struct agent_row *a,
                      char *errmsg)
{
    sqlite3_stmt *st;
    int rc, rv;

    memset(a, 0, sizeof *a);
    rv = prepare(db,
                 "SELECT kind, config, owner, epoch, status, reason,"
                 " (SELECT count(*) FROM mailbox WHERE to_agent = name)"
                 " FROM agents WHERE name = ?",
                 &st, errmsg);
    if (rv != 0)
        return rv;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        ol__errf(errmsg, "no agent '%s'", name);
        return OL_ENOTFOUND;
    }
    if (rc != SQLITE_ROW)
        return step_failed(db, st, "agent", errmsg);
    a->kind = strdup(col_text(st, 0));
    a->config_len = (size_t)sqlite3_column_bytes(st, 1);
    a->config = malloc(a->config_len ? a->config_len : 1);
    a->reason = strdup(col_text(st, 5));
    if (a->kind == NULL || a->config == NULL || a->reason == NULL) {
        sqlite3_finalize(st);
        agent_row_free(a);
        ol__errf(errmsg, "agent '%s': out of memory", name);
        return OL_ENOMEM;
    }
    if (a->config_len)
        memcpy(a->config, sqlite3_column_blob(st, 1), a->config_len);
    a->owner = (uint64_t)sqlite3_column_int64(st, 2);
    a->epoch = (uint64_t)sqlite3_column_int64(st, 3);
    a->status = sqlite3_column_int(st, 4);
    a->mailbox = (uint64_t)sqlite3_column_int64(st, 6);
    sqlite3_finalize(st);
    if (ol__mp_check(a->config, a->config_len, NULL) != 0) {
        agent_row_free(a);
        ol__errf(errmsg, "agent '%s': stored config is not msgpack", name);
        return OL_EMALFORMED;
    }
    return 0;
}

static int pack_head(struct ol__pk_map *m, const struct ol__ckpt *c,
                     const uint8_t hash[OL_HASH_SIZE])
{
    struct ol__pk_map plugin;
    msgpack_packer *pk = m->pk;
    int bad = 0;

    ol__pk_kv_uint(m, "seq", c->seq);
    ol__pk_kv_int(m, "time_ms", c->time_ms);
    bad |= kv_hex(m, "hash", hash, OL_HASH_SIZE);
    ol__pk_key(m, "state");
    bad |= pack_raw(pk, c->state, c->state_len);
    ol__pk_key(m, "timers");
    bad |= msgpack_pack_array(pk, c->n_timers);
    for (uint32_t i = 0; i < c->n_timers; i++) {
        bad |= msgpack_pack_array(pk, 2);
        bad |= msgpack_pack_uint64(pk, c->timers[i].id);
        bad |= msgpack_pack_int64(pk, c->timers[i].due_ms);
    }
    ol__pk_key(m, "plugin");
    ol__pk_map_begin(&plugin, pk, m->buf);
    ol__pk_kv_str(&plugin, "kind", c->plugin.kind);
    ol__pk_kv_str(&plugin, "version", c->plugin.version);
    bad |= kv_hex(&plugin, "so_hash", c->plugin.so_hash, OL_HASH_SIZE);
    bad |= map_end(&plugin);
    bad |= kv_hex(m, "signer", c->signer, OL_PK_SIZE);
    return bad;
}

static int pack_no_head(struct ol__pk_map *m)
{
    int bad = 0;

    ol__pk_kv_uint(m, "seq", 0);
    ol__pk_kv_int(m, "time_ms", 0);
    ol__pk_kv_str(m, "hash", "");
    ol__pk_key(m, "state");
    bad |= msgpack_pack_nil(m->pk);
    ol__pk_key(m, "timers");
    bad |= msgpack_pack_array(m->pk, 0);
    ol__pk_key(m, "plugin");
    bad |= msgpack_pack_nil(m->pk);
    ol__pk_kv_str(m, "signer", "");
    return bad;
}

int ol__query_show(sqlite3 *db, const char *name, msgpack_packer *pk,
                   char *errmsg)
{
    struct agent_row a;
    struct ol__ckpt head;
    uint8_t hash[OL_HASH_SIZE];
    char err[OL_ERRMSG_SIZE] = "";
    struct ol__buf b;
    msgpack_packer bp;
    struct ol__pk_map m;
    int bad = 0, have_head, rv;

    rv = load_agent(db, name, &a, errmsg);
    if (rv != 0)
        return rv;
    memset(&head, 0, sizeof head);
    rv = ol__verify_load_head(db, name, &head, hash, err);
    if (rv != 0 && rv != OL_ENOTFOUND) {
        ol__errf(errmsg, "head checkpoint does not verify: %s", err);
        agent_row_free(&a);
        return rv;
    }
    have_head = rv == 0;
    if (have_head && ol__mp_check(head.state, head.state_len, NULL) != 0) {
        ol__errf(errmsg, "agent '%s' seq %" PRIu64 ": state is not msgpack",
                 name, head.seq);
        ol__ckpt_free(&head);
        agent_row_free(&a);
        return OL_EMALFORMED;
    }
    ol__buf_init(&b);
    msgpack_packer_init(&bp, &b, ol__buf_write);
    ol__pk_map_begin(&m, &bp, &b);
    ol__pk_kv_str(&m, "name", name);
    ol__pk_kv_str(&m, "kind", a.kind);
    ol__pk_kv_str(&m, "status", ol__status_name(a.status));
    ol__pk_kv_uint(&m, "owner", a.owner);
    ol__pk_kv_uint(&m, "epoch", a.epoch);
    ol__pk_kv_str(&m, "reason", a.reason);
    ol__pk_key(&m, "config");
    bad |= pack_raw(&bp, a.config, a.config_len);
    ol__pk_kv_uint(&m, "mailbox", a.mailbox);
    bad |= have_head ? pack_head(&m, &head, hash) : pack_no_head(&m);
    bad |= map_end(&m);
    rv = finish(NULL, &b, bad, pk, errmsg);
    ol__buf_close(&b);
    if (have_head)
        ol__ckpt_free(&head);
    agent_row_free(&a);
    return rv;
}

/* ---- history ---- */

static int agent_known(sqlite3 *db, const char *name, char *errmsg)
{
    sqlite3_stmt *st;
    int rc, rv;

    rv = prepare(db,
                 "SELECT 1 FROM agents WHERE name = ?1 UNION ALL "
                 "SELECT 1 FROM checkpoints WHERE agent = ?1 LIMIT 1",
                 &st, errmsg);
    if (rv != 0)
        return rv;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return step_failed(db, st, "history", errmsg);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE) {
        ol__errf(errmsg, "no agent '%s'", name);
        return OL_ENOTFOUND;
    }
    return 0;
}

/* One history row.  The body is decoded for the fields the row does not
 * repeat; a body that does not decode is listed with an "error". */
static int pack_history_row(msgpack_packer *pk, struct ol__buf *b,
                            sqlite3_stmt *st)
{
    const void *body = sqlite3_column_blob(st, 4);
    size_t len = (size_t)sqlite3_column_bytes(st, 4);
    char err[OL_ERRMSG_SIZE];
    struct ol__ckpt c;
    struct ol__pk_map m;
    int ok, bad = 0;

    ok = body != NULL && ol__ckpt_decode(body, len, &c, err) == 0;
    if (body == NULL)
        snprintf(err, sizeof err, "no body");
    ol__pk_map_begin(&m, pk, b);
    ol__pk_kv_uint(&m, "seq", (uint64_t)sqlite3_column_int64(st, 0));
    ol__pk_kv_uint(&m, "epoch", (uint64_t)sqlite3_column_int64(st, 1));
    bad |= kv_hex(&m, "hash", sqlite3_column_blob(st, 3),
                  (size_t)sqlite3_column_bytes(st, 3));
    bad |= kv_hex(&m, "prev_hash", ok ? c.prev_hash : NULL, OL_HASH_SIZE);
    bad |= kv_hex(&m, "signer", ok ? c.signer : NULL, OL_PK_SIZE);
    ol__pk_kv_uint(&m, "size", len);
    ol__pk_kv_int(&m, "time_ms", sqlite3_column_int64(st, 2));
    ol__pk_kv_uint(&m, "outbox", ok ? c.n_outbox : 0);
    ol__pk_kv_uint(&m, "acks", ok ? c.n_acks : 0);
    ol__pk_kv_bool(&m, "final", ok && (c.flags & OL_CKPT_FINAL));
    ol__pk_kv_bool(&m, "snapshot", sqlite3_column_int64(st, 5) & 1);
    ol__pk_kv_bool(&m, "new_history", ok && (c.flags & OL_CKPT_NEW_HISTORY));
    ol__pk_kv_bool(&m, "recovered", ok && (c.flags & OL_CKPT_RECOVERED));
    if (!ok)
        ol__pk_kv_str(&m, "error", err);
    else
        ol__ckpt_free(&c);
    return bad | map_end(&m);
}

int ol__query_history(sqlite3 *db, const char *name, uint32_t limit,
                      msgpack_packer *pk, char *errmsg)
{
    struct scratch head;
    struct ol__buf rows;
    msgpack_packer rp;
    sqlite3_stmt *st;
    uint32_t n = 0;
    struct ol__pk_map m;
    int bad = 0, rc, rv;

    if ((rv = agent_known(db, name, errmsg)) != 0)
        return rv;
    rv = prepare(db,
                 "SELECT seq, epoch, time_ms, hash, body, flags"
                 "  FROM checkpoints WHERE agent = ? ORDER BY seq DESC"
                 "  LIMIT ?",
                 &st, errmsg);
    if (rv != 0)
        return rv;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, limit ? (sqlite3_int64)limit : -1);
    ol__buf_init(&rows);
    msgpack_packer_init(&rp, &rows, ol__buf_write);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bad |= pack_history_row(&rp, &rows, st);
        n++;
    }
    if (rc != SQLITE_DONE) {
        ol__buf_close(&rows);
        return step_failed(db, st, "history", errmsg);
    }
    sqlite3_finalize(st);
    scratch_init(&head);
    ol__pk_map_begin(&m, &head.pk, &head.b);
    ol__pk_kv_str(&m, "agent", name);
    ol__pk_key(&m, "checkpoints");
    bad |= msgpack_pack_array(&head.pk, n);
    bad |= map_end(&m);
    rv = finish(&head.b, &rows, bad, pk, errmsg);
    ol__buf_close(&head.b);
    ol__buf_close(&rows);
    return rv;
}
