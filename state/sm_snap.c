/*
 * State machine snapshots for raft.  A snapshot holds what a node needs to
 * serve after missing part of the log: the nodes, agents, mailbox, crashes
 * and code tables, each agent's newest checkpoint with the seal that
 * signed it, and the request ids of the newest applied commands.
 *
 * Taking one reads through a connection whose read transaction was opened
 * when raft asked (so it shows exactly the applied state) and may run on a
 * worker thread.  Installing one merges rather than replaces: history rows
 * this node already has are kept, rows from the snapshot are marked as
 * such (so `verify` can tell a snapshot gap from a lost row), and a store
 * that has already applied past the snapshot is left alone, which is what
 * makes raft 0.15's restore-at-start harmless.  This file takes snapshots
 * and reads an install's header; sm_snap_rows.c installs the rows.
 */
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/pack.h"
#include "sm_snap_int.h"

/* A text column, "" for NULL. */
static const char *col_text(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);

    return s ? s : "";
}

static int64_t count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t n = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Pack every row of `sql` as an array of `cols` columns; `types` says per
 * column: 'i' signed integer, 'u' unsigned 64-bit (SQLite stores those
 * signed, so random ids and incarnations can come back negative), 's'
 * text, 'b' blob. */
static int rows(sqlite3 *db, msgpack_packer *pk, const char *count_sql,
                const char *sql, const char *types)
{
    sqlite3_stmt *st;
    int64_t n = count(db, count_sql);
    int cols = (int)strlen(types), rc;

    if (n < 0 || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return OL_EIO;
    msgpack_pack_array(pk, (size_t)n);
    while (n-- > 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        msgpack_pack_array(pk, (size_t)cols);
        for (int i = 0; i < cols; i++) {
            if (types[i] == 'i')
                msgpack_pack_int64(pk, sqlite3_column_int64(st, i));
            else if (types[i] == 'u')
                msgpack_pack_uint64(pk,
                                    (uint64_t)sqlite3_column_int64(st, i));
            else if (types[i] == 's')
                ol__pk_str(pk, col_text(st, i));
            else
                msgpack_pack_bin_with_body(
                    pk, sqlite3_column_blob(st, i),
                    (size_t)sqlite3_column_bytes(st, i));
        }
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    /* The counts and the rows come from one read transaction, so they
     * agree; a row left over means they did not. */
    return n == -1 && rc == SQLITE_DONE ? 0 : OL_EIO;
}

/* The newest checkpoint of each agent, and the seals that signed them,
 * found once per snapshot into temporary tables (a temporary table can be
 * written through a read-only connection, inside its read transaction):
 * the rows below are then index lookups.  Found through a correlated
 * subquery for every checkpoint row instead, as before, the heads and
 * their seals cost four passes over the whole history, seconds at a
 * million rows, while raft waited for the snapshot. */
static const char heads_sql[] =
    "CREATE TEMP TABLE IF NOT EXISTS snap_heads("
    "  agent TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TEMP TABLE IF NOT EXISTS snap_seals(id INTEGER PRIMARY KEY);"
    "DELETE FROM temp.snap_heads; DELETE FROM temp.snap_seals;"
    "INSERT INTO temp.snap_heads SELECT agent, max(seq) FROM checkpoints "
    "  GROUP BY agent;"
    "INSERT OR IGNORE INTO temp.snap_seals SELECT c.seal FROM "
    "  temp.snap_heads h JOIN checkpoints c ON c.agent = h.agent AND "
    "  c.seq = h.seq;";

static const char heads_done_sql[] =
    "DELETE FROM temp.snap_heads; DELETE FROM temp.snap_seals;";

#define HEADS                                                              \
    "FROM temp.snap_heads h JOIN checkpoints c ON c.agent = h.agent AND "  \
    "c.seq = h.seq"

int ol__sm_snapshot_db(sqlite3 *db, uint64_t index, struct ol__buf *out)
{
    msgpack_packer pk;
    int rv;

    msgpack_packer_init(&pk, out, ol__buf_write);
    msgpack_pack_array(&pk, 11);
    msgpack_pack_uint32(&pk, SNAP_FORMAT);
    msgpack_pack_uint64(&pk, index);
    rv = rows(db, &pk, "SELECT count(*) FROM nodes",
              "SELECT id, pk, address, labels, removed FROM nodes", "ubssu");
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) FROM agents",
                  "SELECT name, kind, config, owner, inc, epoch, status, "
                  "reason, req, created_ms, updated_ms FROM agents",
                  "ssbuuuusuii");
    if (rv == 0 && sqlite3_exec(db, heads_sql, NULL, NULL, NULL) != SQLITE_OK)
        rv = OL_EIO;
    if (rv == 0)
        rv = rows(db, &pk,
                  "SELECT count(*) FROM temp.snap_seals x JOIN seals s ON "
                  "s.id = x.id",
                  "SELECT s.id, s.body, s.sig FROM temp.snap_seals x JOIN "
                  "seals s ON s.id = x.id",
                  "ibb");
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) " HEADS,
                  "SELECT c.agent, c.seq, c.epoch, c.time_ms, c.seal, c.idx, "
                  "c.body " HEADS,
                  "suuiiib");
    (void)sqlite3_exec(db, heads_done_sql, NULL, NULL, NULL);
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) FROM mailbox",
                  "SELECT id, to_agent, from_agent, from_seq, idx, payload "
                  "FROM mailbox",
                  "issuub");
    /* The mailbox's id sequence, so that ids stay the same on every node
     * after an install. */
    if (rv == 0) {
        int64_t seq = count(db, "SELECT coalesce(max(seq), 0) FROM "
                                "sqlite_sequence WHERE name = 'mailbox'");

        if (seq < 0)
            seq = 0;
        msgpack_pack_int64(&pk, seq);
    }
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) FROM crashes",
                  "SELECT name, n, since_ms, floor, last_req, reason "
                  "FROM crashes",
                  "siiuus");
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) FROM code",
                  "SELECT kind, node, hash, version FROM code", "subs");
    /* In apply-counter order, which is the order of eviction. */
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) FROM reqs",
                  "SELECT req, n, type, status, why FROM reqs ORDER BY n",
                  "uiiis");
    if (rv == 0 && out->base == NULL)
        rv = OL_ENOMEM;
    return rv;
}

