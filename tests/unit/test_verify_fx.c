/* Unit tests for the effect chain check (state/verify_fx.c), on
 * hand-built checkpoints of one agent "keeper".  The prev_hash of
 * checkpoint s is 32 bytes of value s, so every key can be derived here.
 *
 * The good chain:
 *   1: declares (1,0) and (1,1)
 *   2: carries both, declares (2,0)
 *   3: records the outcome of (1,0), carries (1,1) and (2,0)
 *   4: records the outcomes of (1,1) and (2,0)
 *   5: nothing open */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state/verify_fx.h"

#define N_CK 5

static struct ol__ckpt ck[N_CK + 1]; /* ck[seq] */

struct problems {
    int n;
    uint64_t seq[16];
    uint32_t idx[16];
    uint64_t at[16]; /* the checkpoint being checked */
    char text[16][256];
    uint64_t now;
};

static void collect(void *data, uint64_t seq, uint32_t idx,
                    const char *problem)
{
    struct problems *p = data;

    if (p->n < 16) {
        p->seq[p->n] = seq;
        p->idx[p->n] = idx;
        p->at[p->n] = p->now;
        snprintf(p->text[p->n], sizeof p->text[0], "%s", problem);
    }
    p->n++;
}

static void prev_hash_of(uint64_t seq, uint8_t out[OL_HASH_SIZE])
{
    memset(out, (int)seq, OL_HASH_SIZE);
}

/* The effect (seq, idx): id seq * 10 + idx, kind "note", payload the
 * msgpack string "p<seq><idx>". */
static void add_intent(struct ol__ckpt *c, uint64_t seq, uint32_t idx)
{
    struct ol__intent *e;
    uint8_t ph[OL_HASH_SIZE];

    c->effects = realloc(c->effects, (c->n_effects + 1) * sizeof *e);
    cr_assert_not_null(c->effects);
    e = &c->effects[c->n_effects++];
    memset(e, 0, sizeof *e);
    e->id = seq * 10 + idx;
    e->kind = strdup("note");
    e->payload = malloc(4);
    e->payload[0] = 0xa3;
    e->payload[1] = 'p';
    e->payload[2] = (uint8_t)('0' + seq);
    e->payload[3] = (uint8_t)('0' + idx);
    e->len = 4;
    e->seq = seq;
    e->idx = idx;
    prev_hash_of(seq, ph);
    ol__effect_key("keeper", seq, idx, ph, e->key);
}

static void add_outcome(struct ol__ckpt *c, uint64_t seq, uint32_t idx)
{
    struct ol__outcome *o;

    c->outcomes = realloc(c->outcomes, (c->n_outcomes + 1) * sizeof *o);
    cr_assert_not_null(c->outcomes);
    o = &c->outcomes[c->n_outcomes++];
    memset(o, 0, sizeof *o);
    o->seq = seq;
    o->idx = idx;
    o->status = OL_EFFECT_DONE;
    o->attempts = 1;
    o->result = malloc(1);
    o->result[0] = 0xc0;
    o->len = 1;
}

static struct ol__intent *intent(uint64_t at, uint64_t seq, uint32_t idx)
{
    for (uint32_t i = 0; i < ck[at].n_effects; i++)
        if (ck[at].effects[i].seq == seq && ck[at].effects[i].idx == idx)
            return &ck[at].effects[i];
    cr_assert_fail("no intent (%llu, %u) in seq %llu",
                   (unsigned long long)seq, idx, (unsigned long long)at);
    return NULL;
}

static void setup(void)
{
    memset(ck, 0, sizeof ck);
    for (uint64_t s = 1; s <= N_CK; s++) {
        ck[s].agent = strdup("keeper");
        ck[s].seq = s;
        ck[s].epoch = 1;
        prev_hash_of(s, ck[s].prev_hash);
    }
    add_intent(&ck[1], 1, 0);
    add_intent(&ck[1], 1, 1);
    add_intent(&ck[2], 1, 0);
    add_intent(&ck[2], 1, 1);
    add_intent(&ck[2], 2, 0);
    add_outcome(&ck[3], 1, 0);
    add_intent(&ck[3], 1, 1);
    add_intent(&ck[3], 2, 0);
    add_outcome(&ck[4], 1, 1);
    add_outcome(&ck[4], 2, 0);
}

