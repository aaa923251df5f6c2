/* Unit tests for snapshot install (state/sm_snap.c): the raft index a
 * caller names must be the one the snapshot's header holds. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "state/sm.h"
#include "state/store.h"

static char dir[64];
static struct ol__store st_a, st_b;
static struct ol__sm *sm_a, *sm_b;

static void open_sm(const char *name, struct ol__store *st, struct ol__sm **sm)
{
    struct ol__sm_config c = {.retain = 0};
    char path[128], err[OL_ERRMSG_SIZE];

    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(ol__store_open(st, path, OL_STORE_WRITE_NORMAL), 0);
    cr_assert_eq(ol__sm_open(st, &c, sm, err), 0, "%s", err);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/ol-snap-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    open_sm("a.db", &st_a, &sm_a);
    open_sm("b.db", &st_b, &sm_b);
}

static void close_sm(struct ol__store *st, struct ol__sm *sm)
{
    ol__sm_close(sm);
    ol__store_close(st);
}

static void teardown(void)
{
    char cmd[128];

    close_sm(&st_a, sm_a);
    close_sm(&st_b, sm_b);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(sm_snap, .init = setup, .fini = teardown);

/* A snapshot of store a, taken at raft index `index`. */
static void snapshot_at(uint64_t index, struct ol__buf *snap)
{
    cr_assert_eq(ol__store_begin(&st_a), 0);
    cr_assert_eq(ol__sm_set_applied(sm_a, index), 0);
    cr_assert_eq(ol__store_commit(&st_a), 0);
    ol__buf_init(snap);
    cr_assert_eq(ol__sm_snapshot(sm_a, snap), 0);
}

Test(sm_snap, index_hint_must_match_header)
{
    struct ol__buf snap;
    char err[OL_ERRMSG_SIZE] = "";

    snapshot_at(40, &snap);
    cr_expect_eq(ol__sm_restore(sm_b, snap.base, snap.len, 41, NULL, err),
                 OL_EMALFORMED, "a snapshot at 40 was installed as 41");
    cr_expect_not_null(strstr(err, "index 40"), "%s", err);
    cr_expect_not_null(strstr(err, "41"), "%s", err);
    cr_expect_eq(ol__sm_applied(sm_b), 0, "a refused snapshot changed the "
                                          "store");
    cr_expect_eq(ol__sm_restore(sm_b, snap.base, snap.len, 40, NULL, err), 0,
                 "%s", err);
    cr_expect_eq(ol__sm_applied(sm_b), 40);
    ol__buf_close(&snap);
}

Test(sm_snap, no_hint_takes_header_index)
{
    struct ol__buf snap;
    char err[OL_ERRMSG_SIZE] = "";

    snapshot_at(7, &snap);
    cr_expect_eq(ol__sm_restore(sm_b, snap.base, snap.len, 0, NULL, err), 0,
                 "%s", err);
    cr_expect_eq(ol__sm_applied(sm_b), 7);
    ol__buf_close(&snap);
}
