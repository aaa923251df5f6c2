/*
 * Cluster integration test support (see cluster.h), the database half:
 * reads of each node's SQLite file (state, counts, signers, log lines),
 * the record of checkpoints seen during a test, and the invariant checker.
 *
 * The checker reads every node's SQLite file directly, the same bytes an
 * auditor would read, rather than asking the daemons: what it checks must
 * hold for what is on disk.
 */
#include "cluster.h"
#include "cluster_int.h"
#include "wait.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record/seal.h"
#include "state/verify.h"
#include "base/err.h"
#include "base/keys.h"

/* ---- a map from (agent, number) to 32 bytes ---- */

static uint64_t mhash(const char *agent, int64_t k)
{
    uint64_t h = 1469598103934665603ull;

    for (const char *p = agent; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    for (int i = 0; i < 8; i++)
        h = (h ^ (uint8_t)(k >> (8 * i))) * 1099511628211ull;
    return h;
}

void tc__seen_free(struct tc_seen *m)
{
    if (m == NULL)
        return;
    free(m->t);
    m->t = NULL;
    m->cap = m->n = 0;
}

static struct mrow *map_slot(struct tc_seen *m, const char *agent, int64_t k)
{
    size_t i = (size_t)mhash(agent, k) & (m->cap - 1);

    while (m->t[i].used &&
           (m->t[i].k != k || strcmp(m->t[i].agent, agent) != 0))
        i = (i + 1) & (m->cap - 1);
    return &m->t[i];
}

/* Insert or find; *fresh tells which. */
static struct mrow *map_put(struct tc_seen *m, const char *agent, int64_t k,
                            int *fresh)
{
    struct mrow *r;

    if ((m->n + 1) * 2 > m->cap) {
        struct tc_seen big = {NULL, m->cap ? m->cap * 2 : 4096, 0};

        big.t = calloc(big.cap, sizeof *big.t);
        cr_assert_not_null(big.t);
        for (size_t i = 0; i < m->cap; i++)
            if (m->t[i].used) {
                *map_slot(&big, m->t[i].agent, m->t[i].k) = m->t[i];
                big.n++;
            }
        free(m->t);
        *m = big;
    }
    r = map_slot(m, agent, k);
    *fresh = !r->used;
    if (!r->used) {
        memset(r, 0, sizeof *r);
        snprintf(r->agent, sizeof r->agent, "%s", agent);
        r->k = k;
        r->used = 1;
        m->n++;
    }
    return r;
}

static sqlite3 *open_db(struct tc *c, int i)
{
    return td_db(&c->nodes[i].d);
}

/* ---- database reads ---- */

int64_t tc_state_int(struct tc *c, int i, const char *agent,
                     const char *key, int64_t dflt)
{
    return td_state_int(&c->nodes[i].d, agent, key, dflt);
}

int64_t tc_ckpt_count(struct tc *c, int i)
{
    sqlite3 *db = open_db(c, i);
    int64_t v = td_q1(db, "SELECT count(*) FROM checkpoints");

    sqlite3_close(db);
    return v;
}

int64_t tc_db_applied(struct tc *c, int i)
{
    sqlite3 *db = open_db(c, i);
    int64_t v = td_q1(db, "SELECT coalesce((SELECT CAST(value AS INTEGER) "
                          "FROM meta WHERE key = 'applied_index'), 0)");

    sqlite3_close(db);
    return v;
}

static int signer_of(const void *seal, size_t len, uint8_t out[32])
{
    struct ol__seal s;

    if (seal == NULL || ol__seal_parse(seal, len, &s) != 0)
        return -1;
    memcpy(out, s.signer, 32);
    return 0;
}

static int node_of_pk(struct tc *c, const uint8_t pk[32])
{
    char hex[OL_PK_HEX_SIZE];

    ol__pk_hex(pk, hex);
    for (int i = 0; i < c->n; i++)
        if (strcmp(hex, c->nodes[i].pk) == 0)
            return i;
    return -1;
}

int64_t tc_signed_by(struct tc *c, int i, int signer, const char *agent)
{
    sqlite3 *db = open_db(c, i);
    sqlite3_stmt *st;
    int64_t n = 0;

    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT s.body FROM checkpoints k JOIN "
                                    "seals s ON s.id = k.seal WHERE ?1 IS "
                                    "NULL OR k.agent = ?1",
                                    -1, &st, NULL),
                 SQLITE_OK);
    if (agent)
        sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint8_t pk[32];

        if (signer_of(sqlite3_column_blob(st, 0),
                      (size_t)sqlite3_column_bytes(st, 0), pk) == 0 &&
            node_of_pk(c, pk) == signer)
            n++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

