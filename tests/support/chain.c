/*
 * Test support: see chain.h.
 */
#include "chain.h"

#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "record/ckpt.h"
#include "base/err.h"

static int64_t state_int(const struct ol__ckpt *c, const char *key,
                         int *found)
{
    msgpack_unpacked u;
    int64_t v = 0;
    size_t klen = strlen(key);

    *found = 0;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, (const char *)c->state, c->state_len,
                            NULL) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &u.data.via.map.ptr[i];

            if (kv->key.type == MSGPACK_OBJECT_STR &&
                kv->key.via.str.size == klen &&
                memcmp(kv->key.via.str.ptr, key, klen) == 0 &&
                kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                v = (int64_t)kv->val.via.u64;
                *found = 1;
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    return v;
}

int td_chain_read(sqlite3 *db, const char *agent, const char *counter,
                  struct td_chain *out)
{
    sqlite3_stmt *st;
    uint8_t prev[OL_HASH_SIZE];
    uint64_t prev_seq = 0;
    int have_prev = 0;

    memset(out, 0, sizeof *out);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT seq, hash, body, flags FROM "
                                    "checkpoints WHERE agent = ? ORDER BY seq",
                                    -1, &st, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(st, 1, agent, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        int snap = sqlite3_column_int(st, 3) & 1;
        struct ol__ckpt c;
        char err[OL_ERRMSG_SIZE];
        int found, b;

        if (out->rows == 0)
            out->first_seq = seq;
        out->last_seq = seq;
        out->rows++;
        if (have_prev && seq != prev_seq + 1 && !snap)
            out->gaps++;
        if (ol__ckpt_decode(sqlite3_column_blob(st, 2),
                            (size_t)sqlite3_column_bytes(st, 2), &c,
                            err) != 0) {
            out->undecodable++;
            have_prev = 0;
            continue;
        }
        if (have_prev && seq == prev_seq + 1 &&
            memcmp(c.prev_hash, prev, OL_HASH_SIZE) != 0)
            out->broken++;
        memcpy(prev, sqlite3_column_blob(st, 1), OL_HASH_SIZE);
        prev_seq = seq;
        have_prev = sqlite3_column_bytes(st, 1) == OL_HASH_SIZE;
        if (counter) {
            int64_t v = state_int(&c, counter, &found);

            if (found && out->rows > 1 && v < out->counter)
                out->went_back++;
            if (found)
                out->counter = v;
        }
        for (b = 0; b < out->n_builds; b++)
            if (memcmp(out->hashes[b], c.plugin.so_hash, 32) == 0)
                break;
        if (b < out->n_builds && b != out->n_builds - 1)
            out->build_went_back++;
        if (b == out->n_builds && b < TD_CHAIN_BUILDS) {
            memcpy(out->hashes[b], c.plugin.so_hash, 32);
            snprintf(out->versions[b], sizeof out->versions[b], "%s",
                     c.plugin.version);
            out->n_builds++;
        }
        ol__ckpt_free(&c);
    }
    sqlite3_finalize(st);
    return out->rows ? 0 : -1;
}

struct seen_row {
    char agent[65];
    int64_t seq;
    uint8_t hash[32];
};

struct td_seen {
    struct seen_row *rows;
    size_t n, cap;
};

struct td_seen *td_seen_new(void)
{
    struct td_seen *s = calloc(1, sizeof *s);

    cr_assert_not_null(s);
    return s;
}

void td_seen_free(struct td_seen *s)
{
    if (s == NULL)
        return;
    free(s->rows);
    free(s);
}

void td_seen_observe(struct td_seen *s, sqlite3 *db)
{
    sqlite3_stmt *st;

    if (sqlite3_prepare_v2(db,
                           "SELECT agent, seq, hash FROM checkpoints c WHERE "
                           "seq = (SELECT max(seq) FROM checkpoints WHERE "
                           "agent = c.agent)",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct seen_row *r;

        if (sqlite3_column_bytes(st, 2) != 32)
            continue;
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 256;
            s->rows = realloc(s->rows, s->cap * sizeof *s->rows);
            cr_assert_not_null(s->rows);
        }
        r = &s->rows[s->n++];
        snprintf(r->agent, sizeof r->agent, "%s", sqlite3_column_text(st, 0));
        r->seq = sqlite3_column_int64(st, 1);
        memcpy(r->hash, sqlite3_column_blob(st, 2), 32);
    }
    sqlite3_finalize(st);
}

int td_seen_check(const struct td_seen *s, sqlite3 *db)
{
    sqlite3_stmt *st;
    int bad = 0;

    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT hash FROM checkpoints WHERE "
                                    "agent = ? AND seq = ?",
                                    -1, &st, NULL),
                 SQLITE_OK);
    for (size_t i = 0; i < s->n; i++) {
        const struct seen_row *r = &s->rows[i];
        int ok;

        sqlite3_bind_text(st, 1, r->agent, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, r->seq);
        ok = sqlite3_step(st) == SQLITE_ROW &&
             sqlite3_column_bytes(st, 0) == 32 &&
             memcmp(sqlite3_column_blob(st, 0), r->hash, 32) == 0;
        sqlite3_reset(st);
        if (!ok) {
            bad++;
            cr_expect(ok, "committed checkpoint '%s' seq %lld is lost or "
                          "changed",
                      r->agent, (long long)r->seq);
        }
    }
    sqlite3_finalize(st);
    return bad;
}

size_t td_rows(struct td *d, struct td_row **out)
{
    sqlite3 *db = td_db(d);
    sqlite3_stmt *st;
    size_t n = 0, cap = 1024;
    struct td_row *r = malloc(cap * sizeof *r);

    cr_assert_not_null(r);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT agent, seq, epoch, hash FROM "
                                        "checkpoints",
                                    -1, &st, NULL),
                 SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            r = realloc(r, (cap *= 2) * sizeof *r);
            cr_assert_not_null(r);
        }
        snprintf(r[n].agent, sizeof r[n].agent, "%s",
                 sqlite3_column_text(st, 0));
        r[n].seq = sqlite3_column_int64(st, 1);
        r[n].epoch = sqlite3_column_int64(st, 2);
        cr_assert_eq(sqlite3_column_bytes(st, 3), 32);
        memcpy(r[n].hash, sqlite3_column_blob(st, 3), 32);
        n++;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    *out = r;
    return n;
}
