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
 * makes raft 0.15's restore-at-start harmless.
 */
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "base/mpr.h"
#include "record/seal.h"
#include "sm_int.h"

/* 3 added the crashes and code tables, 4 the table of applied request
 * ids (an older snapshot restores an empty one). */
#define SNAP_FORMAT 4

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

/*
 * Installing reads the snapshot in order, one part per function.  Each
 * part returns 0, OL_EMALFORMED with r->off at the bad byte and
 * rs->what naming the part, or OL_EIO.
 */

struct seal_map {
    int64_t snap_id;
    int64_t local_id;
    struct ol__seal seal; /* points into the snapshot */
};

struct restore {
    struct ol__sm *sm;
    struct ol__mpr r;
    uint64_t format;
    const char *what;
    struct seal_map *seals; /* sorted by snap_id */
    uint32_t n_seals;
    struct ol__effects *fx; /* diverged agents are reported here */
    uint32_t diverged;
};

#define BAD(rs_, what_)                                                    \
    do {                                                                   \
        (rs_)->what = (what_);                                             \
        return OL_EMALFORMED;                                              \
    } while (0)

static int restore_nodes(struct restore *rs)
{
    uint32_t n, m;

    if (ol__mpr_array(&rs->r, &n))
        BAD(rs, "nodes");
    for (uint32_t i = 0; i < n; i++) {
        struct ol__sm_node nd;
        uint64_t id, removed;

        memset(&nd, 0, sizeof nd);
        if (ol__mpr_array(&rs->r, &m) || m != 5 || ol__mpr_uint(&rs->r, &id) ||
            id == 0 || ol__mpr_bin_fixed(&rs->r, nd.pk, OL_PK_SIZE) ||
            ol__mpr_strcpy(&rs->r, nd.address, sizeof nd.address) ||
            ol__mpr_strcpy(&rs->r, nd.labels, sizeof nd.labels) ||
            ol__mpr_uint(&rs->r, &removed))
            BAD(rs, "node row");
        nd.id = id;
        nd.removed = removed != 0;
        if (ol__sm_write_node(rs->sm, &nd) != 0)
            return OL_EIO;
    }
    return 0;
}

static int restore_agents(struct restore *rs)
{
    sqlite3_stmt *st = rs->sm->stmt[ST_AGENT_INS];
    uint32_t n, m, cols = rs->format == 1 ? 9 : 11;

    if (ol__mpr_array(&rs->r, &n))
        BAD(rs, "agents");
    for (uint32_t i = 0; i < n; i++) {
        char name[OL_NAME_MAX + 1], kind[OL_KIND_MAX + 1];
        char reason[OL_REASON_MAX + 1];
        const void *cfg;
        uint32_t cfg_len;
        uint64_t owner, inc, epoch, status, req;
        int64_t created = 0, updated = 0;

        if (ol__mpr_array(&rs->r, &m) || m != cols ||
            ol__mpr_strcpy(&rs->r, name, sizeof name) ||
            !ol__name_valid(name) ||
            ol__mpr_strcpy(&rs->r, kind, sizeof kind) ||
            ol__mpr_bin(&rs->r, &cfg, &cfg_len) ||
            ol__mp_check(cfg, cfg_len, NULL) ||
            ol__mpr_uint(&rs->r, &owner) || ol__mpr_uint(&rs->r, &inc) ||
            ol__mpr_uint(&rs->r, &epoch) || ol__mpr_uint(&rs->r, &status) ||
            status < OL_AGENT_RUNNING || status > OL_AGENT_STATUS_MAX ||
            ol__mpr_strcpy(&rs->r, reason, sizeof reason) ||
            ol__mpr_uint(&rs->r, &req) ||
            (cols == 11 && (ol__mpr_int(&rs->r, &created) ||
                            ol__mpr_int(&rs->r, &updated))))
            BAD(rs, "agent row");
        /* ST_AGENT_INS: name, kind, config, owner, epoch, status, reason,
         * req, created_ms, updated_ms, inc */
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 3, cfg, (int)cfg_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)owner);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)epoch);
        sqlite3_bind_int(st, 6, (int)status);
        sqlite3_bind_text(st, 7, reason, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)req);
        sqlite3_bind_int64(st, 9, created);
        sqlite3_bind_int64(st, 10, updated);
        sqlite3_bind_int64(st, 11, (sqlite3_int64)inc);
        if (ol__sm_done(rs->sm, st) != 0)
            return OL_EIO;
    }
    return 0;
}

