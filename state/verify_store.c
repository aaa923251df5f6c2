/*
 * Verifying a whole database, as `outlast verify` does.  Three walks:
 *
 *   - the checkpoints in chain order (agent, seq), found through the
 *     (agent, seq) index and each fetched on its own by rowid, so a damaged
 *     table page costs the rows on it, not the rest of the file; if the
 *     index itself is damaged the walk resumes past it, and, when it
 *     cannot, the table is scanned by rowid for the rows not yet checked;
 *   - the head records: every agent's chain must end exactly at its head;
 *   - the seals: each is checked against the rows that point at it (the
 *     state machine counts the stored checkpoints each seal signed, so a
 *     seal whose rows were deleted shows up, even when nothing else
 *     refers to them).
 *
 * Every problem is reported through the callback and counted in
 * report->bad; nothing found is left uncounted.  The walks share one read
 * transaction, so a database that a node is writing is seen as of one
 * moment: rows, heads and seals that belong together.  The row walks are
 * here; the head and seal checks are in verify_heads.c.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/map.h"
#include "verify_int.h"

#define PROBES_MAX 4096

void ol__vw_problem(struct walk *w, const char *agent, uint64_t seq,
                    const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->rep->bad++;
    if (w->cb)
        w->cb(w->data, agent, seq, msg);
}

#define DONE_LIMIT ((int64_t)1 << 34) /* rowids tracked: 2 GiB of bits */

static void mark_done(struct walk *w, int64_t rowid)
{
    size_t byte;

    if (rowid < 0 || rowid >= DONE_LIMIT)
        return;
    byte = (size_t)(rowid >> 3);
    if (byte >= w->done_bytes) {
        size_t n = w->done_bytes ? w->done_bytes : 4096;
        uint8_t *p;

        while (n <= byte)
            n *= 2;
        p = realloc(w->done, n);
        if (p == NULL)
            return;
        memset(p + w->done_bytes, 0, n - w->done_bytes);
        w->done = p;
        w->done_bytes = n;
    }
    w->done[byte] |= (uint8_t)(1u << (rowid & 7));
}

static int is_done(const struct walk *w, int64_t rowid)
{
    size_t byte = (size_t)(rowid >> 3);

    return rowid >= 0 && byte < w->done_bytes &&
           (w->done[byte] & (1u << (rowid & 7)));
}

/* The record of an agent's rows, made (and its agents row checked) when
 * the agent is first met. */
static struct agent_info *agent_info(struct walk *w, const char *agent)
{
    struct agent_info *ai = ol__map_get(&w->seen, agent);
    int rc;

