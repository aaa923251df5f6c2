/*
 * State machine snapshots for raft.  A snapshot holds what a node needs to
 * serve after missing part of the log: the nodes, agents, mailbox,
 * crashes and code tables and each agent's newest checkpoint with the seal that
 * signed it.  (The crashes and code tables are the eighth and ninth
 * elements; a snapshot from a node that did not have them is shorter.)
 *
 * Taking one reads through a connection whose read transaction was opened
 * when raft asked (so it shows exactly the applied state) and may run on a
 * worker thread.  Installing one merges rather than replaces: history rows
 * this node already has are kept, rows from the snapshot are marked as
 * such (so `verify` can tell a snapshot gap from a lost row), and a store
 * that has already applied past the snapshot is left alone, which is what
 * makes raft 0.15's restore-at-start harmless.
 */
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/err.h"
#include "../runtime/log.h"
#include "../runtime/mpr.h"
#include "seal.h"
#include "sm_int.h"

#define SNAP_FORMAT 1

static void pk_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

static void pk_col_blob(msgpack_packer *pk, sqlite3_stmt *st, int i)
{
    size_t n = (size_t)sqlite3_column_bytes(st, i);

    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, sqlite3_column_blob(st, i), n);
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
                pk_str(pk, (const char *)sqlite3_column_text(st, i));
            else
                pk_col_blob(pk, st, i);
        }
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    /* The counts and the rows come from one read transaction, so they
     * agree; a row left over means they did not. */
    return n == -1 && rc == SQLITE_DONE ? 0 : OL_EIO;
}

/* The newest checkpoint of each agent. */
#define HEADS                                                              \
    "FROM checkpoints c WHERE c.seq = (SELECT max(seq) FROM checkpoints "  \
    "WHERE agent = c.agent)"

int ol__sm_snapshot_db(sqlite3 *db, uint64_t index, struct ol__buf *out)
{
    msgpack_packer pk;
    int rv;

    msgpack_packer_init(&pk, out, ol__buf_write);
    msgpack_pack_array(&pk, 9);
    msgpack_pack_uint32(&pk, SNAP_FORMAT);
    msgpack_pack_uint64(&pk, index);
    rv = rows(db, &pk, "SELECT count(*) FROM nodes",
              "SELECT id, pk, address, labels, removed FROM nodes", "ubssu");
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) FROM agents",
                  "SELECT name, kind, config, owner, inc, epoch, status, "
                  "reason, req FROM agents",
                  "ssbuuuusu");
    if (rv == 0)
        rv = rows(db, &pk,
                  "SELECT count(*) FROM seals WHERE id IN (SELECT seal " HEADS
                  ")",
                  "SELECT id, body, sig FROM seals WHERE id IN (SELECT seal "
                  HEADS ")",
                  "ibb");
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) " HEADS,
                  "SELECT agent, seq, epoch, time_ms, seal, idx, body " HEADS,
                  "suuiiib");
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) FROM mailbox",
                  "SELECT id, to_agent, from_agent, from_seq, idx, payload "
                  "FROM mailbox",
                  "issuub");
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) FROM crashes",
                  "SELECT name, n, since_ms, floor, last_req, reason "
                  "FROM crashes",
                  "siiuus");
    if (rv == 0)
        rv = rows(db, &pk, "SELECT count(*) FROM code",
                  "SELECT kind, node, hash, version FROM code", "subs");
    if (rv == 0 && out->base == NULL)
        rv = OL_ENOMEM;
    return rv;
}

int ol__sm_snapshot(struct ol__sm *sm, struct ol__buf *out)
{
    return ol__sm_snapshot_db(sm->st->db, sm->applied, out);
}

/* ---- restore ---- */

struct seal_map {
    int64_t snap_id;
    int64_t local_id;
    struct ol__seal seal; /* points into the snapshot */
};

static int exec_bind(struct ol__sm *sm, const char *sql, sqlite3_stmt **st)
{
    return ol__store_prepare(sm->st, sql, st);
}

#define BAD(what_)                                                         \
    do {                                                                   \
        what = (what_);                                                    \
        rv = OL_EMALFORMED;                                                \
        goto out;                                                          \
    } while (0)