static int cmp_seal(const void *a, const void *b)
{
    int64_t x = ((const struct seal_map *)a)->snap_id;
    int64_t y = ((const struct seal_map *)b)->snap_id;

    return x < y ? -1 : x > y;
}

/* Seals are verified before any checkpoint that names them is kept. */
static int restore_seals(struct restore *rs)
{
    struct ol__sm *sm = rs->sm;
    uint32_t n, m;

    if (ol__mpr_array(&rs->r, &n))
        BAD(rs, "seals");
    rs->seals = calloc(n ? n : 1, sizeof *rs->seals);
    if (rs->seals == NULL)
        return OL_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        struct seal_map *s = &rs->seals[rs->n_seals];
        const void *body, *sig;
        uint32_t blen, slen;
        int64_t id;
        uint8_t hash[OL_HASH_SIZE];
        sqlite3_stmt *st;

        if (ol__mpr_array(&rs->r, &m) || m != 3 ||
            ol__mpr_int(&rs->r, &id) || ol__mpr_bin(&rs->r, &body, &blen) ||
            ol__mpr_bin(&rs->r, &sig, &slen) || slen != OL_SIG_SIZE)
            BAD(rs, "seal row");
        if (ol__seal_verify(body, blen, sig, &s->seal) != 0) {
            ol_log(OL_LOG_WARN, "snapshot: seal %" PRId64 " does not verify; "
                                "its checkpoints are skipped", id);
            continue;
        }
        ol__seal_hash(body, blen, hash);
        st = sm->stmt[ST_SEAL_INS];
        sqlite3_bind_blob(st, 1, hash, OL_HASH_SIZE, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, body, (int)blen, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, sig, OL_SIG_SIZE, SQLITE_STATIC);
        if (ol__sm_done(sm, st) != 0)
            return OL_EIO;
        st = sm->stmt[ST_SEAL_ID];
        sqlite3_bind_blob(st, 1, hash, OL_HASH_SIZE, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            s->local_id = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (s->local_id == 0)
            return OL_EIO;
        s->snap_id = id;
        rs->n_seals++;
    }
    qsort(rs->seals, rs->n_seals, sizeof *rs->seals, cmp_seal);
    return 0;
}

/* This node stored a different checkpoint at (agent, seq) than the one the
 * cluster committed.  The cluster's row wins (this node's history is the
 * one in doubt); this node's row is kept as evidence, and the agent is
 * reported so that the cluster quarantines it for an operator to look. */
static int restore_diverged(struct restore *rs, const char *agent,
                            uint64_t seq, const uint8_t *snap_hash,
                            sqlite3_stmt *ins)
{
    struct ol__sm *sm = rs->sm;
    sqlite3_stmt *st;
    struct ol__effect *e;
    int rc;

    ol_log(OL_LOG_ERROR,
           "snapshot: checkpoint '%s' seq %" PRIu64 " differs from the one "
           "stored here; this node's row is kept as evidence and replaced "
           "by the cluster's",
           agent, seq);
    if (ol__store_prepare(sm->st,
                          "INSERT INTO evidence(agent, seq, time_ms, kind, "
                          "stored_hash, other_hash, other_body, note) "
                          "SELECT agent, seq, ?, 'divergence', ?, hash, body, "
                          "'snapshot install: this node stored other_body' "
                          "FROM checkpoints WHERE agent = ? AND seq = ?",
                          &st) != 0)
        return OL_EIO;
    sqlite3_bind_int64(st, 1, sm->now_ms);
    sqlite3_bind_blob(st, 2, snap_hash, OL_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)seq);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return OL_EIO;
    if (ol__store_prepare(sm->st,
                          "DELETE FROM checkpoints WHERE agent = ? AND "
                          "seq = ?",
                          &st) != 0)
        return OL_EIO;
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || sqlite3_step(ins) != SQLITE_DONE)
        return OL_EIO;
    rs->diverged++;
    e = rs->fx ? ol__fx_add(rs->fx, OL_FX_DIVERGED) : NULL;
    if (e) {
        snprintf(e->u.ckpt.agent, sizeof e->u.ckpt.agent, "%s", agent);
        e->u.ckpt.seq = seq;
        memcpy(e->u.ckpt.hash, snap_hash, OL_HASH_SIZE);
        snprintf(e->errmsg, sizeof e->errmsg,
                 "divergence at seq %" PRIu64 " found installing a snapshot",
                 seq);
    }
    return 0;
}