    if (ai)
        return ai;
    ai = calloc(1, sizeof *ai);
    if (ai == NULL)
        return NULL;
    snprintf(ai->name, sizeof ai->name, "%s", agent);
    if (ol__map_put(&w->seen, ai->name, ai) != 0) {
        free(ai);
        return NULL;
    }
    w->rep->agents++;
    sqlite3_bind_text(w->agent_st, 1, agent, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(w->agent_st);
    if (rc == SQLITE_DONE)
        ol__vw_problem(w, agent, 0,
                       "its checkpoints are stored but the agent has no "
                       "agents row");
    else if (rc != SQLITE_ROW)
        ol__vw_problem(w, agent, 0, "its agents row cannot be read: %s",
                       sqlite3_errmsg(w->db));
    sqlite3_reset(w->agent_st);
    return ai;
}

static void note_row(struct agent_info *ai, uint64_t seq, const void *hash,
                     int hash_len)
{
    if (ai == NULL || seq < ai->max_seq)
        return;
    ai->max_seq = seq;
    ai->ok = hash && hash_len == OL_HASH_SIZE;
    if (ai->ok)
        memcpy(ai->hash, hash, OL_HASH_SIZE);
}

static void start_agent(struct walk *w, const char *agent)
{
    snprintf(w->agent, sizeof w->agent, "%s", agent);
    w->in_agent = 1;
    w->prev_ok = 0;
    w->prev_seq = 0;
}

struct fx_report {
    struct walk *w;
    const struct ol__ckpt *c;
};

static void fx_problem(void *data, uint64_t seq, uint32_t idx,
                       const char *problem)
{
    struct fx_report *fr = data;

    ol__vw_problem(fr->w, fr->c->agent, fr->c->seq,
                   "effect (seq %" PRIu64 ", index %" PRIu32 "): %s", seq,
                   idx, problem);
}

/* The effects of a verified row, against the row before it. */
static void check_effects(struct walk *w, struct ol__ckpt *c)
{
    struct fx_report fr = {w, c};

    (void)ol__vfx_step(&w->fx, c, fx_problem, &fr);
}

/* Does the verified row `r` (decoded as `c`) fail to link to the row
 * before it in the walk?  1 with why set, or 0. */
static int link_bad(struct walk *w, const struct row *r,
                    const struct ol__ckpt *c, char *why, size_t whylen)
{
    static const uint8_t zero[OL_HASH_SIZE];

    if (w->prev_seq && r->seq == w->prev_seq + 1 && w->prev_ok &&
        memcmp(c->prev_hash, w->prev_hash, OL_HASH_SIZE) != 0) {
        snprintf(why, whylen, "prev_hash does not link to seq %" PRIu64,
                 w->prev_seq);
        return 1;
    }
    if (w->prev_seq && r->seq != w->prev_seq + 1) {
        if (r->flags & 1) {
            w->rep->gaps++;
            return 0;
        }
        snprintf(why, whylen, "seqs %" PRIu64 "..%" PRIu64 " are missing",
                 w->prev_seq + 1, r->seq - 1);
        return 1;
    }
    if (r->seq == 1 && memcmp(c->prev_hash, zero, OL_HASH_SIZE) != 0) {
        snprintf(why, whylen, "first checkpoint has a prev_hash");
        return 1;
    }
    return 0;
}

/* Check one row found as (agent, seq, rowid); chain: link to the row
 * before it in the same walk. */
static void check_one(struct walk *w, const char *agent, uint64_t seq,
                      int64_t rowid, int chain)
{
    struct seal_entry *se;
    struct ol__ckpt c;
    struct row r;
    uint8_t hash[OL_HASH_SIZE];
    char why[256];
    int rc, bad;

    struct agent_info *ai = agent_info(w, agent);

    if (chain && (!w->in_agent || strcmp(agent, w->agent) != 0))
        start_agent(w, agent);
    mark_done(w, rowid);
    w->rep->checkpoints++;
    sqlite3_bind_int64(w->fetch, 1, rowid);
    rc = sqlite3_step(w->fetch);
    if (rc != SQLITE_ROW) {
        ol__vw_problem(w, agent, seq, "the row cannot be read: %s",
                       rc == SQLITE_DONE ? "it vanished"
                                         : sqlite3_errmsg(w->db));
        sqlite3_reset(w->fetch);
        w->unreadable++;
        note_row(ai, seq, NULL, 0);
        if (chain) {
            w->prev_ok = 0;
            w->prev_seq = seq;
        }
        return;
    }
    ol__vs_read_row(w->fetch, &r);
    memset(hash, 0, sizeof hash);
    bad = ol__vs_check_row(w->db, &w->cache, &w->kr, w->seal_st, &r, &c,
                           hash, &w->rep->seals, why, sizeof why) != 0;
    se = ol__vs_cache_slot(&w->cache, r.seal);
    if (se && se->id == r.seal) {
        se->rows++;
        if (se->ok && r.idx >= 0 && (uint64_t)r.idx < se->n) {
            if (se->seen == NULL)
                se->seen = calloc((se->n + 7) / 8, 1);
            if (se->seen)
                se->seen[r.idx / 8] |= (uint8_t)(1u << (r.idx % 8));
        }
        if (bad && !se->ok)
            se->reported = 1;
    }
    if (!bad && chain)
        bad = link_bad(w, &r, &c, why, sizeof why);
    if (bad)
        ol__vw_problem(w, agent, r.seq, "%s", why);
    if (chain && !bad)
        check_effects(w, &c);
    else if (chain)
        ol__vfx_reset(&w->fx);
    ol__ckpt_free(&c); /* decoded, or already empty */
    note_row(ai, r.seq, r.hash, r.hash_len);
    if (chain) {
        w->prev_ok = !bad;
        w->prev_seq = r.seq;
        memcpy(w->prev_hash, hash, OL_HASH_SIZE);
    }
    sqlite3_reset(w->fetch);
}

/*
 * The chains, through the (agent, seq) index.  Returns 0 when the index
 * was read to its end (perhaps resuming past damage), 1 when it could not
 * be and the rows must be found another way.
 */
static int walk_index(struct walk *w)
{
    static const char from_start[] =
        "SELECT agent, seq, rowid FROM checkpoints WHERE ?1 IS NULL OR "
        "agent = ?1 ORDER BY agent, seq";
    static const char after_row[] =
        "SELECT agent, seq, rowid FROM checkpoints WHERE (?1 IS NULL OR "
        "agent = ?1) AND (agent > ?2 OR (agent = ?2 AND seq > ?3)) ORDER BY "
        "agent, seq";
    static const char after_agent[] =
        "SELECT agent, seq, rowid FROM checkpoints WHERE (?1 IS NULL OR "
        "agent = ?1) AND agent > ?2 ORDER BY agent, seq";
    char last_agent[OL_NAME_MAX + 1] = "";
    uint64_t last_seq = 0;
    int resumes = 0, mode = 0, progress, rc;
    sqlite3_stmt *st = NULL;

    for (;;) {
        const char *sql = mode == 0 ? from_start
                          : mode == 1 ? after_row
                                      : after_agent;

        if (sqlite3_prepare_v2(w->db, sql, -1, &st, NULL) != SQLITE_OK) {
            ol__vw_problem(w, "", 0, "the checkpoints cannot be listed: %s",
                           sqlite3_errmsg(w->db));
            return 1;
        }
        if (w->only)
            sqlite3_bind_text(st, 1, w->only, -1, SQLITE_STATIC);
        if (mode > 0)
            sqlite3_bind_text(st, 2, last_agent, -1, SQLITE_STATIC);
        if (mode == 1)
            sqlite3_bind_int64(st, 3, (sqlite3_int64)last_seq);
        progress = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *a = (const char *)sqlite3_column_text(st, 0);

            progress = 1;
            snprintf(last_agent, sizeof last_agent, "%s", a ? a : "");
            last_seq = (uint64_t)sqlite3_column_int64(st, 1);
            check_one(w, last_agent, last_seq, sqlite3_column_int64(st, 2),
                      1);
        }
        if (rc == SQLITE_DONE) {
            sqlite3_finalize(st);
            return 0;
        }
        if (progress || mode == 0)
            ol__vw_problem(w, last_agent, last_seq,
                           "the checkpoints index cannot be read past this "
                           "row: %s",
                           sqlite3_errmsg(w->db));
        sqlite3_finalize(st);
        st = NULL;
        /* Past the damage: the next row, else the next agent, else give
         * up on the index. */
        if (mode == 0 && !progress)
            return 1;
        if (progress)
            mode = 1;
        else if (mode == 1)
            mode = 2;
        else
            return 1;
        if (++resumes > RESUMES_MAX)
            return 1;
    }
}

