/* Unit tests for the verifier: single stores (hash, seal, chain, gaps) and
 * the cross-node comparison. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state/verify.h"
#include "tests/support/daemon.h"
#include "db_fixture.h"

static char dir[64], a_path[128], b_path[128];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ol-verify-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(a_path, sizeof a_path, "%s/a.db", dir);
    snprintf(b_path, sizeof b_path, "%s/b.db", dir);
    fx_build_db(a_path);
}

static void teardown(void)
{
    char cmd[128];

    ol__key_close(&fx_key);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(verify, .init = setup, .fini = teardown);

struct seen {
    int n;
    char first[512];
    char last[512];
    char all[4096];
    uint64_t seq;
};

static void collect(void *data, const char *agent, uint64_t seq,
                    const char *problem)
{
    struct seen *s = data;
    size_t len = strlen(s->all);

    s->n++;
    s->seq = seq;
    snprintf(s->last, sizeof s->last, "'%s' %llu: %s", agent,
             (unsigned long long)seq, problem);
    if (s->n == 1)
        snprintf(s->first, sizeof s->first, "%s", s->last);
    snprintf(s->all + len, sizeof s->all - len, "%s\n", s->last);
}

static sqlite3 *open_ro(const char *path)
{
    sqlite3 *db;

    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL),
                 SQLITE_OK);
    return db;
}

static void exec(const char *path, const char *sql)
{
    sqlite3 *db = open_ro(path);

    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* Verify a.db, collecting its problems in s; the verifier must run. */
static void verify_a(struct seen *s, struct ol__verify_report *r)
{
    sqlite3 *db = open_ro(a_path);

    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, s, r), 0);
    sqlite3_close(db);
}

Test(verify, clean_store_verifies)
{
    struct ol__verify_report r;
    struct seen s = {0};

    verify_a(&s, &r);
    cr_expect_eq(r.bad, 0, "%s", s.last);
    cr_expect_eq(r.checkpoints, 3);
    cr_expect_eq(r.agents, 1);
    cr_expect_eq(r.seals, 3);
}

Test(verify, flipped_body_byte_is_named)
{
    struct ol__verify_report r;
    struct seen s = {0};

    fx_flip_body_byte(a_path, "ticker", 2, 10);
    verify_a(&s, &r);
    cr_expect_eq(r.bad, 1);
    cr_expect_eq(s.seq, 2, "%s", s.last);
    cr_expect(strstr(s.last, "tampered") != NULL, "%s", s.last);
}

Test(verify, forged_seal_signature_is_refused)
{
    struct ol__verify_report r;
    struct seen s = {0};

    exec(a_path, "UPDATE seals SET sig = zeroblob(64) WHERE id = "
                 "(SELECT seal FROM checkpoints WHERE seq = 3)");
    verify_a(&s, &r);
    cr_expect_eq(r.bad, 1);
    cr_expect(strstr(s.last, "signature does not verify") != NULL, "%s",
              s.last);
}

Test(verify, unknown_signer_is_refused_unless_trusted)
{
    struct ol__verify_report r;
    struct seen s = {0};
    sqlite3 *db;
    uint8_t pk[1][OL_PK_SIZE];

    memcpy(pk[0], fx_key.pk, OL_PK_SIZE);
    exec(a_path, "DELETE FROM nodes");
    db = open_ro(a_path);
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &r), 0);
    cr_expect_eq(r.bad, 3);
    cr_expect(strstr(s.last, "not a node's") != NULL, "%s", s.last);
    s.n = 0;
    cr_assert_eq(ol__verify_store(db, NULL, (const uint8_t(*)[32])pk, 1,
                                  collect, &s, &r), 0);
    cr_expect_eq(r.bad, 0, "%s", s.last);
    sqlite3_close(db);
}

Test(verify, missing_row_is_a_gap_unless_a_snapshot_explains_it)
{
    struct ol__verify_report r;
    struct seen s = {0};

    /* Seq 2's row goes; its seal stays and still counts it. */
    exec(a_path, "DELETE FROM checkpoints WHERE seq = 2");
    verify_a(&s, &r);
    cr_expect_eq(r.bad, 2, "%s", s.last);
    cr_expect(strstr(s.first, "seqs 2..2 are missing") != NULL, "%s",
              s.first);
    cr_expect(strstr(s.last, "only 0 are") != NULL, "%s", s.last);
    /* A snapshot install leaves a gap without the seals of what it
     * skipped. */
    exec(a_path, "UPDATE checkpoints SET flags = 1 WHERE seq = 3;"
                 "DELETE FROM seals WHERE id NOT IN (SELECT seal FROM "
                 "checkpoints)");
    verify_a(&s, &r);
    cr_expect_eq(r.bad, 0, "%s", s.last);
    cr_expect_eq(r.gaps, 1);
}