int ol__sm_restore(struct ol__sm *sm, const void *p, size_t len,
                   uint64_t index_hint, char *errmsg)
{
    struct ol__mpr r;
    struct seal_map *seals = NULL;
    sqlite3_stmt *st = NULL;
    const char *what = "snapshot";
    uint32_t n, m, n_seals = 0, parts;
    uint64_t format, index;
    int rv = 0, in_txn = 0;

    (void)index_hint;
    ol__mpr_init(&r, p, len);
    if (ol__mpr_array(&r, &parts) || parts < 7 || parts > 9 ||
        ol__mpr_uint(&r, &format) ||
        format != SNAP_FORMAT || ol__mpr_uint(&r, &index))
        BAD("header");
    if (index <= sm->applied) {
        ol_log(OL_LOG_INFO,
               "snapshot at index %" PRIu64 " skipped: the store has "
               "applied up to %" PRIu64,
               index, sm->applied);
        return 0;
    }
    rv = ol__store_begin(sm->st);
    if (rv != 0)
        goto out;
    in_txn = 1;
    rv = ol__store_exec(sm->st, "DELETE FROM nodes; DELETE FROM agents; "
                                "DELETE FROM mailbox; DELETE FROM crashes; "
                                "DELETE FROM code;");
    if (rv != 0)
        goto out;

    /* nodes */
    if (ol__mpr_array(&r, &n))
        BAD("nodes");
    for (uint32_t i = 0; i < n; i++) {
        struct ol__sm_node nd;
        uint64_t id, removed;

        memset(&nd, 0, sizeof nd);
        if (ol__mpr_array(&r, &m) || m != 5 || ol__mpr_uint(&r, &id) ||
            id == 0 || ol__mpr_bin_fixed(&r, nd.pk, OL_PK_SIZE) ||
            ol__mpr_strcpy(&r, nd.address, sizeof nd.address) ||
            ol__mpr_strcpy(&r, nd.labels, sizeof nd.labels) ||
            ol__mpr_uint(&r, &removed))
            BAD("node row");
        nd.id = id;
        nd.removed = removed != 0;
        if (ol__sm_write_node(sm, &nd) != 0) {
            rv = OL_EIO;
            goto out;
        }
    }

    /* agents */
    if (ol__mpr_array(&r, &n))
        BAD("agents");
    if ((rv = exec_bind(sm,
                        "INSERT INTO agents(name, kind, config, owner, inc, "
                        "epoch, status, reason, req, created_ms, updated_ms) "
                        "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        &st)) != 0)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        char name[OL_NAME_MAX + 1], kind[OL_KIND_MAX + 1];
        char reason[OL_REASON_MAX + 1];
        const void *cfg;
        uint32_t cfg_len;
        uint64_t owner, inc, epoch, status, req;

        if (ol__mpr_array(&r, &m) || m != 9 ||
            ol__mpr_strcpy(&r, name, sizeof name) || !ol__name_valid(name) ||
            ol__mpr_strcpy(&r, kind, sizeof kind) ||
            ol__mpr_bin(&r, &cfg, &cfg_len) ||
            ol__mp_check(cfg, cfg_len, NULL) ||
            ol__mpr_uint(&r, &owner) || ol__mpr_uint(&r, &inc) ||
            ol__mpr_uint(&r, &epoch) || ol__mpr_uint(&r, &status) ||
            status < OL_AGENT_RUNNING || status > OL_AGENT_QUARANTINED ||
            ol__mpr_strcpy(&r, reason, sizeof reason) ||
            ol__mpr_uint(&r, &req))
            BAD("agent row");
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 3, cfg, (int)cfg_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)owner);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)inc);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)epoch);
        sqlite3_bind_int(st, 7, (int)status);
        sqlite3_bind_text(st, 8, reason, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 9, (sqlite3_int64)req);
        sqlite3_bind_int64(st, 10, ol__wall_ms());
        sqlite3_bind_int64(st, 11, ol__wall_ms());
        if (ol__sm_done(sm, st) != 0) {
            rv = OL_EIO;
            goto out;
        }
    }
    sqlite3_finalize(st);
    st = NULL;

    /* seals: verified before any checkpoint that names them is kept */
    if (ol__mpr_array(&r, &n))
        BAD("seals");
    seals = calloc(n ? n : 1, sizeof *seals);
    if (seals == NULL) {
        rv = OL_ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct seal_map *s = &seals[n_seals];
        const void *body, *sig;
        uint32_t blen, slen;
        int64_t id;
        uint8_t hash[OL_HASH_SIZE];

        if (ol__mpr_array(&r, &m) || m != 3 || ol__mpr_int(&r, &id) ||
            ol__mpr_bin(&r, &body, &blen) || ol__mpr_bin(&r, &sig, &slen) ||
            slen != OL_SIG_SIZE)
            BAD("seal row");
        if (ol__seal_verify(body, blen, sig, &s->seal) != 0) {
            ol_log(OL_LOG_WARN, "snapshot: seal %" PRId64 " does not verify; "
                                "its checkpoints are skipped", id);
            continue;
        }
        ol__seal_hash(body, blen, hash);
        if ((rv = exec_bind(sm,
                            "INSERT OR IGNORE INTO seals(hash, body, sig, "
                            "live) VALUES(?, ?, ?, 0)",
                            &st)) != 0)
            goto out;
        sqlite3_bind_blob(st, 1, hash, OL_HASH_SIZE, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, body, (int)blen, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, sig, OL_SIG_SIZE, SQLITE_STATIC);
        rv = ol__sm_done(sm, st);
        sqlite3_finalize(st);
        st = NULL;
        if (rv == 0 && (rv = exec_bind(sm, "SELECT id FROM seals WHERE "
                                            "hash = ?",
                                       &st)) == 0) {
            sqlite3_bind_blob(st, 1, hash, OL_HASH_SIZE, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW)
                s->local_id = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
            st = NULL;
        }
        if (rv != 0 || s->local_id == 0) {
            rv = OL_EIO;
            goto out;
        }
        s->snap_id = id;
        n_seals++;
    }

    /* checkpoints: each agent's head */
    if (ol__mpr_array(&r, &n))
        BAD("checkpoints");
    for (uint32_t i = 0; i < n; i++) {
        char agent[OL_NAME_MAX + 1];
        const void *body;
        uint32_t blen;
        uint64_t seq, epoch;
        int64_t time_ms, seal_id, idx;
        uint8_t hash[OL_HASH_SIZE];
        struct seal_map *s = NULL;
        int rc;

        if (ol__mpr_array(&r, &m) || m != 7 ||
            ol__mpr_strcpy(&r, agent, sizeof agent) ||
            ol__mpr_uint(&r, &seq) || ol__mpr_uint(&r, &epoch) ||
            ol__mpr_int(&r, &time_ms) || ol__mpr_int(&r, &seal_id) ||
            ol__mpr_int(&r, &idx) || ol__mpr_bin(&r, &body, &blen))
            BAD("checkpoint row");
        for (uint32_t k = 0; k < n_seals; k++)
            if (seals[k].snap_id == seal_id)
                s = &seals[k];
        ol__ckpt_hash(body, blen, hash);
        if (s == NULL || idx < 0 || (uint64_t)idx >= s->seal.n ||
            memcmp(hash, s->seal.hashes + (size_t)idx * OL_HASH_SIZE,
                   OL_HASH_SIZE) != 0) {
            ol_log(OL_LOG_WARN,
                   "snapshot: checkpoint '%s' seq %" PRIu64
                   " is not covered by a valid seal; skipped",
                   agent, seq);
            continue;
        }
        if ((rv = exec_bind(sm,
                            "INSERT OR IGNORE INTO checkpoints(agent, seq, "
                            "epoch, time_ms, hash, seal, idx, body, flags) "
                            "VALUES(?, ?, ?, ?, ?, ?, ?, ?, 1)",
                            &st)) != 0)
            goto out;
        sqlite3_bind_text(st, 1, agent, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)epoch);
        sqlite3_bind_int64(st, 4, time_ms);
        sqlite3_bind_blob(st, 5, hash, OL_HASH_SIZE, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, s->local_id);
        sqlite3_bind_int64(st, 7, idx);
        sqlite3_bind_blob(st, 8, body, (int)blen, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        st = NULL;
        if (rc != SQLITE_DONE) {
            rv = OL_EIO;
            goto out;
        }
        if (sqlite3_changes(sm->st->db) > 0) {
            if (ol__sm_seal_live(sm, s->local_id, 1) != 0) {
                rv = OL_EIO;
                goto out;
            }
        } else {
            uint8_t old[OL_HASH_SIZE];
            int same = 0;

            if ((rv = exec_bind(sm, "SELECT hash FROM checkpoints WHERE "
                                    "agent = ? AND seq = ?",
                                &st)) != 0)
                goto out;
            sqlite3_bind_text(st, 1, agent, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
            if (sqlite3_step(st) == SQLITE_ROW &&
                sqlite3_column_bytes(st, 0) == OL_HASH_SIZE) {
                memcpy(old, sqlite3_column_blob(st, 0), OL_HASH_SIZE);
                same = memcmp(old, hash, OL_HASH_SIZE) == 0;
            }
            sqlite3_finalize(st);
            st = NULL;
            if (!same)
                ol_log(OL_LOG_ERROR,
                       "snapshot: checkpoint '%s' seq %" PRIu64
                       " differs from the one stored here (divergence)",
                       agent, seq);
        }
    }

    /* mailbox */
    if (ol__mpr_array(&r, &n))
        BAD("mailbox");
    if ((rv = exec_bind(sm,
                        "INSERT INTO mailbox(id, to_agent, from_agent, "
                        "from_seq, idx, payload) VALUES(?, ?, ?, ?, ?, ?)",
                        &st)) != 0)
        goto out;
    for (uint32_t i = 0; i < n; i++) {
        char to[OL_NAME_MAX + 1], from[OL_NAME_MAX + 1];
        const void *pl;
        uint32_t plen;
        int64_t id;
        uint64_t fseq, idx;

        if (ol__mpr_array(&r, &m) || m != 6 || ol__mpr_int(&r, &id) ||
            ol__mpr_strcpy(&r, to, sizeof to) ||
            ol__mpr_strcpy(&r, from, sizeof from) ||
            ol__mpr_uint(&r, &fseq) || ol__mpr_uint(&r, &idx) ||
            ol__mpr_bin(&r, &pl, &plen) || ol__mp_check(pl, plen, NULL))
            BAD("mailbox row");
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, to, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, from, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)fseq);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)idx);
        sqlite3_bind_blob(st, 6, pl, (int)plen, SQLITE_STATIC);
        if (ol__sm_done(sm, st) != 0) {
            rv = OL_EIO;
            goto out;
        }
    }
    sqlite3_finalize(st);
    st = NULL;

    /* crashes */
    if (parts >= 8) {
        if (ol__mpr_array(&r, &n))
            BAD("crashes");
        if ((rv = exec_bind(sm,
                            "INSERT INTO crashes(name, n, since_ms, floor, "
                            "last_req, reason) VALUES(?, ?, ?, ?, ?, ?)",
                            &st)) != 0)
            goto out;
        for (uint32_t i = 0; i < n; i++) {
            char name[OL_NAME_MAX + 1], reason[OL_REASON_MAX + 1];
            int64_t count, since;
            uint64_t floor, req;

            if (ol__mpr_array(&r, &m) || m != 6 ||
                ol__mpr_strcpy(&r, name, sizeof name) ||
                ol__mpr_int(&r, &count) || ol__mpr_int(&r, &since) ||
                ol__mpr_uint(&r, &floor) || ol__mpr_uint(&r, &req) ||
                ol__mpr_strcpy(&r, reason, sizeof reason))
                BAD("crash row");
            sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 2, count);
            sqlite3_bind_int64(st, 3, since);
            sqlite3_bind_int64(st, 4, (sqlite3_int64)floor);
            sqlite3_bind_int64(st, 5, (sqlite3_int64)req);
            sqlite3_bind_text(st, 6, reason, -1, SQLITE_TRANSIENT);
            if (ol__sm_done(sm, st) != 0) {
                rv = OL_EIO;
                goto out;
            }
        }
        sqlite3_finalize(st);
        st = NULL;
    }

    /* code */
    if (parts == 9) {
        if (ol__mpr_array(&r, &n))
            BAD("code");
        if ((rv = exec_bind(sm,
                            "INSERT INTO code(kind, node, hash, version) "
                            "VALUES(?, ?, ?, ?)",
                            &st)) != 0)
            goto out;
        for (uint32_t i = 0; i < n; i++) {
            char kind[OL_KIND_MAX + 1], version[OL_VERSION_MAX + 1];
            uint8_t hash[OL_HASH_SIZE];
            uint64_t node;

            if (ol__mpr_array(&r, &m) || m != 4 ||
                ol__mpr_strcpy(&r, kind, sizeof kind) ||
                ol__mpr_uint(&r, &node) ||
                ol__mpr_bin_fixed(&r, hash, OL_HASH_SIZE) ||
                ol__mpr_strcpy(&r, version, sizeof version))
                BAD("code row");
            sqlite3_bind_text(st, 1, kind, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)node);
            sqlite3_bind_blob(st, 3, hash, OL_HASH_SIZE, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 4, version, -1, SQLITE_TRANSIENT);
            if (ol__sm_done(sm, st) != 0) {
                rv = OL_EIO;
                goto out;
            }
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    if (!ol__mpr_done(&r))
        BAD("trailing bytes");
    rv = ol__sm_set_applied(sm, index);
    if (rv == 0)
        rv = ol__store_commit(sm->st);
    if (rv == 0)
        in_txn = 0;
out:
    sqlite3_finalize(st);
    free(seals);
    if (in_txn)
        ol__store_rollback(sm->st);
    if (rv != 0) {
        if (rv == OL_EMALFORMED)
            ol__errf(errmsg, "snapshot: %s is malformed (byte %zu)", what,
                     r.off);
        else
            ol__errf(errmsg, "snapshot: %s", sm->st->errmsg[0]
                                                 ? sm->st->errmsg
                                                 : ol_strerror(rv));
        ol__sm_reload(sm);
        return rv;
    }
    ol_log(OL_LOG_INFO, "snapshot at index %" PRIu64 " installed", index);
    return ol__sm_reload(sm);
}
