/* Unit tests for proposals (replication/propose.h) through their narrow
 * interface: a fake owner stands in for raft and the transport, records
 * every entry submitted or forwarded, and decodes it to check what the
 * proposer decided to put in it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "record/ckpt.h"
#include "record/cmd.h"
#include "replication/propose.h"

#define SENT_MAX 80

/* What the proposer sees of the cluster, and what it handed over. */
struct fake {
    int leader, has_leader;
    uint64_t term, now;
    uint32_t level;
    int submit_rv, forward_rv;
    int wakes;
    int behind; /* committed entries not yet applied */
    struct ol__entry sent[SENT_MAX];
    int sent_leader[SENT_MAX]; /* 1: submitted, 0: forwarded */
    uint8_t *sent_bytes[SENT_MAX];
    size_t n_sent;
};

static struct fake f;
static struct ol__key key;
static struct ol__proposer *p;

static int fk_is_leader(void *d) { return ((struct fake *)d)->leader; }
static int fk_has_leader(void *d) { return ((struct fake *)d)->has_leader; }
static uint64_t fk_term(void *d) { return ((struct fake *)d)->term; }
static uint32_t fk_level(void *d) { return ((struct fake *)d)->level; }
static uint64_t fk_now(void *d) { return ((struct fake *)d)->now; }
static void fk_wake(void *d) { ((struct fake *)d)->wakes++; }
static int fk_behind(void *d) { return ((struct fake *)d)->behind; }

static int record(struct fake *x, int leader, const void *e, size_t len)
{
    char err[OL_ERRMSG_SIZE];
    size_t i = x->n_sent;

    cr_assert_lt(i, SENT_MAX);
    /* The entry points into its bytes: keep a copy. */
    x->sent_bytes[i] = malloc(len);
    memcpy(x->sent_bytes[i], e, len);
    cr_assert_eq(ol__entry_decode(x->sent_bytes[i], len, &x->sent[i], err),
                 0, "entry %zu does not decode: %s", i, err);
    x->sent_leader[i] = leader;
    x->n_sent++;
    return 0;
}

static int fk_submit(void *d, const void *e, size_t len)
{
    struct fake *x = d;

    if (x->submit_rv != 0)
        return x->submit_rv;
    return record(x, 1, e, len);
}

static int fk_forward(void *d, const void *e, size_t len)
{
    struct fake *x = d;

    if (x->forward_rv != 0)
        return x->forward_rv;
    return record(x, 0, e, len);
}

static void setup(void)
{
    struct ol__proposer_config cfg = {.key = &key, .retry_ms = 500};
    struct ol__proposer_ops ops = {
        .data = &f,
        .is_leader = fk_is_leader,
        .has_leader = fk_has_leader,
        .term = fk_term,
        .level = fk_level,
        .now = fk_now,
        .behind = fk_behind,
        .submit = fk_submit,
        .forward = fk_forward,
        .wake = fk_wake,
    };

    ol_log_set_level(OL_LOG_ERROR);
    memset(&f, 0, sizeof f);
    f.leader = 1;
    f.has_leader = 1;
    f.term = 7;
    f.now = 1000;
    f.level = OL_FEATURE_LEVEL;
    cr_assert_eq(ol__key_generate(&key), 0);
    cr_assert_eq(ol__proposer_create(&cfg, &ops, &p), 0);
}

static void teardown(void)
{
    ol__proposer_destroy(p);
    for (size_t i = 0; i < f.n_sent; i++) {
        ol__entry_free(&f.sent[i]);
        free(f.sent_bytes[i]);
    }
}

TestSuite(propose, .init = setup, .fini = teardown);

/* Propose checkpoint `seq` of `agent` with a body naming both. */
static int ckpt(const char *agent, uint64_t epoch, uint64_t seq)
{
    uint8_t hash[OL_HASH_SIZE];
    char text[96];
    size_t len = (size_t)snprintf(text, sizeof text, "%s/%llu", agent,
                                  (unsigned long long)seq);
    uint8_t *body = malloc(len);
    int rv;

    memcpy(body, text, len);
    ol__ckpt_hash(body, len, hash);
    rv = ol__proposer_ckpt(p, agent, epoch, seq, body, len, hash);
    if (rv != 0)
        free(body);
    return rv;
}

static int stop_cmd(uint64_t req, const char *agent)
{
    struct ol__entry_w w;
    int rv;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_stop(&w, req, agent), 0);
    rv = ol__proposer_cmds(p, &w, 0);
    ol__entry_w_close(&w);
    return rv;
}

