/* Unit tests for the node record (node.state): signed two-slot writes, a
 * torn or damaged slot, another node's key, hostile bytes, and the start-up
 * verdict for every combination of record and database it must refuse. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "state/nodestate.h"

static char dir[64], path[128];
static struct ol__key key;

static void setup(void)
{
    ol_log_set_level(OL_LOG_ERROR);
    snprintf(dir, sizeof dir, "/tmp/ol-nstate-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/node.state", dir);
    cr_assert_eq(ol__key_generate(&key), 0);
}

static void teardown(void)
{
    char cmd[128];

    ol__key_close(&key);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(nstate, .init = setup, .fini = teardown, .timeout = 30);

static struct ol__nstate sample(void)
{
    struct ol__nstate s;

    memset(&s, 0, sizeof s);
    s.node_id = 3;
    memset(s.db_id, 0x5d, sizeof s.db_id);
    s.commits = 1234;
    s.applied = 77;
    s.max_epoch = 9;
    s.history = 1;
    s.run = OL_NSTATE_RUNNING;
    return s;
}

static void flip(long off)
{
    FILE *f = fopen(path, "r+b");
    int c;

    cr_assert_not_null(f);
    fseek(f, off, SEEK_SET);
    c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
}

Test(nstate, round_trip_and_the_newer_slot_wins)
{
    struct ol__nstate s = sample(), out;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__nstate_write(path, &key, &s, err), 0, "%s", err);
    cr_assert_eq(ol__nstate_load(path, key.pk, &out, err), 0, "%s", err);
    cr_expect_eq(out.commits, 1234);
    cr_expect_eq(out.node_id, 3);
    cr_expect_eq(out.max_epoch, 9);
    cr_expect_eq(out.run, OL_NSTATE_RUNNING);
    cr_expect_eq(memcmp(out.db_id, s.db_id, OL_DBID_SIZE), 0);
    s.commits = 2000;
    s.run = OL_NSTATE_STOPPED;
    cr_assert_eq(ol__nstate_write(path, &key, &s, err), 0, "%s", err);
    cr_assert_eq(ol__nstate_load(path, key.pk, &out, err), 0, "%s", err);
    cr_expect_eq(out.commits, 2000);
    cr_expect_eq(out.run, OL_NSTATE_STOPPED);
    cr_expect_eq(out.serial, s.serial);
}

Test(nstate, a_torn_write_leaves_the_other_slot)
{
    struct ol__nstate s = sample(), out;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__nstate_write(path, &key, &s, err), 0);
    s.commits = 5000;
    cr_assert_eq(ol__nstate_write(path, &key, &s, err), 0);
    /* serial 2 went to slot 0: damage it, slot 1 (serial 1) remains. */
    flip(40);
    cr_assert_eq(ol__nstate_load(path, key.pk, &out, err), 0, "%s", err);
    cr_expect_eq(out.commits, 1234);
    flip(OL_NSTATE_SLOT + 40);
    cr_expect_eq(ol__nstate_load(path, key.pk, &out, err), OL_EMALFORMED);
    cr_expect(strstr(err, "is damaged") != NULL, "%s", err);
}

Test(nstate, another_nodes_record_is_refused)
{
    struct ol__nstate s = sample(), out;
    struct ol__key other;
    char err[OL_ERRMSG_SIZE];

    cr_assert_eq(ol__key_generate(&other), 0);
    cr_assert_eq(ol__nstate_write(path, &other, &s, err), 0);
    cr_expect_eq(ol__nstate_load(path, key.pk, &out, err), OL_EUNAUTH);
    cr_expect(strstr(err, "not by this node's key") != NULL, "%s", err);
    cr_expect_eq(ol__nstate_load(path, NULL, &out, err), 0, "%s", err);
    ol__key_close(&other);
}

Test(nstate, missing_and_hostile_files)
{
    struct ol__nstate out;
    char err[OL_ERRMSG_SIZE];
    FILE *f;

    cr_expect_eq(ol__nstate_load(path, key.pk, &out, err), OL_ENOTFOUND);
    f = fopen(path, "w");
    fputs("short", f);
    fclose(f);
    cr_expect_eq(ol__nstate_load(path, key.pk, &out, err), OL_EMALFORMED);
    cr_expect_eq(ol__nstate_load(dir, key.pk, &out, err), OL_EMALFORMED,
                 "a directory: %s", err);
}