static struct seal_map *find_seal(struct restore *rs, int64_t id)
{
    struct seal_map key;

    key.snap_id = id;
    return bsearch(&key, rs->seals, rs->n_seals, sizeof *rs->seals,
                   cmp_seal);
}

/* Each agent's head checkpoint. */
static int restore_heads(struct restore *rs)
{
    struct ol__sm *sm = rs->sm;
    uint32_t n, m;

    if (ol__mpr_array(&rs->r, &n))
        BAD(rs, "checkpoints");
    for (uint32_t i = 0; i < n; i++) {
        char agent[OL_NAME_MAX + 1];
        const void *body;
        uint32_t blen;
        uint64_t seq, epoch;
        int64_t time_ms, seal_id, idx;
        uint8_t hash[OL_HASH_SIZE], old[OL_HASH_SIZE];
        struct seal_map *s;
        sqlite3_stmt *st;
        int found, rv;

        if (ol__mpr_array(&rs->r, &m) || m != 7 ||
            ol__mpr_strcpy(&rs->r, agent, sizeof agent) ||
            ol__mpr_uint(&rs->r, &seq) || ol__mpr_uint(&rs->r, &epoch) ||
            ol__mpr_int(&rs->r, &time_ms) || ol__mpr_int(&rs->r, &seal_id) ||
            ol__mpr_int(&rs->r, &idx) || ol__mpr_bin(&rs->r, &body, &blen))
            BAD(rs, "checkpoint row");
        s = find_seal(rs, seal_id);
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
        found = ol__sm_stored_hash(sm, agent, seq, old);
        if (found < 0)
            return OL_EIO;
        if (found && memcmp(old, hash, OL_HASH_SIZE) == 0)
            continue;
        st = sm->stmt[ST_INS_CKPT];
        sqlite3_bind_text(st, 1, agent, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)epoch);
        sqlite3_bind_int64(st, 4, time_ms);
        sqlite3_bind_blob(st, 5, hash, OL_HASH_SIZE, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, s->local_id);
        sqlite3_bind_int64(st, 7, idx);
        sqlite3_bind_blob(st, 8, body, (int)blen, SQLITE_STATIC);
        sqlite3_bind_int(st, 9, 1);
        rv = found ? restore_diverged(rs, agent, seq, hash, st)
                   : sqlite3_step(st) == SQLITE_DONE ? 0 : OL_EIO;
        sqlite3_reset(st);
        if (rv != 0 || ol__sm_seal_live(sm, s->local_id, 1) != 0)
            return OL_EIO;
    }
    return 0;
}

static int restore_mailbox(struct restore *rs)
{
    sqlite3_stmt *st;
    uint32_t n, m;
    int64_t seq = 0;
    int rv = 0;

    if (ol__mpr_array(&rs->r, &n))
        BAD(rs, "mailbox");
    if (ol__store_prepare(rs->sm->st,
                          "INSERT INTO mailbox(id, to_agent, from_agent, "
                          "from_seq, idx, payload) VALUES(?, ?, ?, ?, ?, ?)",
                          &st) != 0)
        return OL_EIO;
    for (uint32_t i = 0; i < n && rv == 0; i++) {
        char to[OL_NAME_MAX + 1], from[OL_NAME_MAX + 1];
        const void *pl;
        uint32_t plen;
        int64_t id;
        uint64_t fseq, idx;

        if (ol__mpr_array(&rs->r, &m) || m != 6 || ol__mpr_int(&rs->r, &id) ||
            ol__mpr_strcpy(&rs->r, to, sizeof to) ||
            ol__mpr_strcpy(&rs->r, from, sizeof from) ||
            ol__mpr_uint(&rs->r, &fseq) || ol__mpr_uint(&rs->r, &idx) ||
            ol__mpr_bin(&rs->r, &pl, &plen) || ol__mp_check(pl, plen, NULL)) {
            rs->what = "mailbox row";
            rv = OL_EMALFORMED;
            break;
        }
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, to, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, from, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)fseq);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)idx);
        sqlite3_bind_blob(st, 6, pl, (int)plen, SQLITE_STATIC);
        if (ol__sm_done(rs->sm, st) != 0)
            rv = OL_EIO;
    }
    sqlite3_finalize(st);
    if (rv != 0)
        return rv;
    if (rs->format >= 2 && ol__mpr_int(&rs->r, &seq))
        BAD(rs, "mailbox sequence");
    if (seq <= 0)
        return 0;
    /* New mailbox ids continue from the cluster's sequence, as on the node
     * the snapshot came from. */
    if (ol__store_prepare(rs->sm->st,
                          "UPDATE sqlite_sequence SET seq = max(seq, ?) "
                          "WHERE name = 'mailbox'",
                          &st) != 0)
        return OL_EIO;
    sqlite3_bind_int64(st, 1, seq);
    rv = ol__sm_done(rs->sm, st);
    sqlite3_finalize(st);
    return rv;
}

