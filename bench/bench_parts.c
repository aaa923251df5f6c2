/*
 * bench_parts: where a checkpoint commit's time goes, part by part.
 *
 * bench_ckpt measures the node end to end; this takes the node's commit
 * path apart.  It runs the same calls the node makes, on one thread and
 * without the loop, and times each part of every group commit:
 *
 *   encode   the loop thread's share: ol__ckpt_encode + ol__ckpt_hash,
 *            once per checkpoint (step.c)
 *   seal     ol__entry_add_ckpts + ol__entry_w_finish: one Ed25519
 *            signature over the batch's hashes and the entry (local.c)
 *   apply    BEGIN + ol__sm_apply: decode, re-hash, the checkpoint, seal
 *            and retention rows (sm.c)
 *   commit   COMMIT: the WAL write and its fsync
 *
 * beside raw SQLite at the same durability, in the same process, on the
 * same filesystem (the anchor bench_ckpt uses: rows of the node's shape,
 * one transaction per batch).  The difference between the sum of the
 * parts and bench_ckpt's figure is the cost of the runtime around them:
 * thread hand-offs, the loop, the plugin.
 */
#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "anchor.h"
#include "bench_util.h"
#include "record/cmd.h"
#include "state/sm.h"
#include "base/err.h"
#include "base/hist.h"
#include "base/log.h"
#include "base/pack.h"
#include "state/store.h"

#define MAX_LIST 8

enum part { P_ENCODE, P_SEAL, P_APPLY, P_COMMIT, P_TOTAL, P_RAW, N_PARTS };

static const char *const part_name[N_PARTS] = {
    "encode", "seal", "apply", "commit", "total", "raw",
};

struct setup {
    struct ol__store store;
    struct ol__sm *sm;
    struct ol__key key;
    char errmsg[OL_ERRMSG_SIZE];
};

/* One agent's chain as the node would keep it. */
struct chain {
    char name[16];
    uint64_t seq;
    uint8_t head[OL_HASH_SIZE];
};

/* Pages this connection has written (to the WAL, in WAL mode) so far. */
static double wal_pages(sqlite3 *db)
{
    int cur = 0, hi = 0;

    sqlite3_db_status(db, SQLITE_DBSTATUS_CACHE_WRITE, &cur, &hi, 0);
    return cur;
}

static int commit_entry(struct setup *s, const struct ol__entry_w *w)
{
    struct ol__buf e;
    struct ol__effects fx;
    int rv;

    ol__buf_init(&e);
    ol__effects_init(&fx);
    rv = ol__entry_w_finish(w, &e);
    if (rv == 0)
        rv = ol__store_begin(&s->store);
    if (rv == 0)
        rv = ol__sm_apply(s->sm, e.base, e.len, 1, &fx);
    if (rv == 0)
        rv = ol__store_commit(&s->store);
    else
        ol__store_rollback(&s->store);
    ol__effects_free(&fx);
    ol__buf_close(&e);
    return rv;
}

/* A node's store with this process's key registered and `agents`
 * benchload agents spawned. */
static int setup_open(struct setup *s, const char *dir, uint32_t agents,
                      struct chain *ch)
{
    struct ol__sm_config smc = {.retain = 1000};
    struct ol__sm_node me;
    struct ol__entry_w w;
    char path[PATH_MAX];
    int rv;

    memset(s, 0, sizeof *s);
    snprintf(path, sizeof path, "%s/outlast.db", dir);
    rv = ol__key_generate(&s->key);
    if (rv == 0)
        rv = ol__store_open(&s->store, path, OL_STORE_WRITE_FULL);
    if (rv == 0)
        rv = ol__sm_open(&s->store, &smc, &s->sm, s->errmsg);
    if (rv != 0)
        return rv;
    memset(&me, 0, sizeof me);
    me.id = 1;
    memcpy(me.pk, s->key.pk, OL_PK_SIZE);
    rv = ol__sm_put_node(s->sm, &me);
    for (uint32_t i = 0; i < agents && rv == 0; i += 4096) {
        ol__entry_w_init(&w);
        for (uint32_t j = i; j < agents && j < i + 4096 && rv == 0; j++) {
            bu_agent_name("b", j, ch[j].name, sizeof ch[j].name);
            rv = ol__entry_add_spawn(&w, ol__random_id(), ch[j].name,
                                     "benchload", "\x80", 1, 1, 0);
        }
        if (rv == 0)
            rv = commit_entry(s, &w);
        ol__entry_w_close(&w);
    }
    return rv;
}