/* How many checkpoint bodies entry `i` carries in its CKPTS command. */
static uint32_t bodies_in(size_t i)
{
    uint32_t n = 0;

    for (uint32_t k = 0; k < f.sent[i].n; k++)
        if (f.sent[i].cmds[k].type == OL_CMD_CKPTS)
            n += f.sent[i].cmds[k].n_bodies;
    return n;
}

static void applied_ckpt(const char *agent, uint64_t epoch, uint64_t seq)
{
    struct ol__effects fx;
    struct ol__effect *e = calloc(1, sizeof *e);

    ol__effects_init(&fx);
    e->type = OL_FX_CKPT;
    snprintf(e->u.ckpt.agent, sizeof e->u.ckpt.agent, "%s", agent);
    e->u.ckpt.epoch = epoch;
    e->u.ckpt.seq = seq;
    fx.head = fx.tail = e;
    fx.n = 1;
    ol__proposer_on_effects(p, &fx);
    ol__effects_free(&fx);
}

static void applied_cmd(uint64_t req)
{
    struct ol__effects fx;
    struct ol__effect *e = calloc(1, sizeof *e);

    ol__effects_init(&fx);
    e->type = OL_FX_CMD;
    e->u.cmd.req = req;
    fx.head = fx.tail = e;
    fx.n = 1;
    ol__proposer_on_effects(p, &fx);
    ol__effects_free(&fx);
}

/* `ms` later: the timer's scan for retries, then a flush. */
static void later_ms(uint64_t ms)
{
    f.now += ms;
    ol__proposer_retry(p, 0);
    ol__proposer_flush(p);
}

/* A STOP command as a follower's entry carries it, decoded into `dec`
 * (whose raw form the leader is handed). */
static void forwarded_stop(uint64_t req, struct ol__entry *dec)
{
    struct ol__entry_w w;
    struct ol__buf e;
    char err[OL_ERRMSG_SIZE];

    ol__entry_w_init(&w);
    ol__buf_init(&e);
    cr_assert_eq(ol__entry_add_stop(&w, req, "remote"), 0);
    cr_assert_eq(ol__entry_w_finish(&w, &e), 0);
    cr_assert_eq(ol__entry_decode(e.base, e.len, dec, err), 0, "%s", err);
    /* dec points into e: keep the bytes with it */
    dec->cmds[0].raw.p = memcpy(malloc(dec->cmds[0].raw.len),
                                dec->cmds[0].raw.p, dec->cmds[0].raw.len);
    ol__buf_close(&e);
    ol__entry_w_close(&w);
}

Test(propose, proposals_wait_for_a_flush_then_go_out_as_one_sealed_entry)
{
    cr_assert_eq(ckpt("a", 1, 1), 0);
    cr_assert_eq(ckpt("b", 1, 1), 0);
    cr_assert_eq(stop_cmd(42, "c"), 0);
    cr_assert_eq(f.n_sent, 0, "nothing goes out before the flush");
    cr_assert_gt(f.wakes, 0, "a proposal asks its owner for a flush");
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 1, "one entry for all three");
    cr_assert_eq(f.sent_leader[0], 1, "the leader submits to raft");
    cr_assert_eq(f.sent[0].term, 7, "tagged with the leader's term");
    cr_assert_eq(f.sent[0].n, 2, "one STOP and one CKPTS command");
    cr_assert_eq(f.sent[0].cmds[0].type, OL_CMD_STOP);
    cr_assert_eq(f.sent[0].cmds[0].req, 42);
    cr_assert_eq(bodies_in(0), 2);
    cr_assert_eq(ol__proposer_pending(p), 3, "kept until applied");
}

Test(propose, outcomes_forget_what_they_decide_and_nothing_else)
{
    struct ol__proposer_counters n;

    cr_assert_eq(ckpt("a", 1, 1), 0);
    cr_assert_eq(ckpt("b", 1, 1), 0);
    cr_assert_eq(stop_cmd(42, "c"), 0);
    ol__proposer_flush(p);
    applied_ckpt("a", 1, 1);
    applied_ckpt("b", 1, 9); /* another seq: not ours */
    applied_cmd(43);         /* another request */
    cr_assert_eq(ol__proposer_pending(p), 2);
    applied_cmd(42);
    applied_ckpt("b", 1, 1);
    cr_assert_eq(ol__proposer_pending(p), 0);
    /* Nothing is left to retry. */
    f.now += 10000;
    ol__proposer_retry(p, 1);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 1);
    ol__proposer_counters(p, &n);
    cr_assert_eq(n.entries, 1);
    cr_assert_eq(n.ckpts_proposed, 2);
    cr_assert_eq(n.retries, 0);
}