static void teardown(void)
{
    for (int s = 0; s <= N_CK; s++)
        ol__ckpt_free(&ck[s]);
}

TestSuite(verify_fx, .init = setup, .fini = teardown);

/* Check seqs from..to in order; the problems found. */
static struct problems run(uint64_t from, uint64_t to)
{
    struct ol__vfx_chain fc;
    struct problems p;
    int total = 0;

    memset(&fc, 0, sizeof fc);
    memset(&p, 0, sizeof p);
    for (uint64_t s = from; s <= to; s++) {
        p.now = s;
        total += ol__vfx_step(&fc, &ck[s], collect, &p);
        cr_assert_null(ck[s].effects, "the open effects were not taken");
    }
    cr_assert_eq(total, p.n, "returned %d problems, reported %d", total,
                 p.n);
    ol__vfx_reset(&fc);
    return p;
}

static void expect_one(const struct problems *p, uint64_t at, uint64_t seq,
                       uint32_t idx, const char *words)
{
    cr_assert_eq(p->n, 1, "%d problems (wanted 1); first: %s", p->n,
                 p->n ? p->text[0] : "none");
    cr_expect_eq(p->at[0], at, "found at seq %llu, wanted %llu",
                 (unsigned long long)p->at[0], (unsigned long long)at);
    cr_expect_eq(p->seq[0], seq);
    cr_expect_eq(p->idx[0], idx);
    cr_expect_not_null(strstr(p->text[0], words), "'%s' does not say '%s'",
                       p->text[0], words);
}

Test(verify_fx, a_good_chain_passes)
{
    struct problems p = run(1, N_CK);

    cr_assert_eq(p.n, 0, "a good chain has a problem: %s", p.text[0]);
}

Test(verify_fx, a_changed_payload_is_named)
{
    struct problems p;

    intent(3, 1, 1)->payload[3] = '9';
    p = run(1, N_CK);
    expect_one(&p, 3, 1, 1, "payload differs from the one open in seq 2");
}

Test(verify_fx, a_changed_id_kind_or_key_is_named)
{
    struct problems p;

    intent(2, 1, 0)->id = 77;
    p = run(1, 2);
    expect_one(&p, 2, 1, 0, "effect id differs");
    teardown();
    setup();
    intent(3, 2, 0)->kind[0] = 'm';
    p = run(1, N_CK);
    expect_one(&p, 3, 2, 0, "kind differs");
    teardown();
    setup();
    intent(3, 2, 0)->key[5] ^= 1;
    p = run(1, N_CK);
    cr_assert_eq(p.n, 1, "%d problems: %s", p.n, p.text[0]);
    expect_one(&p, 3, 2, 0, "key differs");
}

Test(verify_fx, an_open_intent_dropped_without_outcome_is_named)
{
    struct problems p;

    /* seq 3 forgets (2,0): no longer open, no outcome. */
    free(ck[3].effects[1].kind);
    free(ck[3].effects[1].payload);
    ck[3].n_effects = 1;
    p = run(1, 3);
    expect_one(&p, 3, 2, 0,
               "open in seq 2, it is gone from the open effects without "
               "an outcome");
}

Test(verify_fx, an_outcome_for_an_unknown_effect_is_named)
{
    struct problems p;

    add_outcome(&ck[5], 2, 5);
    p = run(1, N_CK);
    expect_one(&p, 5, 2, 5, "outcome is recorded for an effect that was "
                            "not open in seq 4");
}

Test(verify_fx, a_second_outcome_for_a_closed_effect_is_named)
{
    struct problems p;

    add_outcome(&ck[5], 1, 0); /* closed in seq 3 */
    p = run(1, N_CK);
    expect_one(&p, 5, 1, 0, "not open in seq 4");
}

