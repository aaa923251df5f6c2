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
#include "store.h"

/* The packing helpers return nonzero when the scratch buffer could not
 * grow; callers OR the results together and check once. */

static int pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    return msgpack_pack_str_with_body(pk, s ? s : "", n);
}

static int pack_key(msgpack_packer *pk, const char *k)
{
    return pack_str(pk, k);
}

static int kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    return pack_key(pk, k) | pack_str(pk, v);
}

static int kv_uint(msgpack_packer *pk, const char *k, uint64_t v)
{
    return pack_key(pk, k) | msgpack_pack_uint64(pk, v);
}

static int kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    return pack_key(pk, k) | msgpack_pack_int64(pk, v);
}

static int kv_bool(msgpack_packer *pk, const char *k, int v)
{
    return pack_key(pk, k) |
           (v ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
}

/* A blob as lowercase hex ("" for NULL or empty). */
static int kv_hex(msgpack_packer *pk, const char *k, const void *p, size_t n)
{
    char small[2 * 64 + 1];
    char *hex = n <= 64 ? small : malloc(2 * n + 1);
    int rc;

    if (hex == NULL)
        return -1;
    if (p == NULL)
        n = 0;
    ol__hex(p, n, hex);
    rc = kv_str(pk, k, hex);
    if (hex != small)
        free(hex);
    return rc;
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

/* One agent of the listing: its agents row `st`, with its head from `hd`
 * and its mailbox count from `mb`.  Returns nonzero if packing failed. */
static int pack_agent(sqlite3 *db, sqlite3_stmt *st, sqlite3_stmt *hd,
                      sqlite3_stmt *mb, msgpack_packer *rp)
{
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
    bad |= msgpack_pack_map(rp, 10);
    bad |= kv_str(rp, "name", col_text(st, 0));
    bad |= kv_str(rp, "kind", col_text(st, 1));
    bad |= kv_str(rp, "status", ol__status_name(sqlite3_column_int(st, 2)));
    bad |= kv_uint(rp, "owner", (uint64_t)sqlite3_column_int64(st, 3));
    bad |= kv_uint(rp, "epoch", (uint64_t)sqlite3_column_int64(st, 4));
    bad |= kv_uint(rp, "seq", hrc == SQLITE_ROW
                                  ? (uint64_t)sqlite3_column_int64(hd, 0)
                                  : 0);
    bad |= kv_int(rp, "time_ms",
                  hrc == SQLITE_ROW ? sqlite3_column_int64(hd, 1) : 0);
    bad |= kv_hex(rp, "hash",
                  hrc == SQLITE_ROW ? sqlite3_column_blob(hd, 2) : NULL,
                  hrc == SQLITE_ROW ? (size_t)sqlite3_column_bytes(hd, 2)
                                    : 0);
    bad |= kv_str(rp, "reason", reason);
    bad |= kv_uint(rp, "mailbox",
                   mrc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(mb, 0)
                                     : 0);
    sqlite3_reset(hd);
    sqlite3_reset(mb);
    return bad;
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
        bad |= pack_agent(db, st, hd, mb, &rp);
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

static int pack_head(msgpack_packer *pk, const struct ol__ckpt *c,
                     const uint8_t hash[OL_HASH_SIZE])
{
    int bad = 0;

    bad |= kv_uint(pk, "seq", c->seq);
    bad |= kv_int(pk, "time_ms", c->time_ms);
    bad |= kv_hex(pk, "hash", hash, OL_HASH_SIZE);
    bad |= pack_key(pk, "state");
    bad |= pack_raw(pk, c->state, c->state_len);
    bad |= pack_key(pk, "timers");
    bad |= msgpack_pack_array(pk, c->n_timers);
    for (uint32_t i = 0; i < c->n_timers; i++) {
        bad |= msgpack_pack_array(pk, 2);
        bad |= msgpack_pack_uint64(pk, c->timers[i].id);
        bad |= msgpack_pack_int64(pk, c->timers[i].due_ms);
    }
    bad |= pack_key(pk, "plugin");
    bad |= msgpack_pack_map(pk, 3);
    bad |= kv_str(pk, "kind", c->plugin.kind);
    bad |= kv_str(pk, "version", c->plugin.version);
    bad |= kv_hex(pk, "so_hash", c->plugin.so_hash, OL_HASH_SIZE);
    bad |= kv_hex(pk, "signer", c->signer, OL_PK_SIZE);
    return bad;
}

static int pack_no_head(msgpack_packer *pk)
{
    int bad = 0;

    bad |= kv_uint(pk, "seq", 0);
    bad |= kv_int(pk, "time_ms", 0);
    bad |= kv_str(pk, "hash", "");
    bad |= pack_key(pk, "state") | msgpack_pack_nil(pk);
    bad |= pack_key(pk, "timers") | msgpack_pack_array(pk, 0);
    bad |= pack_key(pk, "plugin") | msgpack_pack_nil(pk);
    bad |= kv_str(pk, "signer", "");
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
    bad |= msgpack_pack_map(&bp, 15);
    bad |= kv_str(&bp, "name", name);
    bad |= kv_str(&bp, "kind", a.kind);
    bad |= kv_str(&bp, "status", ol__status_name(a.status));
    bad |= kv_uint(&bp, "owner", a.owner);
    bad |= kv_uint(&bp, "epoch", a.epoch);
    bad |= kv_str(&bp, "reason", a.reason);
    bad |= pack_key(&bp, "config") | pack_raw(&bp, a.config, a.config_len);
    bad |= kv_uint(&bp, "mailbox", a.mailbox);
    bad |= have_head ? pack_head(&bp, &head, hash) : pack_no_head(&bp);
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
static int pack_history_row(msgpack_packer *pk, sqlite3_stmt *st)
{
    const void *body = sqlite3_column_blob(st, 4);
    size_t len = (size_t)sqlite3_column_bytes(st, 4);
    char err[OL_ERRMSG_SIZE];
    struct ol__ckpt c;
    int ok, bad = 0;

    ok = body != NULL && ol__ckpt_decode(body, len, &c, err) == 0;
    if (body == NULL)
        snprintf(err, sizeof err, "no body");
    bad |= msgpack_pack_map(pk, ok ? 13 : 14);
    bad |= kv_uint(pk, "seq", (uint64_t)sqlite3_column_int64(st, 0));
    bad |= kv_uint(pk, "epoch", (uint64_t)sqlite3_column_int64(st, 1));
    bad |= kv_hex(pk, "hash", sqlite3_column_blob(st, 3),
                  (size_t)sqlite3_column_bytes(st, 3));
    bad |= kv_hex(pk, "prev_hash", ok ? c.prev_hash : NULL, OL_HASH_SIZE);
    bad |= kv_hex(pk, "signer", ok ? c.signer : NULL, OL_PK_SIZE);
    bad |= kv_uint(pk, "size", len);
    bad |= kv_int(pk, "time_ms", sqlite3_column_int64(st, 2));
    bad |= kv_uint(pk, "outbox", ok ? c.n_outbox : 0);
    bad |= kv_uint(pk, "acks", ok ? c.n_acks : 0);
    bad |= kv_bool(pk, "final", ok && (c.flags & OL_CKPT_FINAL));
    bad |= kv_bool(pk, "snapshot", sqlite3_column_int64(st, 5) & 1);
    bad |= kv_bool(pk, "new_history", ok && (c.flags & OL_CKPT_NEW_HISTORY));
    bad |= kv_bool(pk, "recovered", ok && (c.flags & OL_CKPT_RECOVERED));
    if (!ok)
        bad |= kv_str(pk, "error", err);
    else
        ol__ckpt_free(&c);
    return bad;
}

int ol__query_history(sqlite3 *db, const char *name, uint32_t limit,
                      msgpack_packer *pk, char *errmsg)
{
    struct scratch head;
    struct ol__buf rows;
    msgpack_packer rp;
    sqlite3_stmt *st;
    uint32_t n = 0;
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
        bad |= pack_history_row(&rp, st);
        n++;
    }
    if (rc != SQLITE_DONE) {
        ol__buf_close(&rows);
        return step_failed(db, st, "history", errmsg);
    }
    sqlite3_finalize(st);
    scratch_init(&head);
    bad |= msgpack_pack_map(&head.pk, 2);
    bad |= kv_str(&head.pk, "agent", name);
    bad |= pack_key(&head.pk, "checkpoints");
    bad |= msgpack_pack_array(&head.pk, n);
    rv = finish(&head.b, &rows, bad, pk, errmsg);
    ol__buf_close(&head.b);
    ol__buf_close(&rows);
    return rv;
}
