/*
 * Cross-node verification: every node applies the same log, so every node
 * must hold the same checkpoint for any (agent, seq) they both have, and
 * the checkpoints of one (agent, epoch) must all come from one signer (the
 * node that owned the agent under that epoch).  Anything else is
 * divergence, which outlast reports and never resolves by picking a side.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/map.h"
#include "record/seal.h"
#include "verify.h"

/* The signer of a seal, cached per store by the seal's row id. */
struct signer {
    char key[24]; /* the id in decimal */
    uint8_t pk[OL_PK_SIZE];
};

static void free_values(struct ol__map *m)
{
    void *v;

    for (size_t i = 0; ol__map_next(m, &i, &v);)
        free(v);
    ol__map_close(m);
}

static int seal_signer(sqlite3_stmt *st, struct ol__map *cache, int64_t id,
                       uint8_t out[OL_PK_SIZE])
{
    char key[24];
    struct signer *sg;
    struct ol__seal s;
    int found = 0;

    snprintf(key, sizeof key, "%" PRId64, id);
    sg = ol__map_get(cache, key);
    if (sg != NULL) {
        memcpy(out, sg->pk, OL_PK_SIZE);
        return 0;
    }
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) == SQLITE_ROW &&
        ol__seal_parse(sqlite3_column_blob(st, 0),
                       (size_t)sqlite3_column_bytes(st, 0), &s) == 0) {
        memcpy(out, s.signer, OL_PK_SIZE);
        found = 1;
    }
    sqlite3_reset(st);
    if (!found)
        return OL_ENOTFOUND;
    sg = malloc(sizeof *sg);
    if (sg == NULL)
        return OL_ENOMEM;
    memcpy(sg->key, key, sizeof key);
    memcpy(sg->pk, out, OL_PK_SIZE);
    if (ol__map_put(cache, sg->key, sg) != 0) {
        free(sg);
        return OL_ENOMEM;
    }
    return 0;
}

/* The first signer seen for each (agent, epoch). */
struct epoch_owner {
    char key[OL_NAME_MAX + 24];
    uint8_t pk[OL_PK_SIZE];
    size_t node;
    int reported; /* a second signer was reported once already */
};

struct cluster_walk {
    sqlite3 *const *dbs;
    const char *const *names;
    size_t n;
    ol__verify_cb cb;
    void *data;
    struct ol__verify_report *rep;
    struct ol__map owners; /* "agent/epoch" -> struct epoch_owner */
    sqlite3_stmt **peer;   /* per store: its hash at (agent, seq) */
};

static void report(struct cluster_walk *w, const char *agent, uint64_t seq,
                   const char *msg)
{
    w->rep->bad++;
    if (w->cb)
        w->cb(w->data, agent, seq, msg);
}

/* Divergence store i recorded itself (found installing a snapshot). */
static int report_evidence(struct cluster_walk *w, size_t i)
{
    sqlite3_stmt *ev;
    char msg[256];

    if (sqlite3_prepare_v2(w->dbs[i], "SELECT agent, seq, note FROM evidence",
                           -1, &ev, NULL) != SQLITE_OK)
        return OL_EIO;
    while (sqlite3_step(ev) == SQLITE_ROW) {
        snprintf(msg, sizeof msg, "%s recorded divergence evidence: %s",
                 w->names[i], (const char *)sqlite3_column_text(ev, 2));
        report(w, (const char *)sqlite3_column_text(ev, 0),
               (uint64_t)sqlite3_column_int64(ev, 1), msg);
    }
    sqlite3_finalize(ev);
    return 0;
}

/* Same (agent, seq) on the stores after store i. */
static void compare_peers(struct cluster_walk *w, size_t i, const char *agent,
                          uint64_t seq, const void *hash)
{
    char msg[256];

    for (size_t j = i + 1; j < w->n; j++) {
        sqlite3_stmt *q = w->peer[j];

        if (q == NULL)
            continue;
        sqlite3_bind_text(q, 1, agent, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, (sqlite3_int64)seq);
        if (sqlite3_step(q) == SQLITE_ROW &&
            sqlite3_column_bytes(q, 0) == OL_HASH_SIZE &&
            memcmp(sqlite3_column_blob(q, 0), hash, OL_HASH_SIZE) != 0) {
            snprintf(msg, sizeof msg, "%s and %s hold different checkpoints",
                     w->names[i], w->names[j]);
            report(w, agent, seq, msg);
        }
        sqlite3_reset(q);
    }
}

