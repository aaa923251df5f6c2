/*
 * Installing a snapshot's rows, one table per function, in the order the
 * snapshot holds them (sm_snap.c calls them).  Each statement is prepared
 * once per install, on first use, and reset between rows.  Seals are
 * verified first and kept sorted by their id in the snapshot, so that
 * each head checkpoint finds the seal it names by binary search.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "sm_snap_int.h"

/* Prepare `sql` into *st on first use; later uses get it reset and with
 * no bindings. */
static int stmt(struct restore *rs, sqlite3_stmt **st, const char *sql)
{
    if (*st == NULL)
        return ol__store_prepare(rs->sm->st, sql, st) != 0 ? OL_EIO : 0;
    sqlite3_reset(*st);
    sqlite3_clear_bindings(*st);
    return 0;
}

/* Step a statement that returns no rows, and reset it. */
static int run(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : OL_EIO;
}

/* Install one row; `st` is the table's statement. */
typedef int (*row_fn)(struct restore *rs, sqlite3_stmt *st);

/* Read a table's array header (`what` names it if malformed), prepare
 * `sql` into *st if given, and install each row with `row`. */
static int each_row(struct restore *rs, const char *what, sqlite3_stmt **st,
                    const char *sql, row_fn row)
{
    uint32_t n;
    int rv = 0;

    if (ol__mpr_array(&rs->r, &n))
        BAD(rs, what);
    if (sql != NULL && stmt(rs, st, sql) != 0)
        return OL_EIO;
    for (uint32_t i = 0; i < n && rv == 0; i++)
        rv = row(rs, st ? *st : NULL);
    return rv;
}

void ol__snap_restore_close(struct restore *rs)
{
    sqlite3_finalize(rs->evidence);
    sqlite3_finalize(rs->del_ckpt);
    sqlite3_finalize(rs->mail);
    sqlite3_finalize(rs->mail_seq);
    sqlite3_finalize(rs->crash);
    sqlite3_finalize(rs->code);
    free(rs->seals);
    rs->seals = NULL;
}

static int node_row(struct restore *rs, sqlite3_stmt *unused)
{
    struct ol__sm_node nd;
    uint64_t id, removed;
    uint32_t m;

    (void)unused;
    memset(&nd, 0, sizeof nd);
    if (ol__mpr_array(&rs->r, &m) || m != 5 || ol__mpr_uint(&rs->r, &id) ||
        id == 0 || ol__mpr_bin_fixed(&rs->r, nd.pk, OL_PK_SIZE) ||
        ol__mpr_strcpy(&rs->r, nd.address, sizeof nd.address) ||
        ol__mpr_strcpy(&rs->r, nd.labels, sizeof nd.labels) ||
        ol__mpr_uint(&rs->r, &removed))
        BAD(rs, "node row");
    nd.id = id;
    nd.removed = removed != 0;
    return ol__sm_write_node(rs->sm, &nd) != 0 ? OL_EIO : 0;
}


struct agent_row {
    char name[OL_NAME_MAX + 1], kind[OL_KIND_MAX + 1];
    char reason[OL_REASON_MAX + 1];
    const void *cfg;
    uint32_t cfg_len;
    uint64_t owner, inc, epoch, status, req;
    int64_t created, updated;
};

/* Format 1 has no created_ms and updated_ms. */
static int read_agent(struct restore *rs, struct agent_row *a)
{
    uint32_t m, cols = rs->format == 1 ? 9 : 11;

    a->created = a->updated = 0;
    return ol__mpr_array(&rs->r, &m) || m != cols ||
           ol__mpr_strcpy(&rs->r, a->name, sizeof a->name) ||
           !ol__name_valid(a->name) ||
           ol__mpr_strcpy(&rs->r, a->kind, sizeof a->kind) ||
           ol__mpr_bin(&rs->r, &a->cfg, &a->cfg_len) ||
           ol__mp_check(a->cfg, a->cfg_len, NULL) ||
           ol__mpr_uint(&rs->r, &a->owner) || ol__mpr_uint(&rs->r, &a->inc) ||
           ol__mpr_uint(&rs->r, &a->epoch) ||
           ol__mpr_uint(&rs->r, &a->status) ||
           a->status < OL_AGENT_RUNNING || a->status > OL_AGENT_STATUS_MAX ||
           ol__mpr_strcpy(&rs->r, a->reason, sizeof a->reason) ||
           ol__mpr_uint(&rs->r, &a->req) ||
           (cols == 11 && (ol__mpr_int(&rs->r, &a->created) ||
                           ol__mpr_int(&rs->r, &a->updated)));
}

