/* Unit tests for the raft FSM glue (replication/fsm.h) over a real SQLite
 * file, with the raft state it reads (current term, last applied index)
 * set by hand. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "record/cmd.h"
#include "replication/fsm.h"
#include "base/err.h"
#include "base/log.h"

static char dir[64], dbpath[128];
static struct ol__store st;
static struct ol__sm *sm;
static struct ol__fsm fsm;
static struct raft r;
static int n_effects, n_fatal, n_deferred;
static uint32_t last_fx;
static uint64_t last_term;
static char fatal_msg[512];

static void on_effects(void *data, struct ol__effects *fx, uint64_t term)
{
    (void)data;
    n_effects++;
    last_fx = fx->n;
    last_term = term;
}

static void on_deferred(void *data)
{
    (void)data;
    n_deferred++;
}

static void on_fatal(void *data, const char *msg)
{
    (void)data;
    n_fatal++;
    snprintf(fatal_msg, sizeof fatal_msg, "%s", msg);
}

static uint32_t slice_us;

static void setup(void)
{
    struct ol__sm_config c = {.retain = 0};
    struct ol__fsm_config fc;
    struct ol__fsm_hooks fh = {NULL, on_effects, on_fatal, on_deferred};
    char err[OL_ERRMSG_SIZE];

    ol_log_set_level(-1);
    snprintf(dir, sizeof dir, "/tmp/ol-fsm-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/outlast.db", dir);
    cr_assert_eq(ol__store_open(&st, dbpath, OL_STORE_WRITE_NORMAL), 0);
    cr_assert_eq(ol__sm_open(&st, &c, &sm, err), 0, "%s", err);
    memset(&fc, 0, sizeof fc);
    fc.db_path = dbpath;
    fc.ring = 64;
    /* OL_FSM_SLICE_US: a suite with an apply slice (below). */
    fc.apply_slice_us = slice_us;
    cr_assert_eq(ol__fsm_init(&fsm, &st, sm, &fc, &fh, err), 0, "%s", err);
    memset(&r, 0, sizeof r);
    ol__fsm_attach(&fsm, &r);
}

