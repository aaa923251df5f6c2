/*
 * The checkpoint codec.  Encoding packs a fixed-position msgpack array with
 * msgpack-c, whose packer always picks the shortest form, so one struct has
 * one encoding.  Decoding goes through the bounded reader and checks every
 * field, size and nested msgpack blob; the signature is checked on the
 * exact bytes received, before any of them are decoded.
 */
#include "ckpt.h"
#include "ckpt_int.h"
#include "cmd.h"

#include <msgpack.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mpr.h"
#include "base/pack.h"

void ol__ckpt_free(struct ol__ckpt *c)
{
    if (c == NULL)
        return;
    free(c->agent);
    free(c->plugin.kind);
    free(c->plugin.version);
    free(c->state);
    for (uint32_t i = 0; i < c->n_outbox; i++) {
        free(c->outbox[i].to);
        free(c->outbox[i].data);
    }
    free(c->outbox);
    free(c->timers);
    for (uint32_t i = 0; i < c->n_acks; i++)
        free(c->acks[i].from);
    free(c->acks);
    ol__ckpt_fx_free(c);
    memset(c, 0, sizeof *c);
}

int ol__name_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > OL_NAME_MAX || name[0] == '.' || name[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-'))
            return 0;
    }
    return 1;
}

int ol__ckpt_encode(const struct ol__ckpt *c, struct ol__buf *out)
{
    msgpack_packer pk;
    size_t start = out->len;

    msgpack_packer_init(&pk, out, ol__buf_write);
    msgpack_pack_array(&pk, c->n_effects || c->n_outcomes
                                ? OL_CKPT_FIELDS_FX
                                : OL_CKPT_FIELDS);
    msgpack_pack_uint32(&pk, OL_CKPT_FORMAT);
    ol__pk_str(&pk, c->agent);
    msgpack_pack_uint64(&pk, c->epoch);
    msgpack_pack_uint64(&pk, c->seq);
    msgpack_pack_bin_with_body(&pk, c->prev_hash, OL_HASH_SIZE);
    msgpack_pack_int64(&pk, c->time_ms);
    msgpack_pack_array(&pk, 3);
    ol__pk_str(&pk, c->plugin.kind);
    ol__pk_str(&pk, c->plugin.version);
    msgpack_pack_bin_with_body(&pk, c->plugin.so_hash, OL_HASH_SIZE);
    msgpack_pack_bin_with_body(&pk, c->signer, OL_PK_SIZE);
    msgpack_pack_uint32(&pk, c->flags);
    msgpack_pack_bin_with_body(&pk, c->state, c->state_len);
    msgpack_pack_array(&pk, c->n_outbox);
    for (uint32_t i = 0; i < c->n_outbox; i++) {
        msgpack_pack_array(&pk, 2);
        ol__pk_str(&pk, c->outbox[i].to);
        msgpack_pack_bin_with_body(&pk, c->outbox[i].data, c->outbox[i].len);
    }
    msgpack_pack_array(&pk, c->n_timers);
    for (uint32_t i = 0; i < c->n_timers; i++) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, c->timers[i].id);
        msgpack_pack_int64(&pk, c->timers[i].due_ms);
    }
    msgpack_pack_array(&pk, c->n_acks);
    for (uint32_t i = 0; i < c->n_acks; i++) {
        msgpack_pack_array(&pk, 3);
        ol__pk_str(&pk, c->acks[i].from);
        msgpack_pack_uint64(&pk, c->acks[i].seq);
        msgpack_pack_uint32(&pk, c->acks[i].idx);
    }
    if (c->n_effects || c->n_outcomes)
        ol__ckpt_fx_pack(&pk, c);
    /* The packer ignores write errors; a short buffer means one failed. */
    if (out->base == NULL || out->len == start)
        return OL_ENOMEM;
    return 0;
}

void ol__ckpt_hash(const void *body, size_t len, uint8_t hash[OL_HASH_SIZE])
{
    crypto_generichash(hash, OL_HASH_SIZE, body, len, NULL, 0);
}

/* Decode helpers: each sets `what` for the error message. */
#define FIELD(name, expr)                                                  \
    do {                                                                   \
        what = (name);                                                     \
        if ((expr) != 0)                                                   \
            goto bad;                                                      \
    } while (0)

int ol__ckpt_dup_bin(struct ol__mpr *r, uint32_t max, uint8_t **out,
                     uint32_t *len, int must_be_msgpack)
{
    const void *p;

    if (ol__mpr_bin(r, &p, len) || *len > max)
        return OL_EMALFORMED;
    if (must_be_msgpack && ol__mp_check(p, *len, NULL) != 0)
        return OL_EMALFORMED;
    *out = malloc(*len ? *len : 1);
    if (*out == NULL)
        return OL_ENOMEM;
    memcpy(*out, p, *len);
    return 0;
}

static int read_name(struct ol__mpr *r, char **out)
{
    if (ol__mpr_strdup(r, OL_NAME_MAX, out))
        return OL_EMALFORMED;
    if (!ol__name_valid(*out))
        return OL_EMALFORMED;
    return 0;
}

/* A sender is an agent name, "@cli", "@config" or "@bounce". */
static int read_sender(struct ol__mpr *r, char **out)
{
    if (ol__mpr_strdup(r, OL_NAME_MAX, out))
        return OL_EMALFORMED;
    if (!ol__name_valid(*out) && strcmp(*out, "@cli") != 0 &&
        strcmp(*out, OL_AGENT_CONFIG_SENDER) != 0 &&
        strcmp(*out, OL_AGENT_BOUNCE_SENDER) != 0)
        return OL_EMALFORMED;
    return 0;
}

