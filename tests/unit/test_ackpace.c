/*
 * The pacer of a leader's append completions (replication/ackpace.h),
 * against a raft instance whose role, term, configuration and log end the
 * test sets, and an append whose completions the test delivers.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "replication/ackpace.h"

#define MAX_OPS 16

static struct raft r;
static struct ol__ackpace pace;
static uint64_t now;

/* The fake disk: appends it was asked for, completed by the test. */
static struct raft_io_append *disk_req[MAX_OPS];
static raft_io_append_cb disk_cb[MAX_OPS];
static int n_disk, fail_next_append, closed;

/* What libraft was told, in order: the index of each request. */
static int told[MAX_OPS], told_status[MAX_OPS], n_told;
static struct raft_io_append reqs[MAX_OPS];

static uint64_t clock_ms(void *data)
{
    (void)data;
    return now;
}

static int fake_append(struct raft_io *io, struct raft_io_append *req,
                       const struct raft_entry entries[], unsigned n,
                       raft_io_append_cb cb)
{
    (void)io;
    (void)entries;
    (void)n;
    if (fail_next_append) {
        fail_next_append = 0;
        return RAFT_IOERR;
    }
    cr_assert_lt(n_disk, MAX_OPS);
    disk_req[n_disk] = req;
    disk_cb[n_disk] = cb;
    n_disk++;
    return 0;
}

static void fake_close(struct raft_io *io, raft_io_close_cb cb)
{
    (void)io;
    (void)cb;
    closed = 1;
}

static void libraft_cb(struct raft_io_append *req, int status)
{
    told[n_told] = (int)(req - reqs);
    told_status[n_told] = status;
    n_told++;
}

static void roster(unsigned voters, unsigned standbys)
{
    raft_configuration_close(&r.configuration);
    raft_configuration_init(&r.configuration);
    for (unsigned i = 1; i <= voters + standbys; i++) {
        char addr[16];

        snprintf(addr, sizeof addr, "n%u", i);
        cr_assert_eq(raft_configuration_add(&r.configuration, i, addr,
                                            i <= voters ? RAFT_VOTER
                                                        : RAFT_STANDBY),
                     0);
    }
}

static void setup(void)
{
    memset(&r, 0, sizeof r);
    raft_configuration_init(&r.configuration);
    r.id = 1;
    r.state = RAFT_LEADER;
    r.current_term = 5;
    n_disk = n_told = fail_next_append = closed = 0;
    now = 1000;
    roster(3, 0);
    ol__ackpace_init(&pace, &r, fake_append, fake_close, 1000, clock_ms,
                     NULL);
}

static void teardown(void)
{
    raft_configuration_close(&r.configuration);
}

/* libraft appends request `i`, which makes the log end at `end`. */
static void append(int i, uint64_t end)
{
    r.log.snapshot.last_index = end;
    cr_assert_eq(ol__ackpace_append(&pace, NULL, &reqs[i], NULL, 1,
                                    libraft_cb),
                 0);
}

/* The disk finishes its k-th append. */
static void disk_done(int k, int status)
{
    disk_cb[k](disk_req[k], status);
}

TestSuite(ackpace, .init = setup, .fini = teardown);

Test(ackpace, a_lone_voter_is_told_at_once)
{
    roster(1, 0);
    append(0, 7);
    disk_done(0, 0);
    cr_assert_eq(n_told, 1);
    cr_assert_eq(told[0], 0);
    cr_assert_eq(pace.n.passed, 1);
}

Test(ackpace, a_leader_is_told_when_an_answer_makes_a_majority)
{
    append(0, 10);
    disk_done(0, 0);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 0, "held until a follower has index 10");
    ol__ackpace_answer(&pace, 2, 5, 9);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 0, "an answer below the append's end holds it");
    ol__ackpace_answer(&pace, 3, 5, 10);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 1);
    cr_assert_eq(pace.n.by_ack, 1);
    cr_assert_eq(pace.n.passed, 0);
}

Test(ackpace, completions_go_on_in_disk_order_and_only_as_far_as_answered)
{
    append(0, 10);
    append(1, 11);
    append(2, 12);
    disk_done(0, 0);
    disk_done(1, 0);
    disk_done(2, 0);
    ol__ackpace_answer(&pace, 2, 5, 11);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 2);
    cr_assert_eq(told[0], 0);
    cr_assert_eq(told[1], 1);
    ol__ackpace_answer(&pace, 2, 5, 12);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 3);
    cr_assert_eq(told[2], 2);
}

Test(ackpace, an_answer_before_the_disk_lets_the_completion_pass_at_once)
{
    append(0, 10);
    ol__ackpace_answer(&pace, 3, 5, 10);
    disk_done(0, 0);
    cr_assert_eq(n_told, 1);
    cr_assert_eq(pace.n.passed, 1);
}

Test(ackpace, five_voters_need_two_answers)
{
    roster(5, 0);
    append(0, 10);
    disk_done(0, 0);
    ol__ackpace_answer(&pace, 4, 5, 10);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 0, "the leader and one follower are 2 of 5");
    ol__ackpace_answer(&pace, 2, 5, 12);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 1);
}