/* The checkpoints of one (agent, epoch) all come from one signer. */
static int check_owner(struct cluster_walk *w, size_t i, const char *agent,
                       uint64_t seq, uint64_t epoch,
                       const uint8_t pk[OL_PK_SIZE])
{
    char key[OL_NAME_MAX + 24], msg[256], a[OL_PK_HEX_SIZE], b[OL_PK_HEX_SIZE];
    struct epoch_owner *eo;

    snprintf(key, sizeof key, "%s/%" PRIu64, agent, epoch);
    eo = ol__map_get(&w->owners, key);
    if (eo == NULL) {
        eo = calloc(1, sizeof *eo);
        if (eo == NULL)
            return OL_ENOMEM;
        snprintf(eo->key, sizeof eo->key, "%s", key);
        memcpy(eo->pk, pk, OL_PK_SIZE);
        eo->node = i;
        if (ol__map_put(&w->owners, eo->key, eo) != 0) {
            free(eo);
            return OL_ENOMEM;
        }
    } else if (memcmp(eo->pk, pk, OL_PK_SIZE) != 0 && !eo->reported) {
        ol__pk_hex(eo->pk, a);
        ol__pk_hex(pk, b);
        eo->reported = 1;
        snprintf(msg, sizeof msg,
                 "epoch %" PRIu64 " has checkpoints signed by two "
                 "nodes (%.12s on %s, %.12s on %s)",
                 epoch, a, w->names[eo->node], b, w->names[i]);
        report(w, agent, seq, msg);
    }
    return 0;
}

/* Every checkpoint of store i, in chain order. */
static int walk_store(struct cluster_walk *w, size_t i)
{
    struct ol__map signers;
    sqlite3_stmt *rows = NULL, *seal = NULL;
    int rv = 0;

    ol__map_init(&signers);
    if (sqlite3_prepare_v2(w->dbs[i],
                           "SELECT agent, seq, epoch, hash, seal FROM "
                           "checkpoints ORDER BY agent, seq",
                           -1, &rows, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(w->dbs[i], "SELECT body FROM seals WHERE id = ?",
                           -1, &seal, NULL) != SQLITE_OK ||
        report_evidence(w, i) != 0)
        rv = OL_EIO;
    while (rv == 0 && sqlite3_step(rows) == SQLITE_ROW) {
        const char *agent = (const char *)sqlite3_column_text(rows, 0);
        uint64_t seq = (uint64_t)sqlite3_column_int64(rows, 1);
        uint8_t pk[OL_PK_SIZE];

        w->rep->checkpoints++;
        compare_peers(w, i, agent, seq, sqlite3_column_blob(rows, 3));
        /* The per-node walk reports missing seals. */
        if (seal_signer(seal, &signers, sqlite3_column_int64(rows, 4), pk) ==
            0)
            rv = check_owner(w, i, agent, seq,
                             (uint64_t)sqlite3_column_int64(rows, 2), pk);
    }
    sqlite3_finalize(rows);
    sqlite3_finalize(seal);
    free_values(&signers);
    return rv;
}

int ol__verify_cluster(sqlite3 *const *dbs, const char *const *names,
                       size_t n, ol__verify_cb cb, void *data,
                       struct ol__verify_report *rep)
{
    struct cluster_walk w = {.dbs = dbs, .names = names, .n = n, .cb = cb,
                             .data = data, .rep = rep};
    int rv = 0;

    memset(rep, 0, sizeof *rep);
    ol__map_init(&w.owners);
    w.peer = calloc(n ? n : 1, sizeof *w.peer);
    if (w.peer == NULL)
        return OL_ENOMEM;
    /* A store whose lookup cannot be prepared is skipped as a peer. */
    for (size_t j = 0; j < n; j++)
        if (sqlite3_prepare_v2(dbs[j],
                               "SELECT hash FROM checkpoints WHERE "
                               "agent = ? AND seq = ?",
                               -1, &w.peer[j], NULL) != SQLITE_OK) {
            sqlite3_finalize(w.peer[j]);
            w.peer[j] = NULL;
        }
    for (size_t i = 0; i < n && rv == 0; i++)
        rv = walk_store(&w, i);
    for (size_t j = 0; j < n; j++)
        sqlite3_finalize(w.peer[j]);
    free(w.peer);
    free_values(&w.owners);
    return rv;
}