/* A snapshot install that meets a divergent row keeps it as evidence and
 * stores the cluster's: the seal that signed the old row has one row less,
 * and that is accounted for, not a truncation. */
Test(verify, a_row_kept_as_evidence_is_not_a_truncation)
{
    struct ol__verify_report r;
    struct seen s = {0};

    exec(a_path, "INSERT INTO evidence(agent, seq, time_ms, kind, "
                 "stored_hash, other_hash, other_body, note) SELECT agent, "
                 "seq, 0, 'divergence', zeroblob(32), hash, body, 'test' "
                 "FROM checkpoints WHERE seq = 2;"
                 "DELETE FROM checkpoints WHERE seq = 2");
    verify_a(&s, &r);
    cr_expect_eq(r.bad, 1, "only the gap: %s", s.all);
    cr_expect(strstr(s.all, "seqs 2..2 are missing") != NULL, "%s", s.all);
}

/* Until now deleting the newest checkpoints of a chain went unnoticed. */
Test(verify, a_chain_cut_short_is_found_by_its_head)
{
    struct ol__verify_report r;
    struct seen s = {0};

    exec(a_path, "DELETE FROM checkpoints WHERE seq = 3");
    verify_a(&s, &r);
    cr_expect_geq(r.bad, 1);
    cr_expect(s.n == (int)r.bad, "%d problems printed, %llu counted", s.n,
              (unsigned long long)r.bad);
    cr_expect(strstr(s.all, "'ticker' 3: seqs 3..3 are missing: the chain "
                            "ends at seq 2, below its head") != NULL,
              "%s", s.all);
}

Test(verify, rows_deleted_with_their_head_are_found_by_their_seal)
{
    struct ol__verify_report r;
    struct seen s = {0};

    exec(a_path, "DELETE FROM checkpoints WHERE seq = 3;"
                 "UPDATE heads SET seq = 2, hash = (SELECT hash FROM "
                 "checkpoints WHERE seq = 2)");
    verify_a(&s, &r);
    cr_expect_eq(r.bad, 1, "%s", s.all);
    cr_expect(strstr(s.last, "should still be stored, but only 0 are") !=
                  NULL,
              "%s", s.last);
}

Test(verify, an_agent_with_every_row_gone_is_found)
{
    struct ol__verify_report r;
    struct seen s = {0};

    exec(a_path, "DELETE FROM checkpoints");
    verify_a(&s, &r);
    cr_expect(strstr(s.all, "'ticker' 3: all the agent's checkpoints are "
                            "missing") != NULL,
              "%s", s.all);
    cr_expect_eq(r.bad, 4, "the head and three seals: %s", s.all);
}

/* A printed problem that did not count let verify say "all verify". */
Test(verify, every_problem_printed_is_counted)
{
    struct ol__verify_report r;
    struct seen s = {0};

    exec(a_path, "DELETE FROM agents WHERE name = 'ticker'");
    verify_a(&s, &r);
    cr_expect_eq(r.bad, 1);
    cr_expect_eq(s.n, 1);
    cr_expect(strstr(s.last, "no agents row") != NULL, "%s", s.last);
}

Test(verify, column_that_disagrees_with_the_body_is_named)
{
    struct ol__verify_report r;
    struct seen s = {0};

    exec(a_path, "UPDATE checkpoints SET epoch = 9 WHERE seq = 1");
    verify_a(&s, &r);
    cr_expect_eq(r.bad, 1);
    cr_expect(strstr(s.last, "differ from the signed body") != NULL, "%s",
              s.last);
}