static void setup_close(struct setup *s)
{
    if (s->sm)
        ol__sm_close(s->sm);
    ol__store_close(&s->store);
    ol__key_close(&s->key);
}

/* The benchload state: {n: uint, blob: bin(size)}. */
static void make_state(struct ol__buf *st, uint64_t n, const uint8_t *blob,
                       uint32_t size)
{
    msgpack_packer pk;

    ol__buf_reset(st);
    msgpack_packer_init(&pk, st, ol__buf_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_uint64(&pk, n);
    msgpack_pack_str_with_body(&pk, "blob", 4);
    msgpack_pack_bin_with_body(&pk, blob, size);
}

struct batch_io {
    struct ol__blob *bodies;
    uint8_t *hashes;
    uint32_t n;
    double body_sum;
};

/* The loop thread's part: one checkpoint per agent, as step.c builds it. */
static int build(struct setup *s, struct chain *ch, uint32_t n,
                 uint8_t *blob, uint32_t size, struct batch_io *b)
{
    struct ol__buf st, body;
    struct ol__timer tm = {1, 0};
    struct ol__ckpt c;
    size_t len;
    int rv = 0;

    ol__buf_init(&st);
    for (uint32_t i = 0; i < n && rv == 0; i++) {
        struct chain *a = &ch[i];

        memcpy(blob, &a->seq, size < 8 ? size : 8);
        make_state(&st, a->seq + 1, blob, size);
        memset(&c, 0, sizeof c);
        c.agent = a->name;
        c.epoch = 1;
        c.seq = a->seq + 1;
        memcpy(c.prev_hash, a->head, OL_HASH_SIZE);
        c.time_ms = ol__wall_ms();
        c.plugin.kind = (char *)"benchload";
        c.plugin.version = (char *)"1.0.0";
        memcpy(c.signer, s->key.pk, OL_PK_SIZE);
        c.state = st.base;
        c.state_len = (uint32_t)st.len;
        tm.due_ms = c.time_ms;
        c.timers = &tm;
        c.n_timers = 1;
        ol__buf_init(&body);
        rv = ol__ckpt_encode(&c, &body);
        if (rv != 0) {
            ol__buf_close(&body);
            break;
        }
        ol__ckpt_hash(body.base, body.len, b->hashes + i * OL_HASH_SIZE);
        b->bodies[i].p = ol__buf_steal(&body, &len);
        b->bodies[i].len = (uint32_t)len;
        b->body_sum += (double)len;
        a->seq++;
        memcpy(a->head, b->hashes + i * OL_HASH_SIZE, OL_HASH_SIZE);
    }
    ol__buf_close(&st);
    b->n = n;
    return rv;
}

static void free_bodies(struct batch_io *b)
{
    for (uint32_t i = 0; i < b->n; i++)
        free((void *)b->bodies[i].p);
    b->n = 0;
}

struct result {
    uint64_t p50[N_PARTS]; /* per batch, us */
    double mean[N_PARTS];
    double body_avg;
    double pages, raw_pages; /* pages written to the WAL per batch */
    double node_rows_per_s; /* batch / total */
    double raw_rows_per_s;
};

/* What run_path keeps between group commits. */
struct path {
    struct setup s;
    struct chain *ch;
    struct batch_io b;
    uint8_t *blob;
    struct ol__buf e;
    uint32_t batch, size;
};

/* One group commit as the node makes it, with the time at the start of
 * each part in t[0..3] and the end in t[4]. */
static int commit_batch(struct path *p, uint64_t t[5])
{
    struct ol__entry_w w;
    struct ol__effects fx;
    int rv;

    t[0] = ol__now_us();
    rv = build(&p->s, p->ch, p->batch, p->blob, p->size, &p->b);
    t[1] = ol__now_us();
    ol__entry_w_init(&w);
    ol__buf_reset(&p->e);
    ol__effects_init(&fx);
    if (rv == 0)
        rv = ol__entry_add_ckpts(&w, &p->s.key, ol__wall_ms(), p->b.bodies,
                                 p->b.hashes, p->b.n);
    if (rv == 0)
        rv = ol__entry_w_finish(&w, &p->e);
    t[2] = ol__now_us();
    if (rv == 0)
        rv = ol__store_begin(&p->s.store);
    if (rv == 0)
        rv = ol__sm_apply(p->s.sm, p->e.base, p->e.len, 1, &fx);
    t[3] = ol__now_us();
    if (rv == 0)
        rv = ol__store_commit(&p->s.store);
    t[4] = ol__now_us();
    if (rv != 0)
        fprintf(stderr, "bench_parts: commit: %s %s\n", ol_strerror(rv),
                p->s.store.errmsg);
    ol__effects_free(&fx);
    ol__entry_w_close(&w);
    free_bodies(&p->b);
    return rv;
}

static void path_free(struct path *p)
{
    free(p->ch);
    free(p->blob);
    free(p->b.bodies);
    free(p->b.hashes);
}

static int run_path(const char *dir, uint32_t batch, uint32_t size,
                    uint32_t warm, uint32_t iters, struct result *r)
{
    struct ol__hist h[N_PARTS];
    struct path p = {.batch = batch, .size = size};
    uint64_t sum[N_PARTS] = {0};
    int rv;

    p.ch = calloc(batch, sizeof *p.ch);
    p.blob = calloc(1, size ? size : 1);
    p.b.bodies = calloc(batch, sizeof *p.b.bodies);
    p.b.hashes = calloc(batch, OL_HASH_SIZE);
    if (p.ch == NULL || p.blob == NULL || p.b.bodies == NULL ||
        p.b.hashes == NULL) {
        path_free(&p);
        return OL_ENOMEM;
    }
    for (int i = 0; i < N_PARTS; i++)
        ol__hist_reset(&h[i]);
    rv = setup_open(&p.s, dir, batch, p.ch);
    if (rv != 0)
        fprintf(stderr, "bench_parts: setup: %s %s\n", ol_strerror(rv),
                p.s.errmsg);
    ol__buf_init(&p.e);
    for (uint32_t it = 0; it < warm + iters && rv == 0; it++) {
        uint64_t t[5];

        if (it == warm)
            r->pages = wal_pages(p.s.store.db);
        rv = commit_batch(&p, t);
        if (it < warm) {
            p.b.body_sum = 0;
            continue;
        }
        for (int k = P_ENCODE; k <= P_COMMIT; k++) {
            ol__hist_add(&h[k], t[k + 1] - t[k]);
            sum[k] += t[k + 1] - t[k];
        }
        ol__hist_add(&h[P_TOTAL], t[4] - t[0]);
        sum[P_TOTAL] += t[4] - t[0];
    }
    r->pages = (wal_pages(p.s.store.db) - r->pages) / iters;
    for (int k = P_ENCODE; k <= P_TOTAL; k++) {
        r->p50[k] = ol__hist_quantile(&h[k], 0.5);
        r->mean[k] = iters ? (double)sum[k] / iters : 0;
    }
    r->body_avg = p.b.body_sum / ((double)iters * batch);
    r->node_rows_per_s =
        sum[P_TOTAL] ? (double)batch * iters / ((double)sum[P_TOTAL] / 1e6)
                     : 0;
    ol__buf_close(&p.e);
    setup_close(&p.s);
    path_free(&p);
    return rv;
}

/* The anchor: rows of the node's shape, `batch` per transaction. */
static int run_raw(const char *dir, uint32_t batch, uint32_t body_len,
                   uint32_t warm, uint32_t iters, struct result *r)
{
    struct anchor a;
    struct anchor_run run;
    struct ol__hist h;
    char path[PATH_MAX];
    int rv;

    ol__hist_reset(&h);
    snprintf(path, sizeof path, "%s/raw.db", dir);
    rv = anchor_open(&a, path, batch, body_len);
    if (rv == 0)
        rv = anchor_insert(&a, batch, 0, warm, NULL, &run);
    r->raw_pages = rv == 0 ? wal_pages(a.db) : 0;
    if (rv == 0)
        rv = anchor_insert(&a, batch, 0, iters, &h, &run);
    r->raw_pages = rv == 0 ? (wal_pages(a.db) - r->raw_pages) / iters : 0;
    if (rv == 0) {
        r->p50[P_RAW] = ol__hist_quantile(&h, 0.5);
        r->mean[P_RAW] = (double)h.sum_us / (double)h.count;
        r->raw_rows_per_s = run.rows_per_s;
    } else {
        fprintf(stderr, "bench_parts: %s\n", a.errmsg);
    }
    anchor_close(&a);
    return rv;
}

static int parse_list(const char *s, uint32_t *out, uint32_t *n)
{
    char *end;

    *n = 0;
    while (*s && *n < MAX_LIST) {
        unsigned long v = strtoul(s, &end, 10);

        if (end == s || v == 0 || v > 65536 || (*end && *end != ','))
            return -1;
        out[(*n)++] = (uint32_t)v;
        s = *end == ',' ? end + 1 : end;
    }
    return *n ? 0 : -1;
}

int main(int argc, char **argv)
{
    uint32_t batches[MAX_LIST] = {1, 5000}, n_batches = 2;
    uint32_t sizes[MAX_LIST] = {256, 1024, 16384}, n_sizes = 3;
    int failed = 0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if ((strcmp(argv[i], "--batches") == 0 &&
             parse_list(argv[i + 1], batches, &n_batches) == 0) ||
            (strcmp(argv[i], "--sizes") == 0 &&
             parse_list(argv[i + 1], sizes, &n_sizes) == 0))
            continue;
        fprintf(stderr, "usage: bench_parts [--batches 1,5000] "
                        "[--sizes 256,1024,16384]\n");
        return 2;
    }
    if (argc % 2 == 0) {
        fprintf(stderr, "bench_parts: bad arguments\n");
        return 2;
    }
    printf("# bench_parts: the node's commit path run synchronously, part "
           "by part (p50 per batch, us), beside raw SQLite rows of the same "
           "shape, same durability (WAL, synchronous=FULL), same process\n");
    printf("%-6s %-6s %-6s", "batch", "state", "body");
    for (int p = 0; p < N_PARTS; p++)
        printf(" %9s", part_name[p]);
    printf(" %7s %7s %11s %11s %6s\n", "pages", "r_pages", "path_rows/s",
           "raw_rows/s", "ratio");
    for (uint32_t bi = 0; bi < n_batches; bi++)
        for (uint32_t si = 0; si < n_sizes; si++) {
            uint32_t batch = batches[bi], size = sizes[si];
            /* Enough single-row commits that retention (1,000 per agent)
             * is pruning, as it is in a long-running node. */
            uint32_t warm = batch == 1 ? 1200 : 2;
            uint32_t iters = batch == 1 ? 1000 : (size >= 16384 ? 5 : 10);
            struct result r;
            char dir[PATH_MAX];

            memset(&r, 0, sizeof r);
            if (bu_tmpdir(dir, sizeof dir) != 0) {
                fprintf(stderr, "bench_parts: temp dir: %s\n",
                        strerror(errno));
                return 1;
            }
            if (run_path(dir, batch, size, warm, iters, &r) != 0 ||
                run_raw(dir, batch, (uint32_t)(r.body_avg + 0.5),
                        batch == 1 ? 1200 : 2, iters, &r) != 0)
                failed = 1;
            bu_rmrf(dir);
            printf("%-6u %-6u %-6.0f", batch, size, r.body_avg);
            for (int p = 0; p < N_PARTS; p++)
                printf(" %9" PRIu64, r.p50[p]);
            printf(" %7.1f %7.1f %11.0f %11.0f %6.2f\n", r.pages, r.raw_pages,
                   r.node_rows_per_s,
                   r.raw_rows_per_s,
                   r.raw_rows_per_s ? r.node_rows_per_s / r.raw_rows_per_s
                                    : 0);
            fflush(stdout);
        }
    return failed;
}
