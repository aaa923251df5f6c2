/* Unit tests for the verifier: single stores (hash, seal, chain, gaps) and
 * the cross-node comparison. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replication/verify.h"
#include "tests/unit/db_fixture.h"

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
    char last[512];
    uint64_t seq;
};

static void collect(void *data, const char *agent, uint64_t seq,
                    const char *problem)
{
    struct seen *s = data;

    s->n++;
    s->seq = seq;
    snprintf(s->last, sizeof s->last, "'%s' %llu: %s", agent,
             (unsigned long long)seq, problem);
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

Test(verify, clean_store_verifies)
{
    struct ol__verify_report r;
    struct seen s = {0};
    sqlite3 *db = open_ro(a_path);

    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &r), 0);
    cr_expect_eq(r.bad, 0, "%s", s.last);
    cr_expect_eq(r.checkpoints, 3);
    cr_expect_eq(r.agents, 1);
    cr_expect_eq(r.seals, 3);
    sqlite3_close(db);
}

Test(verify, flipped_body_byte_is_named)
{
    struct ol__verify_report r;
    struct seen s = {0};
    sqlite3 *db;

    fx_flip_body_byte(a_path, "ticker", 2, 10);
    db = open_ro(a_path);
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &r), 0);
    cr_expect_eq(r.bad, 1);
    cr_expect_eq(s.seq, 2, "%s", s.last);
    cr_expect(strstr(s.last, "tampered") != NULL, "%s", s.last);
    sqlite3_close(db);
}

Test(verify, forged_seal_signature_is_refused)
{
    struct ol__verify_report r;
    struct seen s = {0};
    sqlite3 *db;

    exec(a_path, "UPDATE seals SET sig = zeroblob(64) WHERE id = "
                 "(SELECT seal FROM checkpoints WHERE seq = 3)");
    db = open_ro(a_path);
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &r), 0);
    cr_expect_eq(r.bad, 1);
    cr_expect(strstr(s.last, "signature does not verify") != NULL, "%s",
              s.last);
    sqlite3_close(db);
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
    sqlite3 *db;

    exec(a_path, "DELETE FROM checkpoints WHERE seq = 2");
    db = open_ro(a_path);
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &r), 0);
    cr_expect_eq(r.bad, 1);
    cr_expect(strstr(s.last, "seqs 2..2 are missing") != NULL, "%s", s.last);
    sqlite3_close(db);
    exec(a_path, "UPDATE checkpoints SET flags = 1 WHERE seq = 3");
    db = open_ro(a_path);
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &r), 0);
    cr_expect_eq(r.bad, 0, "%s", s.last);
    cr_expect_eq(r.gaps, 1);
    sqlite3_close(db);
}

Test(verify, column_that_disagrees_with_the_body_is_named)
{
    struct ol__verify_report r;
    struct seen s = {0};
    sqlite3 *db;

    exec(a_path, "UPDATE checkpoints SET epoch = 9 WHERE seq = 1");
    db = open_ro(a_path);
    cr_assert_eq(ol__verify_store(db, NULL, NULL, 0, collect, &s, &r), 0);
    cr_expect_eq(r.bad, 1);
    cr_expect(strstr(s.last, "differ from the signed body") != NULL, "%s",
              s.last);
    sqlite3_close(db);
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