Test(verify, load_head_refuses_a_bad_head_and_a_broken_link)
{
    struct ol__ckpt c;
    uint8_t h[OL_HASH_SIZE];
    char err[OL_ERRMSG_SIZE];
    sqlite3 *db = open_ro(a_path);

    cr_assert_eq(ol__verify_load_head(db, "ticker", &c, h, err), 0, "%s",
                 err);
    cr_expect_eq(c.seq, 3);
    cr_expect_eq(memcmp(h, fx_hash[3], OL_HASH_SIZE), 0);
    ol__ckpt_free(&c);
    cr_expect_eq(ol__verify_load_head(db, "sink", &c, h, err), OL_ENOTFOUND);
    sqlite3_close(db);

    /* The predecessor's body changes: its hash no longer matches the
     * head's prev_hash (the head itself is intact). */
    fx_flip_body_byte(a_path, "ticker", 2, 10);
    db = open_ro(a_path);
    cr_expect_eq(ol__verify_load_head(db, "ticker", &c, h, err),
                 OL_EBADCHAIN, "%s", err);
    cr_expect(strstr(err, "seq 3") != NULL, "%s", err);
    sqlite3_close(db);

    fx_flip_body_byte(a_path, "ticker", 3, 10);
    db = open_ro(a_path);
    cr_expect_eq(ol__verify_load_head(db, "ticker", &c, h, err), OL_EBADHASH,
                 "%s", err);
    sqlite3_close(db);
}

/* A pinned cache (one read transaction, as a batch of resumes holds)
 * reads the signers once and trusts a seal it checked in the pin; a seal
 * checked before the pin has its stored signature looked at again, so a
 * signature forged since is caught, on the first load and on the next. */
Test(verify, a_pinned_cache_checks_again_the_seals_it_knew_before)
{
    struct ol__verify_cache *vc = ol__verify_cache_create();
    struct ol__ckpt c;
    uint8_t h[OL_HASH_SIZE];
    char err[OL_ERRMSG_SIZE];
    sqlite3 *db = open_ro(a_path);

    cr_assert_not_null(vc);
    cr_assert_eq(ol__verify_load_head_cached(db, "ticker", vc, &c, h, err),
                 0, "%s", err);
    ol__ckpt_free(&c);
    exec(a_path, "UPDATE seals SET sig = zeroblob(64) WHERE id = "
                 "(SELECT seal FROM checkpoints WHERE seq = 3)");
    cr_assert_eq(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    ol__verify_cache_pin(vc, 1);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(ol__verify_load_head_cached(db, "ticker", vc, &c, h,
                                                 err),
                     OL_EBADSIG, "load %d: %s", i, err);
        cr_expect(strstr(err, "signature does not verify") != NULL, "%s",
                  err);
    }
    ol__verify_cache_pin(vc, 0);
    cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    ol__verify_cache_destroy(vc);
    sqlite3_close(db);
}

/* One pinned load of ticker's head through `vc`, as a resume batch does:
 * returns what the load returned. */