int tc_log_count(struct tc *c, int i, const char *needle)
{
    FILE *f = fopen(c->nodes[i].d.log, "r");
    char line[2048];
    int n = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

/* ---- observed rows ---- */

static void observe_node(struct tc *c, int i)
{
    sqlite3 *db = open_db(c, i);
    sqlite3_stmt *st;

    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT agent, seq, hash FROM "
                                    "checkpoints",
                                    -1, &st, NULL),
                 SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *agent = (const char *)sqlite3_column_text(st, 0);
        int64_t seq = sqlite3_column_int64(st, 1);
        const void *hash = sqlite3_column_blob(st, 2);
        int fresh;
        struct mrow *r;

        cr_assert_eq(sqlite3_column_bytes(st, 2), 32,
                     "node %d: '%s' seq %" PRId64 " has a %d-byte hash",
                     i + 1, agent, seq, sqlite3_column_bytes(st, 2));
        r = map_put(c->seen, agent, seq, &fresh);
        if (fresh) {
            memcpy(r->v, hash, 32);
            r->node = i;
        } else {
            cr_expect_eq(memcmp(r->v, hash, 32), 0,
                         "'%s' seq %" PRId64 ": node %d holds another "
                         "checkpoint than the one seen on node %d",
                         agent, seq, i + 1, r->node + 1);
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

void tc_observe(struct tc *c)
{
    for (int i = 0; i < c->n; i++)
        if (c->nodes[i].up)
            observe_node(c, i);
}

/* ---- the checker ---- */

struct nrow {
    char agent[65];
    int64_t seq;
    int64_t epoch;
    int flags;
    uint8_t hash[32];
    uint8_t signer[32];
    int has_signer;
};

struct ndb {
    struct nrow *rows; /* ordered by agent, seq */
    size_t n;
};

static void load_rows(struct tc *c, int i, struct ndb *out)
{
    sqlite3 *db = open_db(c, i);
    sqlite3_stmt *st;
    size_t cap = 1024;

    out->n = 0;
    out->rows = malloc(cap * sizeof *out->rows);
    cr_assert_not_null(out->rows);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT k.agent, k.seq, k.epoch, "
                                    "k.flags, k.hash, s.body FROM "
                                    "checkpoints k LEFT JOIN seals s ON "
                                    "s.id = k.seal ORDER BY k.agent, k.seq",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct nrow *r;

        if (out->n == cap) {
            out->rows = realloc(out->rows, (cap *= 2) * sizeof *out->rows);
            cr_assert_not_null(out->rows);
        }
        r = &out->rows[out->n++];
        memset(r, 0, sizeof *r);
        snprintf(r->agent, sizeof r->agent, "%s",
                 (const char *)sqlite3_column_text(st, 0));
        r->seq = sqlite3_column_int64(st, 1);
        r->epoch = sqlite3_column_int64(st, 2);
        r->flags = sqlite3_column_int(st, 3);
        if (sqlite3_column_bytes(st, 4) == 32)
            memcpy(r->hash, sqlite3_column_blob(st, 4), 32);
        r->has_signer =
            signer_of(sqlite3_column_blob(st, 5),
                      (size_t)sqlite3_column_bytes(st, 5), r->signer) == 0;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int row_cmp(const struct nrow *r, const char *agent, int64_t seq)
{
    int d = strcmp(r->agent, agent);

    if (d)
        return d;
    return r->seq < seq ? -1 : r->seq > seq;
}

/* Index of the first row >= (agent, seq). */
static size_t lower_bound(const struct ndb *d, const char *agent,
                          int64_t seq)
{
    size_t lo = 0, hi = d->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (row_cmp(&d->rows[mid], agent, seq) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Is (agent, seq), missing from d, inside a gap that ends at a row
 * installed from a snapshot? */
static int in_snapshot_gap(const struct ndb *d, const char *agent,
                           int64_t seq)
{
    size_t k = lower_bound(d, agent, seq);

    return k < d->n && strcmp(d->rows[k].agent, agent) == 0 &&
           (d->rows[k].flags & 1);
}

static void verify_cb(void *data, const char *agent, uint64_t seq,
                      const char *problem)
{
    cr_log_error("node %d: verify: '%s' seq %" PRIu64 ": %s",
                 *(int *)data + 1, agent, seq, problem);
}

/* Report at most this many rows per kind of problem. */
#define SHOW 10

struct applied_arg {
    struct tc *c;
    uint64_t target;
};

static int all_applied(void *arg)
{
    struct applied_arg *a = arg;

    for (int i = 0; i < a->c->n; i++)
        if ((uint64_t)tc_db_applied(a->c, i) < a->target)
            return 0;
    return 1;
}

/* The highest commit index any node reports, once every node has applied
 * it (waits up to timeout_ms; a node that does not is a failure). */
static uint64_t wait_applied(struct tc *c, int timeout_ms)
{
    struct applied_arg a = {c, 0};

    for (int i = 0; i < c->n; i++) {
        struct tc_status st;

        cr_assert_eq(tc_status(c, i, &st), 0, "node %d: cluster.status",
                     i + 1);
        if (st.commit_index > a.target)
            a.target = st.commit_index;
    }
    (void)tw_until(all_applied, &a, timeout_ms);
    for (int i = 0; i < c->n; i++)
        cr_expect_geq(tc_db_applied(c, i), (int64_t)a.target,
                      "node %d applied only up to index %" PRId64
                      " of %" PRIu64 " within %d ms",
                      i + 1, tc_db_applied(c, i), a.target, timeout_ms);
    return a.target;
}

/* Node i's own store: it verifies, holds no divergence evidence, and each
 * agent's seqs run 1, 2, 3... except onto a row a snapshot installed.
 * Loads its rows into *out.  Returns the problems found. */
static int check_node(struct tc *c, int i, struct ndb *out)
{
    struct ol__verify_report rep;
    sqlite3 *db = open_db(c, i);
    int64_t ev;
    int bad = 0, shown = 0;

    cr_expect_eq(ol__verify_store(db, NULL, NULL, 0, verify_cb, &i, &rep),
                 0, "node %d: verify could not read the store", i + 1);
    cr_expect_eq(rep.bad, 0, "node %d: %" PRIu64 " of %" PRIu64
                             " checkpoints fail verification",
                 i + 1, rep.bad, rep.checkpoints);
    bad += rep.bad != 0;
    ev = td_q1(db, "SELECT count(*) FROM evidence");
    cr_expect_eq(ev, 0, "node %d holds %" PRId64 " divergence reports",
                 i + 1, ev);
    bad += ev != 0;
    sqlite3_close(db);

    load_rows(c, i, out);
    for (size_t k = 0; k < out->n; k++) {
        const struct nrow *r = &out->rows[k];
        int64_t prev =
            k > 0 && strcmp(out->rows[k - 1].agent, r->agent) == 0
                ? out->rows[k - 1].seq
                : 0;

        if (r->seq != prev + 1 && !(r->flags & 1)) {
            if (shown++ < SHOW)
                cr_expect_fail("node %d: '%s' seqs %" PRId64 "..%" PRId64
                               " are missing (not a snapshot gap)",
                               i + 1, r->agent, prev + 1, r->seq - 1);
            bad++;
        }
    }
    return bad;
}

/* Agreement: one checkpoint per (agent, seq) across all nodes (in
 * *pairs), and one signer per (agent, epoch) (in *epochs). */
static int check_agreement(struct tc *c, const struct ndb *dbs,
                           struct tc_seen *pairs, struct tc_seen *epochs)
{
    int bad = 0;

    for (int i = 0; i < c->n; i++) {
        int shown_h = 0, shown_s = 0;

        for (size_t k = 0; k < dbs[i].n; k++) {
            const struct nrow *r = &dbs[i].rows[k];
            struct mrow *m;
            int fresh;

            m = map_put(pairs, r->agent, r->seq, &fresh);
            if (fresh) {
                memcpy(m->v, r->hash, 32);
                m->node = i;
            } else if (memcmp(m->v, r->hash, 32) != 0) {
                if (shown_h++ < SHOW)
                    cr_expect_fail("'%s' seq %" PRId64 ": nodes %d and %d "
                                   "hold different checkpoints",
                                   r->agent, r->seq, m->node + 1, i + 1);
                bad++;
            }
            if (!r->has_signer) {
                if (shown_s++ < SHOW)
                    cr_expect_fail("node %d: '%s' seq %" PRId64 " has no "
                                   "readable seal",
                                   i + 1, r->agent, r->seq);
                bad++;
                continue;
            }
            m = map_put(epochs, r->agent, r->epoch, &fresh);
            if (fresh) {
                memcpy(m->v, r->signer, 32);
                m->node = i;
            } else if (memcmp(m->v, r->signer, 32) != 0) {
                if (shown_s++ < SHOW)
                    cr_expect_fail("'%s' epoch %" PRId64 " was committed by "
                                   "two nodes: node %d and node %d signed "
                                   "checkpoints of it (seq %" PRId64
                                   " on node %d's copy)",
                                   r->agent, r->epoch,
                                   node_of_pk(c, m->v) + 1,
                                   node_of_pk(c, r->signer) + 1, r->seq,
                                   i + 1);
                bad++;
            }
        }
    }
    return bad;
}

/* Nothing committed is lost: every row observed at any time is on node
 * i (db), unless it skipped the row by installing a snapshot. */
static int check_observed(struct tc *c, int i, const struct ndb *db)
{
    size_t shown = 0, skipped = 0;
    int bad = 0;

    for (size_t s = 0; s < c->seen->cap; s++) {
        const struct mrow *m = &c->seen->t[s];
        size_t k;

        if (!m->used)
            continue;
        k = lower_bound(db, m->agent, m->k);
        if (k < db->n && row_cmp(&db->rows[k], m->agent, m->k) == 0) {
            if (memcmp(db->rows[k].hash, m->v, 32) != 0) {
                if (shown++ < SHOW)
                    cr_expect_fail("'%s' seq %" PRId64 ": node %d now "
                                   "holds another checkpoint than the "
                                   "one observed on node %d",
                                   m->agent, m->k, i + 1, m->node + 1);
                bad++;
            }
        } else if (in_snapshot_gap(db, m->agent, m->k)) {
            skipped++;
        } else {
            if (shown++ < SHOW)
                cr_expect_fail("'%s' seq %" PRId64 " (observed on node "
                               "%d) is missing on node %d",
                               m->agent, m->k, m->node + 1, i + 1);
            bad++;
        }
    }
    cr_log_info("node %d: %zu checkpoint rows, %zu observed rows inside "
                "snapshot gaps",
                i + 1, db->n, skipped);
    return bad;
}

int tc_check(struct tc *c, int timeout_ms)
{
    struct ndb dbs[TC_MAX_NODES];
    struct tc_seen pairs = {0}, epochs = {0};
    uint64_t target;
    int bad = 0;

    for (int i = 0; i < c->n; i++)
        cr_assert(c->nodes[i].up, "tc_check: node %d is not running", i + 1);
    tc_observe(c);
    /* Every row just observed was committed at or below this index. */
    target = wait_applied(c, timeout_ms);
    for (int i = 0; i < c->n; i++)
        bad += check_node(c, i, &dbs[i]);
    bad += check_agreement(c, dbs, &pairs, &epochs);
    for (int i = 0; i < c->n; i++)
        bad += check_observed(c, i, &dbs[i]);
    cr_log_info("checker: %zu distinct (agent, seq), %zu (agent, epoch), "
                "%zu observed, applied target %" PRIu64 ", %d problem(s)",
                pairs.n, epochs.n, c->seen->n, target, bad);
    for (int i = 0; i < c->n; i++)
        free(dbs[i].rows);
    tc__seen_free(&pairs);
    tc__seen_free(&epochs);
    return bad;
}