Test(verify_fx, a_wrong_key_of_a_new_effect_is_named)
{
    struct problems p;
    uint8_t other[OL_HASH_SIZE];

    /* Derived with seq 1's prev_hash instead of seq 2's; carried on as it
     * is, so only its declaration is wrong. */
    prev_hash_of(1, other);
    ol__effect_key("keeper", 2, 0, other, intent(2, 2, 0)->key);
    ol__effect_key("keeper", 2, 0, other, intent(3, 2, 0)->key);
    p = run(1, N_CK);
    expect_one(&p, 2, 2, 0, "key is not the one derived from (agent, seq, "
                            "index, prev_hash)");
}

Test(verify_fx, a_gap_in_new_indexes_is_named)
{
    struct problems p;

    /* seq 2 declares index 1 with no index 0. */
    intent(2, 2, 0)->idx = 1;
    ol__effect_key("keeper", 2, 1, ck[2].prev_hash, intent(2, 2, 1)->key);
    p = run(1, 2);
    expect_one(&p, 2, 2, 1, "leaves a gap");
}

Test(verify_fx, an_intent_carried_but_never_declared_is_named)
{
    struct problems p;

    add_intent(&ck[4], 3, 0); /* seq 3 declared nothing */
    p = run(1, N_CK);
    cr_assert_eq(p.n, 2, "%d problems: %s", p.n, p.text[0]);
    cr_expect_eq(p.seq[0], 3);
    cr_expect_not_null(strstr(p.text[0], "carried as open but was not open "
                                         "in seq 3"),
                       "%s", p.text[0]);
    /* ...and then it vanishes in seq 5 without an outcome. */
    cr_expect_eq(p.at[1], 5);
    cr_expect_not_null(strstr(p.text[1], "without an outcome"), "%s",
                       p.text[1]);
}

Test(verify_fx, a_pruned_chain_is_checked_from_its_first_stored_row)
{
    struct problems p;

    /* Stored from seq 3 on: (1,1) and (2,0) carried from rows not stored,
     * and the outcome of (1,0) is for one of them. */
    p = run(3, N_CK);
    cr_assert_eq(p.n, 0, "a pruned good chain has a problem: %s", p.text[0]);
    /* From there on links are checked. */
    teardown();
    setup();
    intent(3, 1, 1)->payload[3] = '8'; /* first stored: nothing to compare */
    add_outcome(&ck[5], 1, 1);         /* closed in seq 4 already */
    p = run(3, N_CK);
    expect_one(&p, 5, 1, 1, "not open in seq 4");
}

/* Check seqs 1 and 2, which have no problem. */
static void first_two(struct ol__vfx_chain *fc, struct problems *p)
{
    memset(fc, 0, sizeof *fc);
    memset(p, 0, sizeof *p);
    cr_assert_eq(ol__vfx_step(fc, &ck[1], collect, p), 0);
    cr_assert_eq(ol__vfx_step(fc, &ck[2], collect, p), 0);
}

Test(verify_fx, a_gap_in_the_chain_starts_the_check_again)
{
    struct ol__vfx_chain fc;
    struct problems p;

    /* 1, 2, then 4 (seq 3 missing: a snapshot install): 4's outcomes are
     * for effects 2 held open, but 3 is not at hand, so not compared. */
    first_two(&fc, &p);
    free(ck[4].outcomes[1].result);
    ck[4].outcomes[1].seq = 3; /* (3,0) was never declared */
    ck[4].outcomes[1].result = NULL;
    ck[4].outcomes[1].len = 0;
    cr_assert_eq(ol__vfx_step(&fc, &ck[4], collect, &p), 0, "%s",
                 p.text[0]);
    ol__vfx_reset(&fc);
}

Test(verify_fx, another_agents_row_is_not_linked)
{
    struct ol__vfx_chain fc;
    struct problems p;

    first_two(&fc, &p);
    /* "other" seq 3, with nothing open: keeper's effects are not its. */
    ol__ckpt_free(&ck[3]);
    ck[3].agent = strdup("other");
    ck[3].seq = 3;
    cr_assert_eq(ol__vfx_step(&fc, &ck[3], collect, &p), 0, "%s",
                 p.text[0]);
    ol__vfx_reset(&fc);
}