static int restore_crashes(struct restore *rs)
{
    sqlite3_stmt *st;
    uint32_t n, m;
    int rv = 0;

    if (ol__mpr_array(&rs->r, &n))
        BAD(rs, "crashes");
    if (ol__store_prepare(rs->sm->st,
                          "INSERT INTO crashes(name, n, since_ms, floor, "
                          "last_req, reason) VALUES(?, ?, ?, ?, ?, ?)",
                          &st) != 0)
        return OL_EIO;
    for (uint32_t i = 0; i < n && rv == 0; i++) {
        char name[OL_NAME_MAX + 1], reason[OL_REASON_MAX + 1];
        int64_t count, since;
        uint64_t floor, req;

        if (ol__mpr_array(&rs->r, &m) || m != 6 ||
            ol__mpr_strcpy(&rs->r, name, sizeof name) ||
            ol__mpr_int(&rs->r, &count) || ol__mpr_int(&rs->r, &since) ||
            ol__mpr_uint(&rs->r, &floor) || ol__mpr_uint(&rs->r, &req) ||
            ol__mpr_strcpy(&rs->r, reason, sizeof reason)) {
            rs->what = "crash row";
            rv = OL_EMALFORMED;
            break;
        }
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, count);
        sqlite3_bind_int64(st, 3, since);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)floor);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)req);
        sqlite3_bind_text(st, 6, reason, -1, SQLITE_TRANSIENT);
        if (ol__sm_done(rs->sm, st) != 0)
            rv = OL_EIO;
    }
    sqlite3_finalize(st);
    return rv;
}

static int restore_code(struct restore *rs)
{
    sqlite3_stmt *st;
    uint32_t n, m;
    int rv = 0;

    if (ol__mpr_array(&rs->r, &n))
        BAD(rs, "code");
    if (ol__store_prepare(rs->sm->st,
                          "INSERT INTO code(kind, node, hash, version) "
                          "VALUES(?, ?, ?, ?)",
                          &st) != 0)
        return OL_EIO;
    for (uint32_t i = 0; i < n && rv == 0; i++) {
        char kind[OL_KIND_MAX + 1], version[OL_VERSION_MAX + 1];
        uint8_t hash[OL_HASH_SIZE];
        uint64_t node;

        if (ol__mpr_array(&rs->r, &m) || m != 4 ||
            ol__mpr_strcpy(&rs->r, kind, sizeof kind) ||
            ol__mpr_uint(&rs->r, &node) ||
            ol__mpr_bin_fixed(&rs->r, hash, OL_HASH_SIZE) ||
            ol__mpr_strcpy(&rs->r, version, sizeof version)) {
            rs->what = "code row";
            rv = OL_EMALFORMED;
            break;
        }
        sqlite3_bind_text(st, 1, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)node);
        sqlite3_bind_blob(st, 3, hash, OL_HASH_SIZE, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, version, -1, SQLITE_TRANSIENT);
        if (ol__sm_done(rs->sm, st) != 0)
            rv = OL_EIO;
    }
    sqlite3_finalize(st);
    return rv;
}

