/*
 * The node <-> agent-host wire format (see ipc.h): frame headers and the
 * two items that carry a step, packed by one side and read by the other
 * through the bounded reader.
 */
#include "ipc.h"

#include <string.h>
#include <time.h>

#include "record/ckpt.h"
#include "base/err.h"
#include "outlast/agent.h"

int ol__send_check(const char *to, const void *msg, size_t len,
                   uint32_t n_outbox)
{
    if (to == NULL || strnlen(to, OL_NAME_MAX + 1) > OL_NAME_MAX ||
        !ol__name_valid(to) || (msg == NULL && len))
        return OL_AGENT_EINVAL;
    if (len > OL_AGENT_MSG_MAX || n_outbox >= OL_AGENT_OUTBOX_MAX)
        return OL_AGENT_ETOOBIG;
    if (ol__mp_check(msg, len, NULL) != 0)
        return OL_AGENT_EMALFORMED;
    return 0;
}

void ol__ipc_hdr(uint8_t out[OL_IPC_HDR], uint32_t len)
{
    out[0] = (uint8_t)len;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 24);
}

uint32_t ol__ipc_hdr_len(const uint8_t in[OL_IPC_HDR])
{
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
           (uint32_t)in[3] << 24;
}

void ol__ipc_str(msgpack_packer *pk, const char *s)
{
    size_t n;

    if (s == NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void ol__ipc_bin(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

uint64_t ol__boot_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void ol__ipc_pack_step(msgpack_packer *pk, const struct ol__ipc_step *s)
{
    msgpack_pack_array(pk, 13);
    msgpack_pack_uint32(pk, OL_IPC_STEP);
    msgpack_pack_uint32(pk, s->slot);
    msgpack_pack_uint32(pk, s->gen);
    msgpack_pack_uint32(pk, s->type);
    msgpack_pack_int64(pk, s->now_ms);
    msgpack_pack_uint64(pk, s->epoch);
    msgpack_pack_uint32(pk, s->flags);
    msgpack_pack_uint32(pk, s->n_outbox);
    msgpack_pack_uint64(pk, s->a1);
    msgpack_pack_int64(pk, s->a2);
    msgpack_pack_uint64(pk, s->run_by);
    ol__ipc_str(pk, s->s);
    if (s->b)
        ol__ipc_bin(pk, s->b, s->b_len);
    else
        msgpack_pack_nil(pk);
}

static int u32(struct ol__mpr *r, uint32_t *out)
{
    uint64_t v;

    if (ol__mpr_uint(r, &v) != 0 || v > UINT32_MAX)
        return OL_EMALFORMED;
    *out = (uint32_t)v;
    return 0;
}

int ol__ipc_read_step(struct ol__mpr *r, struct ol__ipc_step *s)
{
    memset(s, 0, sizeof *s);
    if (u32(r, &s->slot) || u32(r, &s->gen) || u32(r, &s->type) ||
        ol__mpr_int(r, &s->now_ms) || ol__mpr_uint(r, &s->epoch) ||
        u32(r, &s->flags) || u32(r, &s->n_outbox) ||
        ol__mpr_uint(r, &s->a1) || ol__mpr_int(r, &s->a2) ||
        ol__mpr_uint(r, &s->run_by))
        return OL_EMALFORMED;
    if (ol__mpr_is_nil(r)) {
        if (ol__mpr_nil(r))
            return OL_EMALFORMED;
    } else if (ol__mpr_str(r, &s->s, &s->s_len)) {
        return OL_EMALFORMED;
    }
    if (ol__mpr_is_nil(r))
        return ol__mpr_nil(r) ? OL_EMALFORMED : 0;
    return ol__mpr_bin(r, &s->b, &s->b_len) ? OL_EMALFORMED : 0;
}

int ol__ipc_raw(struct ol__mpr *r, const void **p, size_t *len)
{
    size_t start = r->off;

    if (ol__mpr_skip(r) != 0)
        return OL_EMALFORMED;
    *p = r->base + start;
    *len = r->off - start;
    return 0;
}

int ol__ipc_read_result(struct ol__mpr *r, struct ol__ipc_result *res)
{
    memset(res, 0, sizeof *res);
    if (u32(r, &res->slot) || u32(r, &res->gen) ||
        ol__mpr_int(r, &res->rv) || u32(r, &res->flags))
        return OL_EMALFORMED;
    res->ops = *r;
    if (ol__mpr_array(r, &res->n_ops) || res->n_ops % 3 != 0)
        return OL_EMALFORMED;
    for (uint32_t i = 0; i < res->n_ops; i++)
        if (ol__mpr_skip(r))
            return OL_EMALFORMED;
    res->sends = *r;
    if (ol__mpr_array(r, &res->n_sends) || res->n_sends % 2 != 0)
        return OL_EMALFORMED;
    for (uint32_t i = 0; i < res->n_sends; i++)
        if (ol__mpr_skip(r))
            return OL_EMALFORMED;
    if (u32(r, &res->works))
        return OL_EMALFORMED;
    if (ol__mpr_is_nil(r)) {
        if (ol__mpr_nil(r))
            return OL_EMALFORMED;
    } else if (ol__mpr_bin(r, &res->state, &res->state_len)) {
        return OL_EMALFORMED;
    }
    if (ol__mpr_int(r, &res->save_rv))
        return OL_EMALFORMED;
    res->effects = *r;
    if (ol__mpr_array(r, &res->n_effects) || res->n_effects % 3 != 0)
        return OL_EMALFORMED;
    for (uint32_t i = 0; i < res->n_effects; i++)
        if (ol__mpr_skip(r))
            return OL_EMALFORMED;
    return 0;
}

void ol__ipc_pack_perform(msgpack_packer *pk, const struct ol__ipc_perform *p)
{
    msgpack_pack_array(pk, 14);
    msgpack_pack_uint32(pk, OL_IPC_PERFORM);
    msgpack_pack_uint32(pk, p->slot);
    msgpack_pack_uint32(pk, p->gen);
    msgpack_pack_uint64(pk, p->token);
    msgpack_pack_uint64(pk, p->e.epoch);
    msgpack_pack_uint64(pk, p->run_by);
    msgpack_pack_int64(pk, p->e.deadline_ms);
    msgpack_pack_uint32(pk, p->e.attempt);
    msgpack_pack_uint32(pk, p->e.in_doubt ? 1 : 0);
    msgpack_pack_uint64(pk, p->e.effect_id);
    ol__ipc_str(pk, p->e.node);
    ol__ipc_str(pk, p->e.key);
    ol__ipc_str(pk, p->e.kind);
    ol__ipc_bin(pk, p->e.payload, p->e.len);
}

int ol__ipc_read_perform(struct ol__mpr *r, struct ol__ipc_perform *p)
{
    uint64_t doubt;
    uint32_t len;

    memset(p, 0, sizeof *p);
    p->e.size = sizeof p->e;
    if (u32(r, &p->slot) || u32(r, &p->gen) ||
        ol__mpr_uint(r, &p->token) || ol__mpr_uint(r, &p->e.epoch) ||
        ol__mpr_uint(r, &p->run_by) || ol__mpr_int(r, &p->e.deadline_ms) ||
        u32(r, &p->e.attempt) || ol__mpr_uint(r, &doubt) ||
        ol__mpr_uint(r, &p->e.effect_id) ||
        ol__mpr_strcpy(r, p->node, sizeof p->node) ||
        ol__mpr_strcpy(r, p->key, sizeof p->key) ||
        ol__mpr_strcpy(r, p->kind, sizeof p->kind) ||
        ol__mpr_bin(r, &p->e.payload, &len) || len > OL_AGENT_EFFECT_MAX)
        return OL_EMALFORMED;
    p->e.len = len;
    p->e.in_doubt = doubt != 0;
    p->e.node = p->node;
    p->e.key = p->key;
    p->e.kind = p->kind;
    return 0;
}

int ol__bounce_parse(const void *p, size_t len, char *to, char *why,
                     const void **msg, size_t *msg_len)
{
    struct ol__mpr r;
    uint32_t n;
    size_t start;

    ol__mpr_init(&r, p, len);
    if (ol__mpr_array(&r, &n) || n != 3 ||
        ol__mpr_strcpy(&r, to, OL_NAME_MAX + 1) ||
        ol__mpr_strcpy(&r, why, 160))
        return OL_EMALFORMED;
    start = r.off;
    if (ol__mpr_skip(&r) || r.off != len)
        return OL_EMALFORMED;
    *msg = (const uint8_t *)p + start;
    *msg_len = len - start;
    return 0;
}
