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

/* The signer of seal `id` in `db`, cached per store. */
struct signer_cache {
    int64_t *ids;
    uint8_t (*pks)[OL_PK_SIZE];
    size_t n, cap;
};

static int seal_signer(sqlite3 *db, sqlite3_stmt *st, struct signer_cache *c,
                       int64_t id, uint8_t out[OL_PK_SIZE])
{
    struct ol__seal s;
    int found = 0;

    for (size_t i = 0; i < c->n; i++)
        if (c->ids[i] == id) {
            memcpy(out, c->pks[i], OL_PK_SIZE);
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
    (void)db;
    if (!found)
        return OL_ENOTFOUND;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        int64_t *ids = realloc(c->ids, cap * sizeof *ids);
        uint8_t (*pks)[OL_PK_SIZE];

        if (ids == NULL)
            return OL_ENOMEM;
        c->ids = ids;
        pks = realloc(c->pks, cap * sizeof *pks);
        if (pks == NULL)
            return OL_ENOMEM;
        c->pks = pks;
        c->cap = cap;
    }
    c->ids[c->n] = id;
    memcpy(c->pks[c->n++], out, OL_PK_SIZE);
    return 0;
}

/* The first signer seen for each (agent, epoch). */
struct epoch_owner {
    char key[OL_NAME_MAX + 24];
    uint8_t pk[OL_PK_SIZE];
    size_t node;
    int reported; /* a second signer was reported once already */
};

int ol__verify_cluster(sqlite3 *const *dbs, const char *const *names,
                       size_t n, ol__verify_cb cb, void *data,
                       struct ol__verify_report *rep)
{
    struct ol__map owners;
    char msg[256];
    int rv = 0;

    memset(rep, 0, sizeof *rep);
    ol__map_init(&owners);
    for (size_t i = 0; i < n && rv == 0; i++) {
        struct signer_cache cache = {0};
        sqlite3_stmt *rows = NULL, *seal = NULL, *ev = NULL;

        if (sqlite3_prepare_v2(dbs[i],
                               "SELECT agent, seq, epoch, hash, seal FROM "
                               "checkpoints ORDER BY agent, seq",
                               -1, &rows, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(dbs[i], "SELECT body FROM seals WHERE id = ?",
                               -1, &seal, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(dbs[i], "SELECT agent, seq, note FROM evidence",
                               -1, &ev, NULL) != SQLITE_OK) {
            rv = OL_EIO;
            goto next;
        }
        while (sqlite3_step(ev) == SQLITE_ROW) {
            rep->bad++;
            snprintf(msg, sizeof msg, "%s recorded divergence evidence: %s",
                     names[i], (const char *)sqlite3_column_text(ev, 2));
            if (cb)
                cb(data, (const char *)sqlite3_column_text(ev, 0),
                   (uint64_t)sqlite3_column_int64(ev, 1), msg);
        }
        while (sqlite3_step(rows) == SQLITE_ROW) {
            const char *agent = (const char *)sqlite3_column_text(rows, 0);
            uint64_t seq = (uint64_t)sqlite3_column_int64(rows, 1);
            uint64_t epoch = (uint64_t)sqlite3_column_int64(rows, 2);
            const void *hash = sqlite3_column_blob(rows, 3);
            struct epoch_owner *eo;
            uint8_t pk[OL_PK_SIZE];
            char key[OL_NAME_MAX + 24];

            rep->checkpoints++;
            /* Same (agent, seq) on the nodes after this one. */
            for (size_t j = i + 1; j < n; j++) {
                sqlite3_stmt *q;

                if (sqlite3_prepare_v2(dbs[j],
                                       "SELECT hash FROM checkpoints WHERE "
                                       "agent = ? AND seq = ?",
                                       -1, &q, NULL) != SQLITE_OK)
                    continue;
                sqlite3_bind_text(q, 1, agent, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(q, 2, (sqlite3_int64)seq);
                if (sqlite3_step(q) == SQLITE_ROW &&
                    sqlite3_column_bytes(q, 0) == OL_HASH_SIZE &&
                    memcmp(sqlite3_column_blob(q, 0), hash, OL_HASH_SIZE) !=
                        0) {
                    rep->bad++;
                    snprintf(msg, sizeof msg,
                             "%s and %s hold different checkpoints", names[i],
                             names[j]);
                    if (cb)
                        cb(data, agent, seq, msg);
                }
                sqlite3_finalize(q);
            }
            if (seal_signer(dbs[i], seal, &cache,
                            sqlite3_column_int64(rows, 4), pk) != 0)
                continue; /* the per-node walk reports missing seals */
            snprintf(key, sizeof key, "%s/%" PRIu64, agent, epoch);
            eo = ol__map_get(&owners, key);
            if (eo == NULL) {
                eo = calloc(1, sizeof *eo);
                if (eo == NULL) {
                    rv = OL_ENOMEM;
                    break;
                }
                snprintf(eo->key, sizeof eo->key, "%s", key);
                memcpy(eo->pk, pk, OL_PK_SIZE);
                eo->node = i;
                if (ol__map_put(&owners, eo->key, eo) != 0) {
                    free(eo);
                    rv = OL_ENOMEM;
                    break;
                }
            } else if (memcmp(eo->pk, pk, OL_PK_SIZE) != 0 && !eo->reported) {
                char a[OL_PK_HEX_SIZE], b[OL_PK_HEX_SIZE];

                ol__pk_hex(eo->pk, a);
                ol__pk_hex(pk, b);
                eo->reported = 1;
                rep->bad++;
                snprintf(msg, sizeof msg,
                         "epoch %" PRIu64 " has checkpoints signed by two "
                         "nodes (%.12s on %s, %.12s on %s)",
                         epoch, a, names[eo->node], b, names[i]);
                if (cb)
                    cb(data, agent, seq, msg);
            }
        }
    next:
        sqlite3_finalize(rows);
        sqlite3_finalize(seal);
        sqlite3_finalize(ev);
        free(cache.ids);
        free(cache.pks);
    }
    {
        void *v;

        for (size_t i = 0; ol__map_next(&owners, &i, &v);)
            free(v);
        ol__map_close(&owners);
    }
    return rv;
}
