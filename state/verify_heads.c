/*
 * The checks of `outlast verify` that follow the walk over the rows
 * (verify_store.c): every agent's chain must end exactly at its head
 * record, every head record must have rows, and every seal must still
 * have the rows it signed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "verify_int.h"

/* An agent's newest row must be its head record. */
void ol__vw_check_head(struct walk *w, const struct agent_info *ai)
{
    uint64_t head;
    const uint8_t *hh;
    int rc;

    if (w->head_st == NULL)
        return;
    sqlite3_bind_text(w->head_st, 1, ai->name, -1, SQLITE_STATIC);
    rc = sqlite3_step(w->head_st);
    if (rc == SQLITE_ROW) {
        head = (uint64_t)sqlite3_column_int64(w->head_st, 0);
        hh = sqlite3_column_blob(w->head_st, 1);
        if (ai->max_seq < head)
            ol__vw_problem(w, ai->name, head,
                           "seqs %" PRIu64 "..%" PRIu64 " are missing: the "
                           "chain ends at seq %" PRIu64 ", below its head "
                           "(seq %" PRIu64 ")",
                           ai->max_seq + 1, head, ai->max_seq, head);
        else if (ai->max_seq > head)
            ol__vw_problem(w, ai->name, ai->max_seq,
                           "is above the agent's recorded head (seq %" PRIu64
                           ")",
                           head);
        else if (ai->ok &&
                 (sqlite3_column_bytes(w->head_st, 1) != OL_HASH_SIZE ||
                  memcmp(hh, ai->hash, OL_HASH_SIZE) != 0))
            ol__vw_problem(w, ai->name, head,
                           "is not the checkpoint its head record names");
    } else if (rc == SQLITE_DONE) {
        ol__vw_problem(w, ai->name, ai->max_seq,
                       "the agent has no head record (its chain may have been "
                       "altered)");
    } else {
        ol__vw_problem(w, ai->name, 0, "its head record cannot be read: %s",
                       sqlite3_errmsg(w->db));
    }
    sqlite3_reset(w->head_st);
}

/* Head records of agents that have no rows at all. */
void ol__vw_walk_heads(struct walk *w)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(w->db,
                           "SELECT agent, seq FROM heads WHERE ?1 IS NULL OR "
                           "agent = ?1 ORDER BY agent",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    if (w->only)
        sqlite3_bind_text(st, 1, w->only, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *a = (const char *)sqlite3_column_text(st, 0);

        if (a && ol__map_get(&w->seen, a) == NULL)
            ol__vw_problem(w, a, (uint64_t)sqlite3_column_int64(st, 1),
                           "all the agent's checkpoints are missing (its head "
                           "is this seq)");
    }
    if (rc != SQLITE_DONE)
        ol__vw_problem(w, "", 0,
                       "the head records cannot be read to the end: %s",
                       sqlite3_errmsg(w->db));
    sqlite3_finalize(st);
}

/* Positions of seal e with no stored row whose checkpoint is kept as
 * divergence evidence (a snapshot install replaced the row with the
 * cluster's): those rows are accounted for. */
static uint32_t kept_as_evidence(struct walk *w, const struct seal_entry *e)
{
    sqlite3_stmt *st;
    uint32_t n = 0;

    if (sqlite3_prepare_v2(w->db,
                           "SELECT 1 FROM evidence WHERE other_hash = ?", -1,
                           &st, NULL) != SQLITE_OK)
        return 0;
    for (uint32_t i = 0; i < e->n; i++) {
        if (e->seen && (e->seen[i / 8] & (1u << (i % 8))))
            continue;
        sqlite3_bind_blob(st, 1, e->hashes + (size_t)i * OL_HASH_SIZE,
                          OL_HASH_SIZE, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            n++;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return n;
}

/* Every seal against the rows that point at it. */
void ol__vw_walk_seals(struct walk *w)
{
    sqlite3_stmt *st;
    int64_t last = 0;
    int resumes = 0, rc;

    for (;;) {
        if (sqlite3_prepare_v2(w->db,
                               "SELECT id, live FROM seals WHERE id > ? "
                               "ORDER BY id",
                               -1, &st, NULL) != SQLITE_OK) {
            ol__vw_problem(w, "", 0, "the seals cannot be listed: %s",
                           sqlite3_errmsg(w->db));
            return;
        }
        sqlite3_bind_int64(st, 1, last);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            int64_t live = sqlite3_column_int64(st, 1);
            struct seal_entry *e;

            last = id;
            e = ol__vs_seal_get(w->db, &w->cache, &w->kr, w->seal_st, id,
                                &w->rep->seals);
            if (e == NULL) {
                ol__vw_problem(w, "", 0, "out of memory checking seals");
                break;
            }
            if (!e->ok) {
                if (!e->reported && e->rows == 0)
                    ol__vw_problem(w, "", 0, "%s", e->why);
                continue;
            }
            if ((int64_t)e->rows < live &&
                (int64_t)(e->rows + kept_as_evidence(w, e)) < live)
                ol__vw_problem(w, "", 0,
                               "seal %" PRId64 " signed %u checkpoints, of "
                               "which %" PRId64 " should still be stored, but "
                               "only %u %s",
                               id, e->n, live, e->rows,
                               w->unreadable
                                   ? "can be read (the others were deleted "
                                     "or are on damaged pages)"
                                   : "are: the others were deleted");
            else if ((int64_t)e->rows > live)
                ol__vw_problem(w, "", 0,
                               "seal %" PRId64 " counts %" PRId64 " stored "
                               "checkpoints, but %u point at it",
                               id, live, e->rows);
        }
        if (rc == SQLITE_DONE) {
            sqlite3_finalize(st);
            return;
        }
        ol__vw_problem(w, "", 0,
                       "the seals table cannot be read past seal %" PRId64
                       ": %s",
                       last, sqlite3_errmsg(w->db));
        sqlite3_finalize(st);
        if (++resumes > RESUMES_MAX)
            return;
        last++; /* past the unreadable one */
    }
}

