/*
 * The effect chain of one agent across consecutive checkpoints: what
 * verify_fx.h lists, for `outlast verify` (verify_store.c walks the rows
 * and hands each verified checkpoint here in seq order).
 */
#include "verify_fx.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void intents_free(struct ol__intent *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        free(v[i].kind);
        free(v[i].payload);
    }
    free(v);
}

void ol__vfx_reset(struct ol__vfx_chain *fc)
{
    intents_free(fc->open, fc->n_open);
    memset(fc, 0, sizeof *fc);
}

static const struct ol__intent *find_intent(const struct ol__intent *v,
                                            uint32_t n, uint64_t seq,
                                            uint32_t idx)
{
    for (uint32_t i = 0; i < n; i++)
        if (v[i].seq == seq && v[i].idx == idx)
            return &v[i];
    return NULL;
}

static const struct ol__outcome *find_outcome(const struct ol__ckpt *c,
                                              uint64_t seq, uint32_t idx)
{
    for (uint32_t i = 0; i < c->n_outcomes; i++)
        if (c->outcomes[i].seq == seq && c->outcomes[i].idx == idx)
            return &c->outcomes[i];
    return NULL;
}

struct ctx {
    ol__vfx_cb cb;
    void *data;
    int problems;
};

static void problem(struct ctx *x, uint64_t seq, uint32_t idx,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void problem(struct ctx *x, uint64_t seq, uint32_t idx,
                    const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    x->problems++;
    if (x->cb)
        x->cb(x->data, seq, idx, msg);
}

/* The effects `c` declares: indexes 0..k-1, each with its key. */
static void check_new(struct ctx *x, const struct ol__ckpt *c)
{
    uint8_t key[OL_EFFECT_KEY_SIZE];
    uint32_t k = 0;

    for (uint32_t i = 0; i < c->n_effects; i++)
        k += c->effects[i].seq == c->seq;
    for (uint32_t i = 0; i < c->n_effects; i++) {
        const struct ol__intent *e = &c->effects[i];

        if (e->seq != c->seq)
            continue;
        /* Indexes are distinct (the decoder sees to it): all below k
         * means exactly 0..k-1. */
        if (e->idx >= k)
            problem(x, e->seq, e->idx,
                    "index %" PRIu32 " leaves a gap: this checkpoint "
                    "declares %" PRIu32 " effect(s), indexed from 0",
                    e->idx, k);
        ol__effect_key(c->agent, c->seq, e->idx, c->prev_hash, key);
        if (memcmp(key, e->key, OL_EFFECT_KEY_SIZE) != 0)
            problem(x, e->seq, e->idx,
                    "its key is not the one derived from (agent, seq, "
                    "index, prev_hash)");
    }
}

/* An intent carried from the checkpoint before: the same record. */
static void check_carried(struct ctx *x, const struct ol__intent *was,
                          const struct ol__intent *e, uint64_t prev_seq)
{
    const char *what = NULL;

    if (was == NULL) {
        problem(x, e->seq, e->idx,
                "it is carried as open but was not open in seq %" PRIu64,
                prev_seq);
        return;
    }
    if (was->id != e->id)
        what = "effect id";
    else if (strcmp(was->kind, e->kind) != 0)
        what = "kind";
    else if (was->len != e->len ||
             memcmp(was->payload, e->payload, e->len) != 0)
        what = "payload";
    else if (memcmp(was->key, e->key, OL_EFFECT_KEY_SIZE) != 0)
        what = "key";
    if (what)
        problem(x, e->seq, e->idx,
                "its %s differs from the one open in seq %" PRIu64, what,
                prev_seq);
}

/* `c` against the open effects of the checkpoint just before it. */
static void check_link(struct ctx *x, const struct ol__vfx_chain *fc,
                       const struct ol__ckpt *c)
{
    for (uint32_t i = 0; i < c->n_effects; i++) {
        const struct ol__intent *e = &c->effects[i];

        if (e->seq != c->seq)
            check_carried(x, find_intent(fc->open, fc->n_open, e->seq,
                                         e->idx),
                          e, fc->seq);
    }
    for (uint32_t i = 0; i < fc->n_open; i++) {
        const struct ol__intent *was = &fc->open[i];

        if (find_intent(c->effects, c->n_effects, was->seq, was->idx) ==
                NULL &&
            find_outcome(c, was->seq, was->idx) == NULL)
            problem(x, was->seq, was->idx,
                    "open in seq %" PRIu64 ", it is gone from the open "
                    "effects without an outcome",
                    fc->seq);
    }
    for (uint32_t i = 0; i < c->n_outcomes; i++) {
        const struct ol__outcome *o = &c->outcomes[i];

        if (find_intent(fc->open, fc->n_open, o->seq, o->idx) == NULL)
            problem(x, o->seq, o->idx,
                    "an outcome is recorded for an effect that was not "
                    "open in seq %" PRIu64,
                    fc->seq);
    }
}

int ol__vfx_step(struct ol__vfx_chain *fc, struct ol__ckpt *c, ol__vfx_cb cb,
                 void *data)
{
    struct ctx x = {cb, data, 0};

    check_new(&x, c);
    if (fc->seq != 0 && c->seq == fc->seq + 1 &&
        strcmp(fc->agent, c->agent) == 0)
        check_link(&x, fc, c);
    ol__vfx_reset(fc);
    snprintf(fc->agent, sizeof fc->agent, "%s", c->agent);
    fc->seq = c->seq;
    fc->open = c->effects;
    fc->n_open = c->n_effects;
    c->effects = NULL;
    c->n_effects = 0;
    return x.problems;
}
