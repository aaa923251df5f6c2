/*
 * Raw SQLite rows of the node's checkpoint shape (see anchor.h).  The
 * table mirrors the node's checkpoints table where it matters for the
 * write: a rowid table with a unique (agent, seq) key holding the hash and
 * the body inline, so a row costs what a checkpoint row costs and nothing
 * more.
 */
#include "anchor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

static int exec(struct anchor *a, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(a->db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    snprintf(a->errmsg, sizeof a->errmsg, "raw sqlite: %s: %s", sql,
             msg ? msg : "?");
    sqlite3_free(msg);
    return -1;
}

int anchor_open(struct anchor *a, const char *path, uint32_t agents,
                uint32_t body_len)
{
    memset(a, 0, sizeof *a);
    a->agents = agents ? agents : 1;
    a->body_len = body_len;
    a->names = calloc(a->agents, sizeof *a->names);
    a->seq = calloc(a->agents, sizeof *a->seq);
    a->body = malloc(body_len ? body_len : 1);
    if (a->names == NULL || a->seq == NULL || a->body == NULL) {
        snprintf(a->errmsg, sizeof a->errmsg, "raw sqlite: out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < a->agents; i++)
        bu_agent_name("b", i, a->names[i], sizeof a->names[i]);
    for (uint32_t i = 0; i < body_len; i++)
        a->body[i] = (uint8_t)(i * 2654435761u >> 13);
    /* The same pragmas as the node's writer connection (state/store.c). */
    if (sqlite3_open_v2(path, &a->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(a->errmsg, sizeof a->errmsg, "raw sqlite: open '%s'", path);
        return -1;
    }
    if (exec(a, "PRAGMA journal_mode=WAL;") ||
        exec(a, "PRAGMA synchronous=FULL;") ||
        exec(a, "PRAGMA cache_size=-32768;") ||
        exec(a, "CREATE TABLE ckpt(agent TEXT NOT NULL, seq INTEGER NOT "
                "NULL, hash BLOB NOT NULL, body BLOB NOT NULL, "
                "PRIMARY KEY(agent, seq));"))
        return -1;
    if (sqlite3_prepare_v3(a->db,
                           "INSERT INTO ckpt(agent, seq, hash, body) "
                           "VALUES(?, ?, ?, ?)",
                           -1, SQLITE_PREPARE_PERSISTENT, &a->ins,
                           NULL) != SQLITE_OK) {
        snprintf(a->errmsg, sizeof a->errmsg, "raw sqlite: prepare: %s",
                 sqlite3_errmsg(a->db));
        return -1;
    }
    return 0;
}

void anchor_close(struct anchor *a)
{
    sqlite3_finalize(a->ins);
    sqlite3_close(a->db);
    free(a->names);
    free(a->seq);
    free(a->body);
    memset(a, 0, sizeof *a);
}

static int insert_row(struct anchor *a)
{
    uint32_t i = a->next;
    int rc;

    /* Every row differs, as every checkpoint does. */
    a->row++;
    memcpy(a->body, &a->row, a->body_len < 8 ? a->body_len : 8);
    memcpy(a->hash, &a->row, sizeof a->row);
    sqlite3_bind_text(a->ins, 1, a->names[i], -1, SQLITE_STATIC);
    sqlite3_bind_int64(a->ins, 2, (sqlite3_int64)++a->seq[i]);
    sqlite3_bind_blob(a->ins, 3, a->hash, sizeof a->hash, SQLITE_STATIC);
    sqlite3_bind_blob(a->ins, 4, a->body, (int)a->body_len, SQLITE_STATIC);
    rc = sqlite3_step(a->ins);
    sqlite3_reset(a->ins);
    a->next = i + 1 == a->agents ? 0 : i + 1;
    if (rc == SQLITE_DONE)
        return 0;
    snprintf(a->errmsg, sizeof a->errmsg, "raw sqlite: insert: %s",
             sqlite3_errmsg(a->db));
    return -1;
}

int anchor_insert(struct anchor *a, uint32_t batch, uint32_t ms,
                  uint64_t txns, struct ol__hist *h, struct anchor_run *out)
{
    uint64_t t0 = ol__now_us(), rows = 0, n = 0, now;
    double cpu0 = bu_cpu_s(), secs;

    memset(out, 0, sizeof *out);
    while ((now = ol__now_us()) - t0 < (uint64_t)ms * 1000 || n < txns) {
        /* BEGIN IMMEDIATE and COMMIT as text, as the node's store does. */
        if (exec(a, "BEGIN IMMEDIATE;"))
            return -1;
        for (uint32_t i = 0; i < batch; i++)
            if (insert_row(a) != 0) {
                sqlite3_exec(a->db, "ROLLBACK;", NULL, NULL, NULL);
                return -1;
            }
        if (exec(a, "COMMIT;"))
            return -1;
        if (h)
            ol__hist_add(h, ol__now_us() - now);
        rows += batch;
        n++;
    }
    secs = (double)(ol__now_us() - t0) / 1e6;
    out->rows_per_s = (double)rows / secs;
    out->cpu = (bu_cpu_s() - cpu0) / secs;
    out->txns = n;
    return 0;
}