/* Rows the index walk did not reach, found by scanning the table by rowid
 * and probing past unreadable stretches.  Checked one by one. */
static void walk_rowids(struct walk *w)
{
    sqlite3_stmt *st;
    int64_t at = 0, jump = 1, failed_from = -1;
    int probes = 0, rc;

    if (sqlite3_prepare_v2(w->db,
                           "SELECT rowid, agent, seq FROM checkpoints WHERE "
                           "rowid > ? ORDER BY rowid LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK) {
        ol__vw_problem(w, "", 0, "the checkpoints table cannot be scanned: %s",
                       sqlite3_errmsg(w->db));
        return;
    }
    w->in_agent = 0;
    while (probes < PROBES_MAX) {
        sqlite3_bind_int64(st, 1, at);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            int64_t rowid = sqlite3_column_int64(st, 0);
            const char *a = (const char *)sqlite3_column_text(st, 1);
            char agent[OL_NAME_MAX + 1];
            uint64_t seq = (uint64_t)sqlite3_column_int64(st, 2);

            snprintf(agent, sizeof agent, "%s", a ? a : "");
            sqlite3_reset(st);
            if (failed_from >= 0) {
                ol__vw_problem(w, "", 0,
                               "the checkpoints table is unreadable from "
                               "rowid %" PRId64 " to %" PRId64,
                               failed_from, rowid - 1);
                failed_from = -1;
            }
            jump = 1;
            at = rowid;
            if ((w->only == NULL || strcmp(agent, w->only) == 0) &&
                !is_done(w, rowid))
                check_one(w, agent, seq, rowid, 0);
            continue;
        }
        sqlite3_reset(st);
        if (rc == SQLITE_DONE)
            break;
        if (failed_from < 0)
            failed_from = at + 1;
        probes++;
        at += jump;
        if (jump < ((int64_t)1 << 40))
            jump *= 2;
    }
    if (failed_from >= 0)
        ol__vw_problem(w, "", 0,
                       "the checkpoints table is unreadable from rowid "
                       "%" PRId64 " on",
                       failed_from);
    sqlite3_finalize(st);
}

