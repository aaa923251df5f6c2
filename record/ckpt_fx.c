/*
 * A checkpoint's effects: the open intents ([id, kind, payload, seq, idx,
 * key]) and the outcomes it records ([seq, idx, status, attempts,
 * result]), and the key that names an effect outside.  Everything read is
 * checked as hostile: an intent must be declared at or before the
 * checkpoint it is in, by one index at most once, and an outcome must be
 * of an effect declared before it and no longer open.
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/pack.h"
#include "ckpt_int.h"

void ol__effect_key(const char *agent, uint64_t seq, uint32_t idx,
                    const uint8_t prev_hash[OL_HASH_SIZE],
                    uint8_t key[OL_EFFECT_KEY_SIZE])
{
    static const char tag[] = "outlast effect key 1";
    crypto_generichash_state st;
    uint8_t num[12];

    for (int i = 0; i < 8; i++)
        num[i] = (uint8_t)(seq >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        num[8 + i] = (uint8_t)(idx >> (24 - 8 * i));
    crypto_generichash_init(&st, NULL, 0, OL_EFFECT_KEY_SIZE);
    crypto_generichash_update(&st, (const uint8_t *)tag, sizeof tag);
    crypto_generichash_update(&st, (const uint8_t *)agent,
                              strlen(agent) + 1);
    crypto_generichash_update(&st, num, sizeof num);
    crypto_generichash_update(&st, prev_hash, OL_HASH_SIZE);
    crypto_generichash_final(&st, key, OL_EFFECT_KEY_SIZE);
}

int ol__kind_valid(const char *kind)
{
    size_t n = strlen(kind);

    if (n == 0 || n > OL_AGENT_KIND_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = kind[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

void ol__ckpt_fx_free(struct ol__ckpt *c)
{
    for (uint32_t i = 0; i < c->n_effects; i++) {
        free(c->effects[i].kind);
        free(c->effects[i].payload);
    }
    free(c->effects);
    for (uint32_t i = 0; i < c->n_outcomes; i++)
        free(c->outcomes[i].result);
    free(c->outcomes);
}

void ol__ckpt_fx_pack(msgpack_packer *pk, const struct ol__ckpt *c)
{
    msgpack_pack_array(pk, c->n_effects);
    for (uint32_t i = 0; i < c->n_effects; i++) {
        const struct ol__intent *e = &c->effects[i];

        msgpack_pack_array(pk, 6);
        msgpack_pack_uint64(pk, e->id);
        ol__pk_str(pk, e->kind);
        msgpack_pack_bin_with_body(pk, e->payload, e->len);
        msgpack_pack_uint64(pk, e->seq);
        msgpack_pack_uint32(pk, e->idx);
        msgpack_pack_bin_with_body(pk, e->key, OL_EFFECT_KEY_SIZE);
    }
    msgpack_pack_array(pk, c->n_outcomes);
    for (uint32_t i = 0; i < c->n_outcomes; i++) {
        const struct ol__outcome *o = &c->outcomes[i];

        msgpack_pack_array(pk, 5);
        msgpack_pack_uint64(pk, o->seq);
        msgpack_pack_uint32(pk, o->idx);
        msgpack_pack_uint32(pk, o->status);
        msgpack_pack_uint32(pk, o->attempts);
        msgpack_pack_bin_with_body(pk, o->result, o->len);
    }
}

#define FIELD(name, expr)                                                  \
    do {                                                                   \
        *what = (name);                                                    \
        if ((expr) != 0)                                                   \
            return OL_EMALFORMED;                                          \
    } while (0)

static int read_u32(struct ol__mpr *r, uint32_t *out)
{
    uint64_t u;

    if (ol__mpr_uint(r, &u) || u > UINT32_MAX)
        return OL_EMALFORMED;
    *out = (uint32_t)u;
    return 0;
}

static int read_kind(struct ol__mpr *r, char **out)
{
    if (ol__mpr_strdup(r, OL_AGENT_KIND_MAX, out))
        return OL_EMALFORMED;
    return ol__kind_valid(*out) ? 0 : OL_EMALFORMED;
}

/* Is (seq, idx) among the first `n` intents? */
static int open_at(const struct ol__ckpt *c, uint32_t n, uint64_t seq,
                   uint32_t idx)
{
    for (uint32_t i = 0; i < n; i++)
        if (c->effects[i].seq == seq && c->effects[i].idx == idx)
            return 1;
    return 0;
}

static int read_intents(struct ol__mpr *r, struct ol__ckpt *c,
                        const char **what)
{
    uint32_t n, m;

    FIELD("effects", ol__mpr_array(r, &n) || n > OL_AGENT_EFFECTS_MAX);
    c->effects = calloc(n ? n : 1, sizeof *c->effects);
    FIELD("effects", c->effects == NULL);
    for (uint32_t i = 0; i < n; i++) {
        struct ol__intent *e = &c->effects[i];

        c->n_effects = i + 1;
        FIELD("effect", ol__mpr_array(r, &m) || m != 6);
        FIELD("effect id", ol__mpr_uint(r, &e->id));
        FIELD("effect kind", read_kind(r, &e->kind));
        FIELD("effect payload", ol__ckpt_dup_bin(r, OL_AGENT_EFFECT_MAX,
                                                 &e->payload, &e->len, 1));
        FIELD("effect seq", ol__mpr_uint(r, &e->seq) || e->seq == 0 ||
                                e->seq > c->seq);
        FIELD("effect index", read_u32(r, &e->idx) ||
                                  e->idx >= OL_AGENT_EFFECTS_MAX ||
                                  open_at(c, i, e->seq, e->idx));
        FIELD("effect key", ol__mpr_bin_fixed(r, e->key,
                                              OL_EFFECT_KEY_SIZE));
    }
    return 0;
}

static int read_outcomes(struct ol__mpr *r, struct ol__ckpt *c,
                         const char **what)
{
    uint32_t n, m;

    FIELD("outcomes", ol__mpr_array(r, &n) || n > OL_AGENT_EFFECTS_MAX);
    c->outcomes = calloc(n ? n : 1, sizeof *c->outcomes);
    FIELD("outcomes", c->outcomes == NULL);
    for (uint32_t i = 0; i < n; i++) {
        struct ol__outcome *o = &c->outcomes[i];

        c->n_outcomes = i + 1;
        FIELD("outcome", ol__mpr_array(r, &m) || m != 5);
        FIELD("outcome seq", ol__mpr_uint(r, &o->seq) || o->seq == 0 ||
                                 o->seq >= c->seq);
        FIELD("outcome index", read_u32(r, &o->idx) ||
                                   o->idx >= OL_AGENT_EFFECTS_MAX ||
                                   open_at(c, c->n_effects, o->seq, o->idx));
        FIELD("outcome status", read_u32(r, &o->status) ||
                                    (o->status != OL_EFFECT_DONE &&
                                     o->status != OL_EFFECT_FAILED));
        FIELD("outcome attempts", read_u32(r, &o->attempts));
        FIELD("outcome result", ol__ckpt_dup_bin(r, OL_AGENT_EFFECT_MAX,
                                                 &o->result, &o->len, 0));
        for (uint32_t j = 0; j < i; j++)
            FIELD("outcome", c->outcomes[j].seq == o->seq &&
                                 c->outcomes[j].idx == o->idx);
    }
    return 0;
}

int ol__ckpt_fx_read(struct ol__mpr *r, struct ol__ckpt *c,
                     const char **what)
{
    int rv = read_intents(r, c, what);

    return rv ? rv : read_outcomes(r, c, what);
}