static int agent_row(struct restore *rs, sqlite3_stmt *st)
{
    struct agent_row a;

    if (read_agent(rs, &a))
        BAD(rs, "agent row");
    /* ST_AGENT_INS: name, kind, config, owner, epoch, status, reason,
     * req, created_ms, updated_ms, inc */
    sqlite3_bind_text(st, 1, a.name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, a.kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 3, a.cfg, (int)a.cfg_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)a.owner);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)a.epoch);
    sqlite3_bind_int(st, 6, (int)a.status);
    sqlite3_bind_text(st, 7, a.reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)a.req);
    sqlite3_bind_int64(st, 9, a.created);
    sqlite3_bind_int64(st, 10, a.updated);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)a.inc);
    return ol__sm_done(rs->sm, st);
}


static int cmp_seal(const void *a, const void *b)
{
    int64_t x = ((const struct seal_map *)a)->snap_id;
    int64_t y = ((const struct seal_map *)b)->snap_id;

    return x < y ? -1 : x > y;
}

static struct seal_map *find_seal(struct restore *rs, int64_t id)
{
    struct seal_map key;

    key.snap_id = id;
    return bsearch(&key, rs->seals, rs->n_seals, sizeof *rs->seals,
                   cmp_seal);
}

/* Store a verified seal (or find it stored already) and note its row id
 * here in s->local_id. */
static int store_seal(struct ol__sm *sm, const void *body, uint32_t blen,
                      const void *sig, struct seal_map *s)
{
    uint8_t hash[OL_HASH_SIZE];
    sqlite3_stmt *st = sm->stmt[ST_SEAL_INS];

    ol__seal_hash(body, blen, hash);
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
    return s->local_id == 0 ? OL_EIO : 0;
}

/* Seals are verified before any checkpoint that names them is kept. */
static int restore_seals(struct restore *rs)
{
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

        if (ol__mpr_array(&rs->r, &m) || m != 3 ||
            ol__mpr_int(&rs->r, &id) || ol__mpr_bin(&rs->r, &body, &blen) ||
            ol__mpr_bin(&rs->r, &sig, &slen) || slen != OL_SIG_SIZE)
            BAD(rs, "seal row");
        if (ol__seal_verify(body, blen, sig, &s->seal) != 0) {
            ol_log(OL_LOG_WARN, "snapshot: seal %" PRId64 " does not verify; "
                                "its checkpoints are skipped", id);
            continue;
        }
        if (store_seal(rs->sm, body, blen, sig, s) != 0)
            return OL_EIO;
        s->snap_id = id;
        rs->n_seals++;
    }
    qsort(rs->seals, rs->n_seals, sizeof *rs->seals, cmp_seal);
    return 0;
}

static void report_diverged(struct restore *rs, const char *agent,
                            uint64_t seq, const uint8_t *snap_hash)
{
    struct ol__effect *e;

    rs->diverged++;
    e = rs->fx ? ol__fx_add(rs->fx, OL_FX_DIVERGED) : NULL;
    if (e == NULL)
        return;
    snprintf(e->u.ckpt.agent, sizeof e->u.ckpt.agent, "%s", agent);
    e->u.ckpt.seq = seq;
    memcpy(e->u.ckpt.hash, snap_hash, OL_HASH_SIZE);
    snprintf(e->errmsg, sizeof e->errmsg,
             "divergence at seq %" PRIu64 " found installing a snapshot", seq);
}

/* This node stored a different checkpoint at (agent, seq) than the one the
 * cluster committed.  The cluster's row wins (this node's history is the
 * one in doubt); this node's row is kept as evidence, and the agent is
 * reported so that the cluster quarantines it for an operator to look. */