static int has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    int yes = 0;

    if (sqlite3_prepare_v2(db,
                           "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                           "AND name = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    yes = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return yes;
}

/* Prepare what the walks use.  Returns 0, or OL_EIO / OL_ENOMEM when
 * nothing can be checked. */
static int walk_open(struct walk *w, const uint8_t (*trusted)[OL_PK_SIZE],
                     size_t n_trusted)
{
    char err[OL_ERRMSG_SIZE], sql[256];
    sqlite3 *db = w->db;
    int rv;

    /* Nothing can be checked in a file that cannot be read at all. */
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1,
                           &w->fetch, NULL) != SQLITE_OK ||
        sqlite3_step(w->fetch) != SQLITE_ROW)
        return OL_EIO;
    sqlite3_finalize(w->fetch);
    w->fetch = NULL;
    rv = ol__vs_keyring_load(db, trusted, n_trusted, &w->kr, err);
    if (rv == OL_ENOMEM)
        return rv;
    if (rv != 0)
        ol__vw_problem(w, "", 0, "%s (signers not read are not trusted)",
                       err);
    snprintf(sql, sizeof sql, "%s WHERE rowid = ?", OL_VERIFY_ROWS_SQL);
    if (sqlite3_prepare_v2(db, sql, -1, &w->fetch, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, OL_VERIFY_SEAL_SQL, -1, &w->seal_st, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT 1 FROM agents WHERE name = ?", -1,
                           &w->agent_st, NULL) != SQLITE_OK)
        return OL_EIO;
    if (has_table(db, "heads") &&
        sqlite3_prepare_v2(db, "SELECT seq, hash FROM heads WHERE agent = ?",
                           -1, &w->head_st, NULL) != SQLITE_OK)
        ol__vw_problem(w, "", 0, "the head records cannot be read: %s",
                       sqlite3_errmsg(db));
    return 0;
}

static void walk_close(struct walk *w)
{
    void *v;

    sqlite3_finalize(w->fetch);
    sqlite3_finalize(w->seal_st);
    sqlite3_finalize(w->agent_st);
    sqlite3_finalize(w->head_st);
    ol__vs_cache_free(&w->cache);
    ol__vfx_reset(&w->fx);
    for (size_t i = 0; ol__map_next(&w->seen, &i, &v);)
        free(v);
    ol__map_close(&w->seen);
    free(w->kr.pk);
    free(w->done);
}

int ol__verify_store(sqlite3 *db, const char *agent,
                     const uint8_t (*trusted)[OL_PK_SIZE], size_t n_trusted,
                     ol__verify_cb cb, void *data,
                     struct ol__verify_report *rep)
{
    struct walk w;
    int rv, own_txn = 0;

    memset(rep, 0, sizeof *rep);
    memset(&w, 0, sizeof w);
    if (sqlite3_get_autocommit(db) &&
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK)
        own_txn = 1;
    w.db = db;
    w.only = agent;
    w.cb = cb;
    w.data = data;
    w.rep = rep;
    ol__map_init(&w.seen);
    rv = walk_open(&w, trusted, n_trusted);
    if (rv == OL_EIO && cb)
        cb(data, "", 0, sqlite3_errmsg(db));
    if (rv == 0) {
        if (walk_index(&w) != 0)
            walk_rowids(&w);
        if (w.head_st) {
            void *v;

            for (size_t i = 0; ol__map_next(&w.seen, &i, &v);)
                ol__vw_check_head(&w, v);
            ol__vw_walk_heads(&w);
        }
        /* Seals span agents: they are checked against a whole database. */
        if (agent == NULL)
            ol__vw_walk_seals(&w);
    }
    walk_close(&w);
    if (own_txn)
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    return rv;
}