static int restore_reqs(struct restore *rs)
{
    sqlite3_stmt *st = rs->sm->stmt[ST_REQ_INS];
    uint32_t n, m;

    if (ol__mpr_array(&rs->r, &n))
        BAD(rs, "request ids");
    for (uint32_t i = 0; i < n; i++) {
        char why[160];
        uint64_t req;
        int64_t cnt, type, status;
        int rc;

        if (ol__mpr_array(&rs->r, &m) || m != 5 ||
            ol__mpr_uint(&rs->r, &req) || req == 0 ||
            ol__mpr_int(&rs->r, &cnt) || ol__mpr_int(&rs->r, &type) ||
            ol__mpr_int(&rs->r, &status) || status > 0 ||
            ol__mpr_strcpy(&rs->r, why, sizeof why))
            BAD(rs, "request id row");
        sqlite3_bind_int64(st, 1, (sqlite3_int64)req);
        sqlite3_bind_int64(st, 2, cnt);
        sqlite3_bind_int64(st, 3, type);
        sqlite3_bind_int64(st, 4, status);
        sqlite3_bind_text(st, 5, why, -1, SQLITE_TRANSIENT);
        /* A repeated id or counter is a malformed snapshot. */
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if ((rc & 0xff) == SQLITE_CONSTRAINT)
            BAD(rs, "request id row (repeated)");
        if (rc != SQLITE_DONE)
            return OL_EIO;
    }
    return 0;
}

int ol__sm_restore(struct ol__sm *sm, const void *p, size_t len,
                   uint64_t index_hint, struct ol__effects *fx, char *errmsg)
{
    struct restore rs;
    uint32_t n;
    uint64_t index;
    int rv;

    (void)index_hint;
    /* Evidence found here is this node's own observation, not replicated
     * state: it is stamped with this node's clock. */
    sm->now_ms = ol__wall_ms();
    memset(&rs, 0, sizeof rs);
    rs.sm = sm;
    rs.fx = fx;
    rs.what = "header";
    ol__mpr_init(&rs.r, p, len);
    if (ol__mpr_array(&rs.r, &n) || ol__mpr_uint(&rs.r, &rs.format) ||
        (rs.format == 1 && n != 7) || (rs.format == 2 && n != 8) ||
        (rs.format == 3 && n != 10) || (rs.format == 4 && n != 11) ||
        rs.format < 1 || rs.format > SNAP_FORMAT ||
        ol__mpr_uint(&rs.r, &index)) {
        ol__errf(errmsg, "snapshot: header is malformed (byte %zu)",
                 rs.r.off);
        return OL_EMALFORMED;
    }
    if (index <= sm->applied) {
        ol_log(OL_LOG_INFO,
               "snapshot at index %" PRIu64 " skipped: the store has "
               "applied up to %" PRIu64,
               index, sm->applied);
        return 0;
    }
    rv = ol__store_begin(sm->st);
    if (rv == 0)
        rv = ol__store_exec(sm->st, "DELETE FROM nodes; DELETE FROM agents; "
                                    "DELETE FROM mailbox; DELETE FROM crashes; "
                                    "DELETE FROM code; DELETE FROM reqs;");
    if (rv == 0)
        rv = restore_nodes(&rs);
    if (rv == 0)
        rv = restore_agents(&rs);
    if (rv == 0)
        rv = restore_seals(&rs);
    if (rv == 0)
        rv = restore_heads(&rs);
    if (rv == 0)
        rv = restore_mailbox(&rs);
    if (rv == 0 && rs.format >= 3)
        rv = restore_crashes(&rs);
    if (rv == 0 && rs.format >= 3)
        rv = restore_code(&rs);
    if (rv == 0 && rs.format >= 4)
        rv = restore_reqs(&rs);
    if (rv == 0 && !ol__mpr_done(&rs.r)) {
        rs.what = "trailing bytes";
        rv = OL_EMALFORMED;
    }
    /* Replaced rows released their seals' references. */
    if (rv == 0 && rs.diverged)
        rv = ol__sm_sweep_seals(sm);
    if (rv == 0)
        rv = ol__sm_set_applied(sm, index);
    if (rv == 0)
        rv = ol__store_commit(sm->st);
    free(rs.seals);
    if (rv != 0) {
        ol__store_rollback(sm->st);
        if (rv == OL_EMALFORMED)
            ol__errf(errmsg, "snapshot: %s is malformed (byte %zu)", rs.what,
                     rs.r.off);
        else
            ol__errf(errmsg, "snapshot: %s", sm->st->errmsg[0]
                                                 ? sm->st->errmsg
                                                 : ol_strerror(rv));
        if (fx)
            ol__effects_free(fx);
        ol__sm_reload(sm);
        return rv;
    }
    ol_log(OL_LOG_INFO, "snapshot at index %" PRIu64 " installed", index);
    return ol__sm_reload(sm);
}