static int restore_diverged(struct restore *rs, const char *agent,
                            uint64_t seq, const uint8_t *snap_hash,
                            sqlite3_stmt *ins)
{
    ol_log(OL_LOG_ERROR,
           "snapshot: checkpoint '%s' seq %" PRIu64 " differs from the one "
           "stored here; this node's row is kept as evidence and replaced "
           "by the cluster's",
           agent, seq);
    if (stmt(rs, &rs->evidence,
             "INSERT INTO evidence(agent, seq, time_ms, kind, stored_hash, "
             "other_hash, other_body, note) "
             "SELECT agent, seq, ?, 'divergence', ?, hash, body, "
             "'snapshot install: this node stored other_body' "
             "FROM checkpoints WHERE agent = ? AND seq = ?") != 0 ||
        stmt(rs, &rs->del_ckpt,
             "DELETE FROM checkpoints WHERE agent = ? AND seq = ?") != 0)
        return OL_EIO;
    sqlite3_bind_int64(rs->evidence, 1, rs->sm->now_ms);
    sqlite3_bind_blob(rs->evidence, 2, snap_hash, OL_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_text(rs->evidence, 3, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(rs->evidence, 4, (sqlite3_int64)seq);
    sqlite3_bind_text(rs->del_ckpt, 1, agent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(rs->del_ckpt, 2, (sqlite3_int64)seq);
    if (run(rs->evidence) != 0 || run(rs->del_ckpt) != 0 ||
        sqlite3_step(ins) != SQLITE_DONE)
        return OL_EIO;
    report_diverged(rs, agent, seq, snap_hash);
    return 0;
}

struct head_row {
    char agent[OL_NAME_MAX + 1];
    const void *body;
    uint32_t blen;
    uint64_t seq, epoch;
    int64_t time_ms, seal_id, idx;
    uint8_t hash[OL_HASH_SIZE];
};

/* The seal that covers this checkpoint, or NULL if none does. */
static const struct seal_map *head_seal(struct restore *rs,
                                        struct head_row *h)
{
    const struct seal_map *s = find_seal(rs, h->seal_id);

    ol__ckpt_hash(h->body, h->blen, h->hash);
    if (s == NULL || h->idx < 0 || (uint64_t)h->idx >= s->seal.n ||
        memcmp(h->hash, s->seal.hashes + (size_t)h->idx * OL_HASH_SIZE,
               OL_HASH_SIZE) != 0) {
        ol_log(OL_LOG_WARN,
               "snapshot: checkpoint '%s' seq %" PRIu64
               " is not covered by a valid seal; skipped",
               h->agent, h->seq);
        return NULL;
    }
    return s;
}

/* Store one head checkpoint unless this node has it already. */
static int store_head(struct restore *rs, struct head_row *h,
                      const struct seal_map *s)
{
    struct ol__sm *sm = rs->sm;
    sqlite3_stmt *st = sm->stmt[ST_INS_CKPT];
    uint8_t old[OL_HASH_SIZE];
    int found, rv;

    found = ol__sm_stored_hash(sm, h->agent, h->seq, old);
    if (found < 0)
        return OL_EIO;
    if (found && memcmp(old, h->hash, OL_HASH_SIZE) == 0)
        return 0;
    sqlite3_bind_text(st, 1, h->agent, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)h->seq);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)h->epoch);
    sqlite3_bind_int64(st, 4, h->time_ms);
    sqlite3_bind_blob(st, 5, h->hash, OL_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, s->local_id);
    sqlite3_bind_int64(st, 7, h->idx);
    sqlite3_bind_blob(st, 8, h->body, (int)h->blen, SQLITE_STATIC);
    sqlite3_bind_int(st, 9, 1);
    rv = found ? restore_diverged(rs, h->agent, h->seq, h->hash, st)
               : sqlite3_step(st) == SQLITE_DONE ? 0 : OL_EIO;
    sqlite3_reset(st);
    if (rv != 0 || ol__sm_seal_live(sm, s->local_id, 1) != 0)
        return OL_EIO;
    return 0;
}

static int head_row(struct restore *rs, sqlite3_stmt *unused)
{
    struct head_row h;
    const struct seal_map *s;
    uint32_t m;

    (void)unused;
    if (ol__mpr_array(&rs->r, &m) || m != 7 ||
        ol__mpr_strcpy(&rs->r, h.agent, sizeof h.agent) ||
        ol__mpr_uint(&rs->r, &h.seq) || ol__mpr_uint(&rs->r, &h.epoch) ||
        ol__mpr_int(&rs->r, &h.time_ms) || ol__mpr_int(&rs->r, &h.seal_id) ||
        ol__mpr_int(&rs->r, &h.idx) || ol__mpr_bin(&rs->r, &h.body, &h.blen))
        BAD(rs, "checkpoint row");
    s = head_seal(rs, &h);
    return s != NULL && store_head(rs, &h, s) != 0 ? OL_EIO : 0;
}


/* New mailbox ids continue from the cluster's sequence, as on the node
 * the snapshot came from (format 1 has none). */
static int restore_mail_seq(struct restore *rs)
{
    int64_t seq = 0;

    if (rs->format >= 2 && ol__mpr_int(&rs->r, &seq))
        BAD(rs, "mailbox sequence");
    if (seq <= 0)
        return 0;
    if (stmt(rs, &rs->mail_seq,
             "UPDATE sqlite_sequence SET seq = max(seq, ?) "
             "WHERE name = 'mailbox'") != 0)
        return OL_EIO;
    sqlite3_bind_int64(rs->mail_seq, 1, seq);
    return ol__sm_done(rs->sm, rs->mail_seq);
}