Test(propose, a_newer_checkpoint_of_an_agent_replaces_an_unsent_one)
{
    cr_assert_eq(ckpt("a", 1, 1), 0);
    cr_assert_eq(ckpt("a", 1, 2), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 1);
    cr_assert_eq(bodies_in(0), 1, "only the newer one is sent");
    cr_assert_eq(f.sent[0].cmds[0].bodies[0].len, 3);
    cr_assert_eq(memcmp(f.sent[0].cmds[0].bodies[0].p, "a/2", 3), 0);
    cr_assert_eq(ol__proposer_pending(p), 1);
}

Test(propose, an_entry_holds_at_most_the_checkpoint_limit)
{
    char name[32];

    for (int i = 0; i < OL_PROP_ENTRY_MAX_CKPTS + 10; i++) {
        snprintf(name, sizeof name, "agent-%d", i);
        cr_assert_eq(ckpt(name, 1, 1), 0);
    }
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 2);
    cr_assert_eq(bodies_in(0), OL_PROP_ENTRY_MAX_CKPTS);
    cr_assert_eq(bodies_in(1), 10);
}

/* Forwarded batches that waited together are not merged into one entry
 * past an entry's worth of applying: each weighs 600 here, so no two fit
 * in one entry. */
Test(propose, forwarded_batches_go_out_in_entries_of_bounded_weight)
{
    struct ol__entry dec[3];

    for (int i = 0; i < 3; i++) {
        forwarded_stop(100 + (uint64_t)i, &dec[i]);
        cr_assert_eq(ol__proposer_add_forwarded(p, &dec[i].cmds[0].raw, 600),
                     0);
    }
    cr_assert_eq(ol__proposer_n_forwarded(p), 3);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 3, "three batches of 600 in %zu entries",
                 f.n_sent);
    for (size_t i = 0; i < 3; i++) {
        cr_expect_eq(f.sent[i].n, 1);
        cr_expect_eq(f.sent[i].cmds[0].req, 100 + i, "in the order received");
    }
    cr_assert_eq(ol__proposer_n_forwarded(p), 0);
    for (int i = 0; i < 3; i++) {
        free((void *)dec[i].cmds[0].raw.p);
        ol__entry_free(&dec[i]);
    }
}

/* A leader with more of its own checkpoints than one entry holds does not
 * keep a forwarded command waiting behind all of them: it rides in the
 * second entry, not the last. */
Test(propose, forwarded_commands_do_not_wait_behind_all_the_leaders_own)
{
    struct ol__entry dec;
    char name[32];
    int found = 0;

    for (int i = 0; i < 2 * OL_PROP_ENTRY_MAX_CKPTS + 10; i++) {
        snprintf(name, sizeof name, "agent-%d", i);
        cr_assert_eq(ckpt(name, 1, 1), 0);
    }
    forwarded_stop(9, &dec);
    cr_assert_eq(ol__proposer_add_forwarded(p, &dec.cmds[0].raw, 1), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 3);
    cr_assert_eq(bodies_in(0), OL_PROP_ENTRY_MAX_CKPTS);
    for (uint32_t i = 0; i < f.sent[1].n; i++)
        found |= f.sent[1].cmds[i].req == 9;
    cr_expect(found, "the forwarded STOP is not in the second entry");
    cr_expect_eq(bodies_in(0) + bodies_in(1) + bodies_in(2),
                 2 * OL_PROP_ENTRY_MAX_CKPTS + 10, "every body went out");
    free((void *)dec.cmds[0].raw.p);
    ol__entry_free(&dec);
}

Test(propose, the_leader_stops_at_the_limit_of_entries_in_flight)
{
    char name[32];

    /* One entry per flush round: each round is a separate agent set. */
    for (int i = 0; i < OL_PROP_APPLIES_MAX; i++) {
        snprintf(name, sizeof name, "agent-%d", i);
        cr_assert_eq(ckpt(name, 1, 1), 0);
        ol__proposer_flush(p);
    }
    cr_assert_eq(f.n_sent, OL_PROP_APPLIES_MAX);
    cr_assert_eq(ckpt("one-more", 1, 1), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, OL_PROP_APPLIES_MAX, "held while all in flight");
    f.wakes = 0;
    ol__proposer_submitted(p, 0);
    cr_assert_eq(f.wakes, 1, "a finished entry asks for a flush");
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, OL_PROP_APPLIES_MAX + 1);
}