static int pinned_load(sqlite3 *db, struct ol__verify_cache *vc, char *err)
{
    struct ol__ckpt c;
    uint8_t h[OL_HASH_SIZE];
    int rv;

    cr_assert_eq(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    ol__verify_cache_pin(vc, 1);
    rv = ol__verify_load_head_cached(db, "ticker", vc, &c, h, err);
    if (rv == 0)
        ol__ckpt_free(&c);
    ol__verify_cache_pin(vc, 0);
    cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    return rv;
}

/* A seal verified in one pinned snapshot is not verified again in the
 * next: its stored signature is unchanged, so the hash list verified the
 * first time still stands.  The seal's body is rewritten (signature
 * kept) in between: a fresh cache refuses it, the warm one does not look
 * at the body again. */
Test(verify, a_seal_is_verified_once_across_pinned_snapshots)
{
    struct ol__verify_cache *vc = ol__verify_cache_create();
    struct ol__verify_cache *fresh = ol__verify_cache_create();
    char err[OL_ERRMSG_SIZE];
    sqlite3 *db = open_ro(a_path);

    cr_assert_not_null(vc);
    cr_assert_not_null(fresh);
    cr_assert_eq(pinned_load(db, vc, err), 0, "%s", err);
    exec(a_path, "UPDATE seals SET body = body || x'00' WHERE id = "
                 "(SELECT seal FROM checkpoints WHERE agent = 'ticker' "
                 "AND seq = 3)");
    cr_expect_eq(pinned_load(db, vc, err), 0, "%s", err);
    cr_expect_neq(pinned_load(db, fresh, err), 0);
    cr_expect(strstr(err, "seal") != NULL, "%s", err);
    ol__verify_cache_destroy(fresh);
    ol__verify_cache_destroy(vc);
    sqlite3_close(db);
}

/* A seal verified in one pinned snapshot whose signer is no longer one of
 * the nodes in the next is refused there, as a fresh check would. */
Test(verify, a_cached_seal_of_a_removed_signer_is_refused)
{
    struct ol__verify_cache *vc = ol__verify_cache_create();
    char err[OL_ERRMSG_SIZE];
    sqlite3 *db = open_ro(a_path);

    cr_assert_not_null(vc);
    cr_assert_eq(pinned_load(db, vc, err), 0, "%s", err);
    exec(a_path, "DELETE FROM nodes");
    cr_expect_neq(pinned_load(db, vc, err), 0);
    cr_expect(strstr(err, "not a node's") != NULL, "%s", err);
    ol__verify_cache_destroy(vc);
    sqlite3_close(db);
}

Test(verify, identical_nodes_agree)
{
    struct ol__verify_report r;
    struct seen s = {0};
    char cmd[300];
    sqlite3 *dbs[2];
    const char *names[2] = {"a", "b"};

    snprintf(cmd, sizeof cmd, "cp %s %s", a_path, b_path);
    cr_assert_eq(system(cmd), 0);
    dbs[0] = open_ro(a_path);
    dbs[1] = open_ro(b_path);
    cr_assert_eq(ol__verify_cluster(dbs, names, 2, collect, &s, &r), 0);
    cr_expect_eq(r.bad, 0, "%s", s.last);
    cr_expect_eq(r.checkpoints, 6);
    sqlite3_close(dbs[0]);
    sqlite3_close(dbs[1]);
}

Test(verify, divergent_nodes_are_reported)
{
    struct ol__verify_report r;
    struct seen s = {0};
    sqlite3 *dbs[2];
    const char *names[2] = {"a", "b"};

    /* An independent history for the same agent and epoch, signed by
     * another key: every seq differs and epoch 1 has two signers. */
    ol__key_close(&fx_key);
    fx_build_db(b_path);
    dbs[0] = open_ro(a_path);
    dbs[1] = open_ro(b_path);
    cr_assert_eq(ol__verify_cluster(dbs, names, 2, collect, &s, &r), 0);
    cr_expect_eq(r.bad, 4, "3 seqs differ, 1 epoch has two signers (%s)",
                 s.last);
    cr_expect(strstr(s.last, "signed by two nodes") != NULL, "%s", s.last);
    sqlite3_close(dbs[0]);
    sqlite3_close(dbs[1]);
}

/* ---- damaged pages ---- */

/* ticker with seqs 1..n and ~700-byte states, one seal each. */
static void build_long(const char *path, int n)
{
    static const uint8_t cfg[] = {0x80};
    struct ol__sm_config smc = {.retain = 0};
    uint8_t prev[OL_HASH_SIZE] = {0}, pad[700];
    char err[OL_ERRMSG_SIZE];
    struct ol__sm_node node;
    struct ol__entry_w w;
    struct ol__store st;
    struct ol__sm *sm;

    cr_assert_eq(ol__store_open(&st, path, OL_STORE_WRITE_FULL), 0);
    cr_assert_eq(ol__sm_open(&st, &smc, &sm, err), 0, "%s", err);
    memset(&node, 0, sizeof node);
    node.id = 1;
    memcpy(node.pk, fx_key.pk, OL_PK_SIZE);
    cr_assert_eq(ol__sm_put_node(sm, &node), 0);
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_spawn(&w, 1, "ticker", "counter", cfg, 1, 1,
                                     0),
                 0);
    fx_apply(&st, sm, &w);
    memset(pad, 0x42, sizeof pad);
    for (int seq = 1; seq <= n; seq++) {
        struct ol__buf body, state;
        msgpack_packer pk;
        struct ol__ckpt c;
        struct ol__blob b;
        uint8_t h[OL_HASH_SIZE];

        sample_ckpt_fill(&c, &fx_key, "ticker", (uint64_t)seq);
        c.epoch = 1;
        for (uint32_t i = 0; i < c.n_outbox; i++) {
            free(c.outbox[i].to);
            free(c.outbox[i].data);
        }
        c.n_outbox = 0;
        for (uint32_t i = 0; i < c.n_acks; i++)
            free(c.acks[i].from);
        c.n_acks = 0;
        free(c.state);
        ol__buf_init(&state);
        msgpack_packer_init(&pk, &state, ol__buf_write);
        msgpack_pack_bin_with_body(&pk, pad, sizeof pad);
        c.state = state.base;
        c.state_len = (uint32_t)state.len;
        memcpy(c.prev_hash, prev, OL_HASH_SIZE);
        ol__buf_init(&body);
        cr_assert_eq(ol__ckpt_encode(&c, &body), 0);
        ol__ckpt_hash(body.base, body.len, h);
        ol__ckpt_free(&c);
        b.p = body.base;
        b.len = (uint32_t)body.len;
        cr_assert_eq(ol__entry_add_ckpts(&w, &fx_key, 1700000000000 + seq,
                                         &b, h, 1),
                     0);
        fx_apply(&st, sm, &w);
        memcpy(prev, h, OL_HASH_SIZE);
        ol__buf_close(&body);
    }
    ol__entry_w_close(&w);
    ol__sm_close(sm);
    ol__store_close(&st);
}