int ol__sm_snapshot(struct ol__sm *sm, struct ol__buf *out)
{
    return ol__sm_snapshot_db(sm->st->db, sm->applied, out);
}

/* ---- restore ---- */

/* Read the header: the format and the raft index the snapshot was taken
 * at.  `hint`, when not 0, is the index raft says the snapshot is at, and
 * the header must agree with it. */
static int restore_header(struct restore *rs, uint64_t hint, uint64_t *index,
                          char *errmsg)
{
    uint32_t n;

    if (ol__mpr_array(&rs->r, &n) || ol__mpr_uint(&rs->r, &rs->format) ||
        (rs->format == 1 && n != 7) || (rs->format == 2 && n != 8) ||
        (rs->format == 3 && n != 10) || (rs->format == 4 && n != 11) ||
        rs->format < 1 || rs->format > SNAP_FORMAT ||
        ol__mpr_uint(&rs->r, index)) {
        ol__errf(errmsg, "snapshot: header is malformed (byte %zu)",
                 rs->r.off);
        return OL_EMALFORMED;
    }
    if (hint != 0 && *index != hint) {
        ol__errf(errmsg,
                 "snapshot: header says index %" PRIu64 " but raft says "
                 "%" PRIu64,
                 *index, hint);
        return OL_EMALFORMED;
    }
    return 0;
}

/* The tables in the order the snapshot holds them; history (checkpoints
 * and seals) is merged, the rest replaced. */
static int restore_parts(struct restore *rs)
{
    int rv = ol__store_exec(rs->sm->st,
                            "DELETE FROM nodes; DELETE FROM agents; "
                            "DELETE FROM mailbox; DELETE FROM crashes; "
                            "DELETE FROM code; DELETE FROM reqs;");

    if (rv == 0)
        rv = ol__snap_restore_rows(rs);
    if (rv == 0 && !ol__mpr_done(&rs->r)) {
        rs->what = "trailing bytes";
        rv = OL_EMALFORMED;
    }
    /* Replaced rows released their seals' references. */
    if (rv == 0 && rs->diverged)
        rv = ol__sm_sweep_seals(rs->sm);
    return rv;
}

/* Nothing changed: say why, drop the effects and reload the caches. */
static int restore_failed(struct restore *rs, int rv, char *errmsg)
{
    struct ol__sm *sm = rs->sm;

    ol__store_rollback(sm->st);
    if (rv == OL_EMALFORMED)
        ol__errf(errmsg, "snapshot: %s is malformed (byte %zu)", rs->what,
                 rs->r.off);
    else
        ol__errf(errmsg, "snapshot: %s",
                 sm->st->errmsg[0] ? sm->st->errmsg : ol_strerror(rv));
    if (rs->fx)
        ol__effects_free(rs->fx);
    ol__sm_reload(sm);
    return rv;
}

int ol__sm_restore(struct ol__sm *sm, const void *p, size_t len,
                   uint64_t index_hint, struct ol__effects *fx, char *errmsg)
{
    struct restore rs;
    uint64_t index;
    int rv;

    /* Evidence found here is this node's own observation, not replicated
     * state: it is stamped with this node's clock. */
    sm->now_ms = ol__wall_ms();
    memset(&rs, 0, sizeof rs);
    rs.sm = sm;
    rs.fx = fx;
    rs.what = "header";
    ol__mpr_init(&rs.r, p, len);
    rv = restore_header(&rs, index_hint, &index, errmsg);
    if (rv != 0)
        return rv;
    if (index <= sm->applied) {
        ol_log(OL_LOG_INFO,
               "snapshot at index %" PRIu64 " skipped: the store has "
               "applied up to %" PRIu64,
               index, sm->applied);
        return 0;
    }
    rv = ol__store_begin(sm->st);
    if (rv == 0)
        rv = restore_parts(&rs);
    if (rv == 0)
        rv = ol__sm_set_applied(sm, index);
    if (rv == 0)
        rv = ol__store_commit(sm->st);
    ol__snap_restore_close(&rs);
    if (rv != 0)
        return restore_failed(&rs, rv, errmsg);
    ol_log(OL_LOG_INFO, "snapshot at index %" PRIu64 " installed", index);
    return ol__sm_reload(sm);
}
