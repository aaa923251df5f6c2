/* Sample records shared by the codec tests. */
#include "sample.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *packed_map(uint32_t *len, int v)
{
    struct ol__buf b;
    msgpack_packer pk;
    size_t n;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_int(&pk, v);
    uint8_t *p = ol__buf_steal(&b, &n);
    *len = (uint32_t)n;
    return p;
}

void sample_ckpt_fill(struct ol__ckpt *c, const struct ol__key *k,
                      const char *agent, uint64_t seq)
{
    memset(c, 0, sizeof *c);
    c->agent = strdup(agent);
    c->epoch = 3;
    c->seq = seq;
    memset(c->prev_hash, seq == 1 ? 0 : 0xab, sizeof c->prev_hash);
    c->time_ms = 1700000000123;
    c->plugin.kind = strdup("counter");
    c->plugin.version = strdup("1.0.0");
    memset(c->plugin.so_hash, 0x5a, sizeof c->plugin.so_hash);
    memcpy(c->signer, k->pk, OL_PK_SIZE);
    c->flags = 0;
    c->state = packed_map(&c->state_len, (int)seq);
    c->n_outbox = 2;
    c->outbox = calloc(2, sizeof *c->outbox);
    c->outbox[0].to = strdup("ledger");
    c->outbox[0].data = packed_map(&c->outbox[0].len, 1);
    c->outbox[1].to = strdup("other-agent");
    c->outbox[1].data = packed_map(&c->outbox[1].len, 2);
    c->n_timers = 1;
    c->timers = calloc(1, sizeof *c->timers);
    c->timers[0].id = 7;
    c->timers[0].due_ms = 1700000001000;
    c->n_acks = 1;
    c->acks = calloc(1, sizeof *c->acks);
    c->acks[0].from = strdup("@cli");
    c->acks[0].seq = 99;
    c->acks[0].idx = 0;
}