static int count_in(const char *all, const char *needle)
{
    int n = 0;

    for (const char *p = all; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Verify used to stop at the first damaged page. */
Test(verify, reads_on_past_a_damaged_table_page)
{
    struct ol__verify_report r;
    struct seen s = {0};
    sqlite3 *db;

    build_long(b_path, 200);
    td_smash_page(b_path, td_page(b_path, "checkpoints", "leaf", 10));
    db = open_ro(b_path);
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &r), 0);
    cr_expect_eq(r.checkpoints, 200, "the walk stopped early");
    cr_expect_geq(count_in(s.all, "the row cannot be read"), 1, "%s", s.all);
    cr_expect_lt(count_in(s.all, "the row cannot be read"), 20, "%s", s.all);
    cr_expect_eq(s.n, (int)r.bad);
    sqlite3_close(db);
}

Test(verify, reads_on_past_a_damaged_index_page)
{
    struct ol__verify_report r;
    struct seen s = {0};
    sqlite3 *db;
    int64_t pg;

    build_long(b_path, 400);
    db = open_ro(b_path);
    cr_assert_eq(sqlite3_exec(db, "VACUUM", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    pg = td_page(b_path, "sqlite_autoindex_checkpoints_1", "leaf", 1);
    td_smash_page(b_path, pg);
    db = open_ro(b_path);
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &r), 0);
    cr_expect_geq(r.bad, 1);
    cr_expect(strstr(s.all, "index cannot be read") != NULL ||
                  strstr(s.all, "unreadable") != NULL,
              "%s", s.all);
    /* The rows themselves are intact: every one is still checked. */
    cr_expect_geq(r.checkpoints, 400, "only %llu rows checked:\n%s",
                  (unsigned long long)r.checkpoints, s.all);
    cr_expect_eq(s.n, (int)r.bad);
    sqlite3_close(db);
}

/* A node resumed from a chain whose newest rows were deleted, and signed
 * new checkpoints for seqs it had signed before. */
Test(verify, load_head_refuses_a_chain_below_its_head)
{
    struct ol__ckpt c;
    uint8_t h[OL_HASH_SIZE];
    char err[OL_ERRMSG_SIZE];
    sqlite3 *db;

    exec(a_path, "DELETE FROM checkpoints WHERE seq = 3");
    db = open_ro(a_path);
    cr_expect_eq(ol__verify_load_head(db, "ticker", &c, h, err),
                 OL_EBADCHAIN, "%s", err);
    cr_expect(strstr(err, "seq 3..3 are missing") != NULL, "%s", err);
    sqlite3_close(db);
    exec(a_path, "DELETE FROM checkpoints");
    db = open_ro(a_path);
    cr_expect_eq(ol__verify_load_head(db, "ticker", &c, h, err),
                 OL_EBADCHAIN, "started over instead: %s", err);
    cr_expect(strstr(err, "all its checkpoints are missing") != NULL, "%s",
              err);
    cr_expect_eq(ol__verify_load_head(db, "sink", &c, h, err), OL_ENOTFOUND);
    sqlite3_close(db);
}