Test(ackpace, a_standby_does_not_count)
{
    roster(3, 2);
    append(0, 10);
    disk_done(0, 0);
    ol__ackpace_answer(&pace, 4, 5, 10);
    ol__ackpace_answer(&pace, 5, 5, 10);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 0, "standbys store it but do not vote");
    ol__ackpace_answer(&pace, 2, 5, 10);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 1);
}

Test(ackpace, answers_of_an_earlier_term_do_not_count)
{
    ol__ackpace_answer(&pace, 2, 4, 50);
    append(0, 10);
    disk_done(0, 0);
    cr_assert_eq(n_told, 0);
    cr_assert_eq(ol__ackpace_quorum(&pace, &r.configuration, 1, 5), 0);
    ol__ackpace_answer(&pace, 2, 5, 10);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 1);
}

/* A follower that knows its leader. */
static void follow(uint64_t leader)
{
    static char address[] = "127.0.0.1:7102";

    r.state = RAFT_FOLLOWER;
    r.follower_state.current_leader.id = leader;
    r.follower_state.current_leader.address = leader ? address : NULL;
}

Test(ackpace, a_follower_is_told_at_once)
{
    follow(2);
    append(0, 10);
    disk_done(0, 0);
    cr_assert_eq(n_told, 1);
}

/* libraft 0.15 would send the answer to a NULL leader address. */
Test(ackpace, a_follower_that_knows_no_leader_is_told_once_it_does)
{
    follow(0);
    append(0, 10);
    append(1, 11);
    disk_done(0, 0);
    disk_done(1, -5);
    now += 5000; /* no guard for these */
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 0, "told libraft with no leader known");
    follow(3);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 2);
    cr_assert_eq(told_status[1], -5);
}

Test(ackpace, a_follower_that_stands_is_told)
{
    follow(0);
    append(0, 10);
    disk_done(0, 0);
    cr_assert_eq(n_told, 0);
    r.state = RAFT_CANDIDATE;
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 1);
}

Test(ackpace, closing_tells_a_leaderless_follower_too)
{
    follow(0);
    append(0, 10);
    disk_done(0, 0);
    cr_assert_eq(n_told, 0);
    ol__ackpace_close(&pace, NULL, NULL);
    cr_assert_eq(n_told, 1);
}

Test(ackpace, losing_leadership_lets_held_completions_go)
{
    append(0, 10);
    disk_done(0, 0);
    cr_assert_eq(n_told, 0);
    r.state = RAFT_FOLLOWER;
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 1);
}

Test(ackpace, a_new_term_lets_held_completions_go)
{
    append(0, 10);
    disk_done(0, 0);
    r.current_term = 6;
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 1);
}

Test(ackpace, a_failed_append_is_told_at_once_with_its_status)
{
    append(0, 10);
    disk_done(0, RAFT_IOERR);
    cr_assert_eq(n_told, 1);
    cr_assert_eq(told_status[0], RAFT_IOERR);
}

Test(ackpace, the_guard_lets_a_completion_go_after_hold_max_ms)
{
    append(0, 10);
    disk_done(0, 0);
    now += 999;
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 0);
    now += 1;
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 1);
    cr_assert_eq(pace.n.by_guard, 1);
    cr_assert_eq(pace.n.held_ms, 1000);
}

Test(ackpace, closing_lets_everything_go_then_closes_the_disk)
{
    append(0, 10);
    append(1, 11);
    disk_done(0, 0);
    ol__ackpace_close(&pace, NULL, NULL);
    cr_assert(closed);
    cr_assert_eq(n_told, 1);
    disk_done(1, RAFT_CANCELED);
    cr_assert_eq(n_told, 2);
    cr_assert_eq(told_status[1], RAFT_CANCELED);
}

Test(ackpace, an_append_the_disk_refuses_leaves_nothing_behind)
{
    append(0, 10);
    fail_next_append = 1;
    r.log.snapshot.last_index = 11;
    cr_assert_eq(ol__ackpace_append(&pace, NULL, &reqs[1], NULL, 1,
                                    libraft_cb),
                 RAFT_IOERR);
    append(2, 12);
    disk_done(0, 0);
    disk_done(1, 0);
    ol__ackpace_answer(&pace, 2, 5, 12);
    ol__ackpace_pump(&pace);
    cr_assert_eq(n_told, 2);
    cr_assert_eq(told[0], 0);
    cr_assert_eq(told[1], 2);
}

Test(ackpace, quorum_is_the_majoritys_lowest_answer)
{
    roster(5, 0);
    ol__ackpace_answer(&pace, 2, 5, 30);
    ol__ackpace_answer(&pace, 3, 5, 10);
    ol__ackpace_answer(&pace, 4, 5, 20);
    cr_assert_eq(ol__ackpace_quorum(&pace, &r.configuration, 1, 5), 20);
    /* A leader outside the configuration (being removed) needs three. */
    cr_assert_eq(ol__ackpace_quorum(&pace, &r.configuration, 9, 5), 10);
    roster(1, 0);
    cr_assert_eq(ol__ackpace_quorum(&pace, &r.configuration, 1, 5),
                 UINT64_MAX);
}