Test(propose, a_follower_forwards_and_waits_without_a_leader)
{
    f.leader = 0;
    f.has_leader = 0;
    cr_assert_eq(stop_cmd(5, "a"), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 0, "no leader: nowhere to send");
    f.has_leader = 1;
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 1);
    cr_assert_eq(f.sent_leader[0], 0, "forwarded, not submitted");
    cr_assert_eq(f.sent[0].term, 0, "a follower's entry carries no term");
}

Test(propose, a_failed_submit_is_retried_after_the_retry_time)
{
    struct ol__proposer_counters n;

    f.submit_rv = OL_ENOTLEADER;
    cr_assert_eq(ckpt("a", 1, 1), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 0);
    f.submit_rv = 0;
    later_ms(100); /* less than the retry time */
    cr_assert_eq(f.n_sent, 0, "not retried early");
    later_ms(500);
    cr_assert_eq(f.n_sent, 1, "retried once the retry time passed");
    cr_assert_eq(bodies_in(0), 1);
    ol__proposer_counters(p, &n);
    cr_assert_eq(n.retries, 1);
}

/* While the node has committed entries it has not applied, the outcome
 * may be among them: the retry clock stands still, and runs again once
 * the node has caught up.  A new leader still gets everything at once. */
Test(propose, no_retry_while_the_node_is_behind_on_applying)
{
    f.leader = 0; /* a follower: what it forwards may be lost */
    cr_assert_eq(ckpt("a", 1, 1), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 1);
    f.behind = 1;
    later_ms(2000);
    cr_assert_eq(f.n_sent, 1, "retried while behind");
    f.behind = 0;
    later_ms(100);
    cr_assert_eq(f.n_sent, 1, "the time spent behind counted toward a retry");
    later_ms(500);
    cr_assert_eq(f.n_sent, 2, "not retried once caught up for the retry time");
    f.behind = 1;
    ol__proposer_retry(p, 1); /* the leader changed */
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 3, "a new leader waits for no catching up");
}

/* What the leader handed to consensus commits, or leadership is lost:
 * it is not sent again on the timer, however long the commit takes.  A
 * failed entry puts it back on the timer; a new leader gets it at once. */
Test(propose, the_leaders_submitted_proposals_wait_for_their_commit)
{
    cr_assert_eq(ckpt("a", 1, 1), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 1);
    later_ms(5000);
    cr_assert_eq(f.n_sent, 1, "a submitted proposal was sent again");
    ol__proposer_submitted(p, 1); /* the entry failed */
    later_ms(500);
    cr_assert_eq(f.n_sent, 2, "not sent again after its entry failed");
    ol__proposer_retry(p, 1); /* the leader changed */
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 3, "not sent again to a new leader");
}

/* Outcomes that came back slowly (1.2 s here, against a retry time of
 * 500 ms) make a follower's retry wait twice that: a retry before the
 * original's outcome would only be applied twice. */
Test(propose, slow_outcomes_stretch_the_retry_time)
{
    f.leader = 0;
    cr_assert_eq(ckpt("a", 1, 1), 0);
    ol__proposer_flush(p);
    f.now += 1200;
    applied_ckpt("a", 1, 1);
    cr_assert_eq(ol__proposer_pending(p), 0);
    cr_assert_eq(ckpt("b", 1, 1), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 2);
    later_ms(1000); /* past 500 ms, short of 2 x 1.2 s */
    cr_assert_eq(f.n_sent, 2, "retried before twice the recent latency");
    later_ms(1500);
    cr_assert_eq(f.n_sent, 3, "not retried after twice the recent latency");
}

Test(propose, a_new_leader_gets_everything_again_with_the_same_request_ids)
{
    cr_assert_eq(stop_cmd(77, "a"), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 1);
    ol__proposer_retry(p, 1); /* the leader changed */
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 2);
    cr_assert_eq(f.sent[1].n, 1);
    cr_assert_eq(f.sent[1].cmds[0].req, 77, "a retry keeps its request id");
}

