/*
 * The anchor the checkpoint benchmarks stand beside: raw SQLite inserting
 * rows of the node's checkpoint shape (agent, seq, 32-byte hash, body of a
 * given size) at the node's durability (WAL, synchronous=FULL, the same
 * cache size), with nothing else: no encoding, hashing, signing, threads
 * or loop.
 */
#ifndef OL_BENCH_ANCHOR_H
#define OL_BENCH_ANCHOR_H

#include <sqlite3.h>
#include <stdint.h>

#include "base/hist.h"

struct anchor {
    sqlite3 *db;
    sqlite3_stmt *ins;
    char (*names)[16]; /* "b000000".. as the benchmarks name agents */
    uint64_t *seq;     /* per agent */
    uint32_t agents;
    uint32_t next;     /* the agent the next row is for (round robin) */
    uint8_t *body;
    uint32_t body_len;
    uint8_t hash[32];
    uint64_t row;
    char errmsg[200];
};

struct anchor_run {
    double rows_per_s;
    double cpu;    /* process CPU seconds per wall second */
    uint64_t txns;
};

/* Create a fresh database at `path` for rows of `agents` agents with
 * `body_len`-byte bodies.  0, or -1 with a->errmsg (close it anyway). */
int anchor_open(struct anchor *a, const char *path, uint32_t agents,
                uint32_t body_len);
void anchor_close(struct anchor *a);

/* Insert `batch` rows per transaction until at least `ms` milliseconds
 * have passed and at least `txns` transactions have committed.  Every
 * transaction's duration (us) is added to `h` unless it is NULL.  0, or -1
 * with a->errmsg. */
int anchor_insert(struct anchor *a, uint32_t batch, uint32_t ms,
                  uint64_t txns, struct ol__hist *h, struct anchor_run *out);

#endif