Test(nstate, every_truncation_and_flip_of_a_slot_is_refused)
{
    struct ol__nstate s = sample(), out;
    char err[OL_ERRMSG_SIZE];
    uint8_t slot[OL_NSTATE_SLOT], copy[OL_NSTATE_SLOT];
    size_t used;
    FILE *f;

    cr_assert_eq(ol__nstate_write(path, &key, &s, err), 0);
    f = fopen(path, "rb");
    cr_assert_eq(fread(slot, 1, sizeof slot, f), sizeof slot);
    fclose(f);
    cr_assert_eq(ol__nstate_decode(slot, key.pk, &out), 0);
    used = 7 + ((size_t)slot[5] << 8 | slot[6]) + 64;
    for (size_t n = 0; n < used; n++) {
        /* The rest is not what was written (zeroes could be, by chance). */
        for (size_t i = 0; i < sizeof copy; i++)
            copy[i] = i < n ? slot[i] : (uint8_t)(slot[i] ^ 0xff);
        cr_expect_neq(ol__nstate_decode(copy, key.pk, &out), 0,
                      "accepted a %zu-byte prefix", n);
    }
    for (size_t i = 0; i < used; i++) {
        memcpy(copy, slot, sizeof copy);
        copy[i] ^= 0x01;
        cr_expect_neq(ol__nstate_decode(copy, key.pk, &out), 0,
                      "accepted a flip at byte %zu", i);
    }
}

/* ---- the start-up verdict ---- */

static struct ol__nstate_db good_db(const struct ol__nstate *r)
{
    struct ol__nstate_db d;

    memset(&d, 0, sizeof d);
    d.path = "/d/outlast.db";
    d.files.db = 1;
    d.files.db_size = 8192;
    d.files.wal = 1;
    d.schema = 2;
    memcpy(d.db_id, r->db_id, OL_DBID_SIZE);
    d.commits = r->commits;
    return d;
}

static void verdict(const struct ol__nstate *r, const struct ol__nstate_db *d,
                    uint64_t id, int want_ok, const char *needle)
{
    char err[OL_NSTATE_ERR_SIZE] = "";
    int create = 0, rv = ol__nstate_check(r, d, id, "HINT", &create, err);

    if (want_ok) {
        cr_expect_eq(rv, 0, "refused: %s", err);
        return;
    }
    cr_expect_eq(rv, OL_ESTATE, "accepted, expected '%s'", needle);
    cr_expect(strstr(err, needle) != NULL, "'%s' lacks '%s'", err, needle);
}

Test(nstate, the_verdict_refuses_what_it_must)
{
    struct ol__nstate r = sample();
    struct ol__nstate_db d = good_db(&r);
    int create;
    char err[OL_NSTATE_ERR_SIZE];

    verdict(&r, &d, 3, 1, NULL);
    d.commits = r.commits + 10; /* the record trails: fine */
    verdict(&r, &d, 3, 1, NULL);
    verdict(&r, &d, 4, 0, "belongs to node 3");

    d = good_db(&r);
    d.files.db = 0;
    verdict(&r, &d, 3, 0, "is missing, but this node had committed 1234");
    d = good_db(&r);
    d.files.db_size = 0;
    verdict(&r, &d, 3, 0, "is empty (0 bytes)");
    d = good_db(&r);
    d.store_rv = OL_EMALFORMED;
    snprintf(d.store_err, sizeof d.store_err, "not outlast's");
    verdict(&r, &d, 3, 0, "not outlast's; this node had committed 1234");
    d = good_db(&r);
    d.db_id[0] ^= 1;
    verdict(&r, &d, 3, 0, "is not the one this node wrote");
    d = good_db(&r);
    d.commits = r.commits - 1;
    verdict(&r, &d, 3, 0, "is behind what this node committed: it holds "
                          "1233 commits");
    d = good_db(&r);
    d.files.wal = 0;
    verdict(&r, &d, 3, 0, "stopped without closing its database");
    r.run = OL_NSTATE_STOPPED;
    verdict(&r, &d, 3, 1, NULL); /* a clean close removes the WAL */
    r.run = OL_NSTATE_CLOSING;
    verdict(&r, &d, 3, 1, NULL);
    /* The hint comes with the refusal. */
    d.files.db = 0;
    cr_assert_eq(ol__nstate_check(&r, &d, 3, "HINT", &create, err),
                 OL_ESTATE);
    cr_expect(strstr(err, ". HINT") != NULL, "%s", err);
}

Test(nstate, without_a_record)
{
    struct ol__nstate r = sample();
    struct ol__nstate_db d = good_db(&r);
    char err[OL_NSTATE_ERR_SIZE];
    int create = 0;

    d.files.db = 0;
    cr_expect_eq(ol__nstate_check(NULL, &d, 1, "", &create, err), 0);
    cr_expect_eq(create, 1, "a new node creates its database");
    d = good_db(&r);
    d.commits = 0; /* created, never committed: the first start died */
    cr_expect_eq(ol__nstate_check(NULL, &d, 1, "", &create, err), 0, "%s",
                 err);
    d.schema = 1; /* an older build's database: adopted */
    d.commits = 0;
    cr_expect_eq(ol__nstate_check(NULL, &d, 1, "", &create, err), 0, "%s",
                 err);
    d = good_db(&r);
    verdict(NULL, &d, 1, 0, "there is no node record (node.state)");
    d.store_rv = OL_EMALFORMED;
    snprintf(d.store_err, sizeof d.store_err, "'x' is empty");
    verdict(NULL, &d, 1, 0, "'x' is empty");
}