Test(propose, commands_above_the_cluster_level_are_refused)
{
    struct ol__entry_w w;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_move(&w, 1, "a", 2, 3, 4, 5, 0), 0);
    cr_assert_geq(w.level, 2);
    f.level = 1;
    cr_assert_eq(ol__proposer_cmds(p, &w, 0), OL_ENOTSUP);
    cr_assert_eq(ol__proposer_pending(p), 0);
    f.level = w.level;
    cr_assert_eq(ol__proposer_cmds(p, &w, 0), 0);
    cr_assert_eq(ol__proposer_pending(p), 1);
    ol__entry_w_close(&w);
}

Test(propose, forwarded_commands_ride_in_the_leaders_next_entry)
{
    struct ol__entry dec;

    forwarded_stop(9, &dec);
    cr_assert_eq(ol__proposer_add_forwarded(p, &dec.cmds[0].raw, 1), 0);
    cr_assert_eq(ol__proposer_n_forwarded(p), 1);
    cr_assert_eq(ckpt("a", 1, 1), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 1);
    cr_assert_eq(f.sent[0].n, 2, "own CKPTS plus the forwarded STOP");
    cr_assert_eq(f.sent[0].cmds[1].req, 9);
    cr_assert_eq(ol__proposer_n_forwarded(p), 0);
    cr_assert_eq(ol__proposer_pending(p), 1,
                 "forwarded commands are the sender's to retry");
    /* Leadership lost: what was forwarded is dropped. */
    cr_assert_eq(ol__proposer_add_forwarded(p, &dec.cmds[0].raw, 1), 0);
    ol__proposer_drop_forwarded(p);
    cr_assert_eq(ol__proposer_n_forwarded(p), 0);
    free((void *)dec.cmds[0].raw.p);
    ol__entry_free(&dec);
}

Test(propose, after_shutdown_proposals_are_refused)
{
    ol__proposer_shutdown(p);
    f.wakes = 0;
    cr_assert_eq(ckpt("a", 1, 1), OL_ESHUTDOWN);
    cr_assert_eq(stop_cmd(1, "a"), OL_ESHUTDOWN);
    cr_assert_eq(f.wakes, 0);
    cr_assert_eq(ol__proposer_pending(p), 0);
}

/* A leader's placements, proposed as its own (ol__proposer_lead_cmds),
 * are forgotten when it is deposed: the next leader would refuse every
 * one of them ("not that node's to propose").  Its other commands, and
 * its checkpoints, still go to the new leader. */
Test(propose, a_deposed_leader_drops_its_pending_placements_only)
{
    struct ol__entry_w w;

    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_move(&w, 501, "m1", 2, 1, 1, 7, 0), 0);
    cr_assert_eq(ol__entry_add_move(&w, 502, "m2", 3, 1, 1, 7, 0), 0);
    cr_assert_eq(ol__proposer_lead_cmds(p, &w), 0);
    ol__entry_w_close(&w);
    cr_assert_eq(stop_cmd(77, "a"), 0);
    cr_assert_eq(ckpt("b", 1, 1), 0);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 1, "the leader submitted all of it");
    cr_assert_eq(ol__proposer_pending(p), 4);

    /* Deposed: everything is offered again to the new leader... */
    f.leader = 0;
    ol__proposer_retry(p, 1);
    cr_assert_eq(ol__proposer_drop_lead(p), 2, "the two moves dropped");
    cr_assert_eq(ol__proposer_pending(p), 2);
    ol__proposer_flush(p);
    cr_assert_eq(f.n_sent, 2);
    cr_assert_eq(f.sent_leader[1], 0, "forwarded to the new leader");
    /* ...but the moves: a STOP and a CKPTS command, no MOVE. */
    cr_assert_eq(f.sent[1].n, 2);
    for (uint32_t i = 0; i < f.sent[1].n; i++)
        cr_assert_neq(f.sent[1].cmds[i].type, OL_CMD_MOVE,
                      "a dropped placement was forwarded");
    cr_assert_eq(ol__proposer_drop_lead(p), 0, "nothing more to drop");
}

Test(propose, only_a_leader_proposes_placements_as_its_own)
{
    struct ol__entry_w w;

    f.leader = 0;
    ol__entry_w_init(&w);
    cr_assert_eq(ol__entry_add_move(&w, 503, "m", 2, 1, 1, 7, 0), 0);
    cr_assert_eq(ol__proposer_lead_cmds(p, &w), OL_ENOTLEADER);
    ol__entry_w_close(&w);
    cr_assert_eq(ol__proposer_pending(p), 0);
}