static void teardown(void)
{
    char cmd[128];

    ol__fsm_close(&fsm);
    ol__sm_close(sm);
    ol__store_close(&st);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(fsm, .init = setup, .fini = teardown);

/* An entry tagged with `term`: a spawn of `name`, or a no-op. */
static void entry(uint64_t term, const char *name, struct ol__buf *out)
{
    struct ol__entry_w w;

    ol__entry_w_init(&w);
    /* A spawn's request id is its name's first byte: one per agent. */
    if (name)
        cr_assert_eq(ol__entry_add_spawn(&w, (uint8_t)name[0], name,
                                         "counter", "\x80", 1, 0, 0), 0);
    else
        cr_assert_eq(ol__entry_add_noop(&w), 0);
    w.term = term;
    w.time_ms = 1000;
    ol__buf_init(out);
    cr_assert_eq(ol__entry_w_finish(&w, out), 0);
    ol__entry_w_close(&w);
}

/* libraft applies the next index. */
static void apply(const void *p, size_t len)
{
    struct raft_buffer b = {(void *)p, len};
    void *res;

    cr_assert_eq(fsm.fsm.apply(&fsm.fsm, &b, &res), 0);
    r.last_applied++;
}

static void apply_entry(uint64_t term, const char *name)
{
    struct ol__buf e;

    entry(term, name, &e);
    apply(e.base, e.len);
    ol__buf_close(&e);
}

Test(fsm, entries_wait_for_an_entry_of_the_current_term)
{
    r.current_term = 4;
    apply_entry(2, "a");
    apply_entry(3, "b");
    cr_assert_eq(ol__fsm_held(&fsm), 2);
    cr_assert_eq(n_effects, 0, "reported before it was certain");
    cr_assert_eq(ol__sm_applied(sm), 0, "made durable before it was "
                                        "certain");
    cr_assert_null(ol__sm_agent(sm, "a"));
    apply_entry(4, NULL);
    cr_assert_eq(ol__fsm_held(&fsm), 0);
    cr_assert_eq(n_effects, 1);
    cr_assert_geq(last_fx, 2, "the held entries' effects were lost");
    cr_assert_eq(ol__sm_applied(sm), 3);
    cr_assert_not_null(ol__sm_agent(sm, "a"));
    cr_assert_not_null(ol__sm_agent(sm, "b"));
    cr_assert_eq(n_fatal, 0);
}

Test(fsm, no_snapshot_while_entries_are_held)
{
    struct raft_buffer *bufs;
    unsigned n;

    r.current_term = 2;
    apply_entry(1, "a");
    cr_assert_eq(fsm.fsm.snapshot(&fsm.fsm, &bufs, &n), RAFT_BUSY);
    cr_assert_eq(fsm.n.snapshots_refused, 1);
    apply_entry(2, NULL);
    cr_assert_eq(fsm.fsm.snapshot(&fsm.fsm, &bufs, &n), 0);
    cr_assert_eq(fsm.snap_index, 2);
    cr_assert_eq(fsm.fsm.snapshot_finalize(&fsm.fsm, &bufs, &n), 0);
}

/* After a restart libraft applies again from its last snapshot: the same
 * entry is skipped, a different one at an applied index stops the node. */
Test(fsm, an_applied_index_that_comes_back_different_stops_the_node)
{
    struct ol__buf same;

    r.current_term = 1;
    entry(1, "a", &same);
    apply(same.base, same.len);
    apply_entry(1, "b");
    cr_assert_eq(ol__sm_applied(sm), 2);
    r.last_applied = 0;
    apply(same.base, same.len);
    cr_assert_eq(n_fatal, 0, "%s", fatal_msg);
    cr_assert_eq(fsm.n.ring_checked, 1);
    apply_entry(1, "other");
    cr_assert_eq(n_fatal, 1);
    cr_assert(strstr(fatal_msg, "different entry") != NULL, "%s", fatal_msg);
    cr_assert(strstr(fatal_msg, "--rejoin") != NULL, "%s", fatal_msg);
    /* Nothing is applied once stopped. */
    r.last_applied = 2;
    apply_entry(1, "c");
    cr_assert_null(ol__sm_agent(sm, "c"));
    ol__buf_close(&same);
}

Test(fsm, an_entry_that_does_not_decode_stops_instead_of_being_skipped)
{
    uint8_t junk[16] = {0xc1, 0xc1};

    r.current_term = 1;
    apply(junk, sizeof junk);
    cr_assert_eq(n_fatal, 1);
    cr_assert(strstr(fatal_msg, "never skipped") != NULL, "%s", fatal_msg);
    cr_assert_eq(ol__sm_applied(sm), 0);
}

Test(fsm, a_command_from_a_newer_version_stops_and_says_upgrade)
{
    /* [2, 1, 0, [[99]]] */
    uint8_t e[] = {0x94, 0x02, 0x01, 0x00, 0x91, 0x91, 0x63};

    r.current_term = 1;
    apply(e, sizeof e);
    cr_assert_eq(n_fatal, 1);
    cr_assert(strstr(fatal_msg, "upgrade") != NULL, "%s", fatal_msg);
    cr_assert(strstr(fatal_msg, "type 99") != NULL, "%s", fatal_msg);
    cr_assert_eq(ol__sm_applied(sm), 0);
}

/* ---- the apply slice ---- */

/* A slice of 1 us is used up by the first entry of any turn. */
static void setup_sliced(void)
{
    slice_us = 1;
    setup();
}

TestSuite(fsm_slice, .init = setup_sliced, .fini = teardown);

Test(fsm_slice, a_used_up_turn_leaves_committed_entries_to_later_turns)
{
    r.current_term = 2;
    apply_entry(2, "a");
    cr_assert_not_null(ol__sm_agent(sm, "a"), "the turn's first entry "
                                               "waited");
    apply_entry(2, "b");
    apply_entry(2, "c");
    cr_assert_null(ol__sm_agent(sm, "b"), "applied past the slice");
    cr_assert_eq(ol__sm_applied(sm), 1);
    cr_assert_eq(ol__fsm_held(&fsm), 2);
    cr_assert_eq(n_deferred, 2);
    cr_assert_eq(n_effects, 1);
    /* The same turn: nothing more. */
    cr_assert_eq(ol__fsm_drain(&fsm), 1);
    cr_assert_eq(ol__sm_applied(sm), 1);
    /* Each new turn applies one, in order, the last with the term. */
    ol__fsm_turn(&fsm);
    cr_assert_eq(ol__fsm_drain(&fsm), 1);
    cr_assert_eq(ol__sm_applied(sm), 2);
    cr_assert_not_null(ol__sm_agent(sm, "b"));
    cr_assert_null(ol__sm_agent(sm, "c"));
    cr_assert_eq(last_term, 0, "a part of what index 3 released was "
                               "reported as all of it");
    ol__fsm_turn(&fsm);
    cr_assert_eq(ol__fsm_drain(&fsm), 0);
    cr_assert_eq(ol__sm_applied(sm), 3);
    cr_assert_not_null(ol__sm_agent(sm, "c"));
    cr_assert_eq(last_term, 2);
    cr_assert_eq(n_effects, 3);
    cr_assert_eq(ol__fsm_held(&fsm), 0);
    cr_assert_eq(fsm.n.applied, 3);
    cr_assert_eq(n_fatal, 0);
}

Test(fsm_slice, entries_not_yet_certain_stay_behind_the_drain)
{
    struct raft_buffer *bufs;
    unsigned n;

    r.current_term = 3;
    apply_entry(3, "a"); /* uses up the turn */
    apply_entry(2, "b"); /* an older term's: not yet certain */
    cr_assert_eq(n_deferred, 0);
    ol__fsm_turn(&fsm);
    cr_assert_eq(ol__fsm_drain(&fsm), 0, "drained an entry not known "
                                         "to be committed");
    cr_assert_null(ol__sm_agent(sm, "b"));
    /* c makes b certain: b goes first and uses up the turn. */
    apply_entry(3, "c");
    cr_assert_not_null(ol__sm_agent(sm, "b"));
    cr_assert_null(ol__sm_agent(sm, "c"));
    cr_assert_eq(n_deferred, 1);
    apply_entry(2, "e");
    cr_assert_eq(ol__fsm_held(&fsm), 2);
    /* No snapshot past what the store holds. */
    cr_assert_eq(fsm.fsm.snapshot(&fsm.fsm, &bufs, &n), RAFT_BUSY);
    ol__fsm_turn(&fsm);
    cr_assert_eq(ol__fsm_drain(&fsm), 0);
    cr_assert_not_null(ol__sm_agent(sm, "c"));
    cr_assert_null(ol__sm_agent(sm, "e"), "applied an entry not known "
                                          "to be committed");
    cr_assert_eq(ol__sm_applied(sm), 3);
    cr_assert_eq(last_term, 3);
    cr_assert_eq(ol__fsm_held(&fsm), 1);
    cr_assert_eq(n_fatal, 0);
}