/* The acknowledged messages; on error *what names the field. */
static int read_acks(struct ol__mpr *r, struct ol__ckpt *c,
                     const char **what)
{
    uint32_t n, m;
    uint64_t u;

#define AFIELD(name, expr)                                                 \
    do {                                                                   \
        *what = (name);                                                    \
        if ((expr) != 0)                                                   \
            return OL_EMALFORMED;                                          \
    } while (0)
    AFIELD("acks", ol__mpr_array(r, &n) || n > OL_ACKS_MAX);
    c->acks = calloc(n ? n : 1, sizeof *c->acks);
    AFIELD("acks", c->acks == NULL);
    for (uint32_t i = 0; i < n; i++) {
        struct ol__msgid *a = &c->acks[i];

        c->n_acks = i + 1;
        AFIELD("ack", ol__mpr_array(r, &m) || m != 3);
        AFIELD("ack sender", read_sender(r, &a->from));
        AFIELD("ack seq", ol__mpr_uint(r, &a->seq));
        AFIELD("ack index", ol__mpr_uint(r, &u) || u > UINT32_MAX);
        a->idx = (uint32_t)u;
    }
#undef AFIELD
    return 0;
}

static int decode(const void *body, size_t len, struct ol__ckpt *c,
                  char *errmsg, int with_state)
{
    struct ol__mpr r;
    uint32_t n, m, fields;
    uint64_t u;
    const char *what = "record";

    memset(c, 0, sizeof *c);
    ol__mpr_init(&r, body, len);
    /* Effects came with feature level 4: a node held below it reads
     * only what an older build would. */
    FIELD("record", ol__mpr_array(&r, &fields) ||
                        (fields != OL_CKPT_FIELDS &&
                         (fields != OL_CKPT_FIELDS_FX ||
                          ol__cmd_level() < OL_CKPT_FX_LEVEL)));
    FIELD("format", ol__mpr_uint(&r, &u) || u != OL_CKPT_FORMAT);
    FIELD("agent", read_name(&r, &c->agent));
    FIELD("epoch", ol__mpr_uint(&r, &c->epoch) || c->epoch == 0);
    FIELD("seq", ol__mpr_uint(&r, &c->seq) || c->seq == 0);
    FIELD("prev_hash", ol__mpr_bin_fixed(&r, c->prev_hash, OL_HASH_SIZE));
    FIELD("time", ol__mpr_int(&r, &c->time_ms));
    FIELD("plugin", ol__mpr_array(&r, &m) || m != 3);
    FIELD("plugin kind", ol__mpr_strdup(&r, OL_KIND_MAX, &c->plugin.kind));
    FIELD("plugin version",
          ol__mpr_strdup(&r, OL_VERSION_MAX, &c->plugin.version));
    FIELD("plugin hash",
          ol__mpr_bin_fixed(&r, c->plugin.so_hash, OL_HASH_SIZE));
    FIELD("signer", ol__mpr_bin_fixed(&r, c->signer, OL_PK_SIZE));
    FIELD("flags", ol__mpr_uint(&r, &u) || u > UINT32_MAX);
    c->flags = (uint32_t)u;
    if (with_state) {
        FIELD("state", ol__ckpt_dup_bin(&r, OL_AGENT_STATE_MAX, &c->state,
                               &c->state_len, 1));
    } else {
        const void *st;

        FIELD("state", ol__mpr_bin(&r, &st, &c->state_len) ||
                           c->state_len > OL_AGENT_STATE_MAX);
    }

    FIELD("outbox", ol__mpr_array(&r, &n) || n > OL_AGENT_OUTBOX_MAX);
    c->outbox = calloc(n ? n : 1, sizeof *c->outbox);
    FIELD("outbox", c->outbox == NULL);
    for (uint32_t i = 0; i < n; i++) {
        struct ol__outmsg *o = &c->outbox[i];

        c->n_outbox = i + 1;
        FIELD("outbox entry", ol__mpr_array(&r, &m) || m != 2);
        FIELD("outbox recipient", read_name(&r, &o->to));
        FIELD("outbox message",
              ol__ckpt_dup_bin(&r, OL_AGENT_MSG_MAX, &o->data, &o->len, 1));
    }

    FIELD("timers", ol__mpr_array(&r, &n) || n > OL_AGENT_TIMERS_MAX);
    c->timers = calloc(n ? n : 1, sizeof *c->timers);
    FIELD("timers", c->timers == NULL);
    c->n_timers = n;
    for (uint32_t i = 0; i < n; i++) {
        FIELD("timer", ol__mpr_array(&r, &m) || m != 2);
        FIELD("timer id", ol__mpr_uint(&r, &c->timers[i].id));
        FIELD("timer due", ol__mpr_int(&r, &c->timers[i].due_ms));
    }

    FIELD(what, read_acks(&r, c, &what));
    if (fields == OL_CKPT_FIELDS_FX) {
        FIELD(what, ol__ckpt_fx_read(&r, c, &what));
        /* One struct, one encoding: no effects means 13 fields. */
        FIELD("effects", c->n_effects == 0 && c->n_outcomes == 0);
    }
    FIELD("trailing bytes", !ol__mpr_done(&r));
    return 0;

bad:
    if (errmsg)
        ol__errf(errmsg, "checkpoint field '%s' is malformed (byte %zu)",
                 what, r.off);
    ol__ckpt_free(c);
    return OL_EMALFORMED;
}

int ol__ckpt_decode(const void *body, size_t len, struct ol__ckpt *c,
                    char *errmsg)
{
    return decode(body, len, c, errmsg, 1);
}

int ol__ckpt_decode_meta(const void *body, size_t len, struct ol__ckpt *c,
                         char *errmsg)
{
    return decode(body, len, c, errmsg, 0);
}