static int mail_row(struct restore *rs, sqlite3_stmt *st)
{
    char to[OL_NAME_MAX + 1], from[OL_NAME_MAX + 1];
    const void *pl;
    uint32_t plen, m;
    int64_t id;
    uint64_t fseq, idx;

    if (ol__mpr_array(&rs->r, &m) || m != 6 || ol__mpr_int(&rs->r, &id) ||
        ol__mpr_strcpy(&rs->r, to, sizeof to) ||
        ol__mpr_strcpy(&rs->r, from, sizeof from) ||
        ol__mpr_uint(&rs->r, &fseq) || ol__mpr_uint(&rs->r, &idx) ||
        ol__mpr_bin(&rs->r, &pl, &plen) || ol__mp_check(pl, plen, NULL))
        BAD(rs, "mailbox row");
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, to, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, from, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)fseq);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)idx);
    sqlite3_bind_blob(st, 6, pl, (int)plen, SQLITE_STATIC);
    return ol__sm_done(rs->sm, st);
}

static int restore_mailbox(struct restore *rs)
{
    int rv = each_row(rs, "mailbox", &rs->mail,
                      "INSERT INTO mailbox(id, to_agent, from_agent, "
                      "from_seq, idx, payload) VALUES(?, ?, ?, ?, ?, ?)",
                      mail_row);

    return rv != 0 ? rv : restore_mail_seq(rs);
}

static int crash_row(struct restore *rs, sqlite3_stmt *st)
{
    char name[OL_NAME_MAX + 1], reason[OL_REASON_MAX + 1];
    int64_t count, since;
    uint64_t floor, req;
    uint32_t m;

    if (ol__mpr_array(&rs->r, &m) || m != 6 ||
        ol__mpr_strcpy(&rs->r, name, sizeof name) ||
        ol__mpr_int(&rs->r, &count) || ol__mpr_int(&rs->r, &since) ||
        ol__mpr_uint(&rs->r, &floor) || ol__mpr_uint(&rs->r, &req) ||
        ol__mpr_strcpy(&rs->r, reason, sizeof reason))
        BAD(rs, "crash row");
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, count);
    sqlite3_bind_int64(st, 3, since);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)floor);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)req);
    sqlite3_bind_text(st, 6, reason, -1, SQLITE_TRANSIENT);
    return ol__sm_done(rs->sm, st);
}


static int code_row(struct restore *rs, sqlite3_stmt *st)
{
    char kind[OL_KIND_MAX + 1], version[OL_VERSION_MAX + 1];
    uint8_t hash[OL_HASH_SIZE];
    uint64_t node;
    uint32_t m;

    if (ol__mpr_array(&rs->r, &m) || m != 4 ||
        ol__mpr_strcpy(&rs->r, kind, sizeof kind) ||
        ol__mpr_uint(&rs->r, &node) ||
        ol__mpr_bin_fixed(&rs->r, hash, OL_HASH_SIZE) ||
        ol__mpr_strcpy(&rs->r, version, sizeof version))
        BAD(rs, "code row");
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)node);
    sqlite3_bind_blob(st, 3, hash, OL_HASH_SIZE, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, version, -1, SQLITE_TRANSIENT);
    return ol__sm_done(rs->sm, st);
}


static int req_row(struct restore *rs, sqlite3_stmt *st)
{
    char why[160];
    uint64_t req;
    int64_t cnt, type, status;
    uint32_t m;
    int rc;

    if (ol__mpr_array(&rs->r, &m) || m != 5 || ol__mpr_uint(&rs->r, &req) ||
        req == 0 || ol__mpr_int(&rs->r, &cnt) ||
        ol__mpr_int(&rs->r, &type) || ol__mpr_int(&rs->r, &status) ||
        status > 0 || ol__mpr_strcpy(&rs->r, why, sizeof why))
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
    return rc == SQLITE_DONE ? 0 : OL_EIO;
}

/* Every table after the header, in the snapshot's order; the crashes and
 * code tables came with format 3, the request ids with 4. */
int ol__snap_restore_rows(struct restore *rs)
{
    struct ol__sm *sm = rs->sm;
    int rv = each_row(rs, "nodes", NULL, NULL, node_row);

    if (rv == 0)
        rv = each_row(rs, "agents", &sm->stmt[ST_AGENT_INS], NULL,
                      agent_row);
    if (rv == 0)
        rv = restore_seals(rs);
    if (rv == 0)
        rv = each_row(rs, "checkpoints", NULL, NULL, head_row);
    if (rv == 0)
        rv = restore_mailbox(rs);
    if (rv == 0 && rs->format >= 3)
        rv = each_row(rs, "crashes", &rs->crash,
                      "INSERT INTO crashes(name, n, since_ms, floor, "
                      "last_req, reason) VALUES(?, ?, ?, ?, ?, ?)",
                      crash_row);
    if (rv == 0 && rs->format >= 3)
        rv = each_row(rs, "code", &rs->code,
                      "INSERT INTO code(kind, node, hash, version) "
                      "VALUES(?, ?, ?, ?)",
                      code_row);
    if (rv == 0 && rs->format >= 4)
        rv = each_row(rs, "request ids", &sm->stmt[ST_REQ_INS], NULL,
                      req_row);
    return rv;
}
