/*
 * huge_state - a test plugin whose saved state outgrows the limit.
 *
 * It ticks on timer 1 every `interval_ms` and counts events.  While it has
 * handled at most `after` events it saves {events: N}; after that save()
 * writes one bin object of OL_AGENT_STATE_MAX + 1 bytes.  Unless `honest`
 * is set it ignores the sink's refusal and returns 0, so the host must
 * notice the overflow itself.  Either way the host must reject the
 * checkpoint, quarantine the agent and keep the last good checkpoint.
 *
 * With `notify` set, every event k sends {n: k} to that agent; the send
 * from the step with huge state must never be released.
 *
 * Config: {interval_ms: uint (100), after: uint (0), honest: uint (0),
 *          notify: str (none)}.
 * State:  {events: uint}, then a bin of OL_AGENT_STATE_MAX + 1 bytes.
 */
#include "skeleton.h"

struct self {
    struct sk sk;
    uint64_t after;
    uint64_t honest;
};

static bool hs_config(const msgpack_object *cfg, void *self)
{
    struct self *s = self;

    s->after = 0;
    s->honest = 0;
    return sk_get_uint(cfg, "after", &s->after) &&
           sk_get_uint(cfg, "honest", &s->honest);
}

static int hs_open(struct ol_agent *a, const void *config, size_t len,
                   void **self)
{
    return sk_open(a, config, len, sizeof(struct self), hs_config,
                   "'interval_ms', 'after' and 'honest' must be uints, "
                   "'notify' an agent name",
                   self);
}

/* Writes a bin of OL_AGENT_STATE_MAX + 1 zero bytes; returns the first
 * error the sink gave, or 0. */
static int save_huge(const struct ol_sink *out)
{
    static const char chunk[64 * 1024];
    msgpack_packer pk;
    size_t left = (size_t)OL_AGENT_STATE_MAX + 1;
    int rv;

    msgpack_packer_init(&pk, out->data, out->write);
    rv = msgpack_pack_bin(&pk, (uint32_t)left);
    while (rv == 0 && left > 0) {
        size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
        rv = msgpack_pack_bin_body(&pk, chunk, n);
        left -= n;
    }
    return rv;
}

static int hs_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    const struct self *s = self;
    int rv;

    if (s->sk.events <= s->after)
        return sk_save(self, a, out);
    rv = save_huge(out);
    return s->honest && rv != 0 ? OL_AGENT_ETOOBIG : 0;
}

SK_PLUGIN("huge_state", hs_open, sk_restore, sk_handle, hs_save)
