/*
 * bad_state - a test plugin whose saved state is not msgpack.
 *
 * It ticks on timer 1 every `interval_ms` and counts events.  While it has
 * handled at most `after` events it saves {events: N}; after that save()
 * writes the single byte 0xc1, which msgpack reserves and never uses, and
 * returns 0 as if all were well.  The host must reject the checkpoint,
 * quarantine the agent, and keep the last good checkpoint.
 *
 * With `notify` set, every event k sends {n: k} to that agent; the send
 * from the step with bad state must never be released.
 *
 * Config: {interval_ms: uint (100), after: uint (0), notify: str (none)}.
 * State:  {events: uint}, then 0xc1.
 */
#include "skeleton.h"

struct self {
    struct sk sk;
    uint64_t after;
};

static bool bs_config(const msgpack_object *cfg, void *self)
{
    struct self *s = self;

    s->after = 0;
    return sk_get_uint(cfg, "after", &s->after);
}

static int bs_open(struct ol_agent *a, const void *config, size_t len,
                   void **self)
{
    return sk_open(a, config, len, sizeof(struct self), bs_config,
                   "'interval_ms' and 'after' must be uints, 'notify' an "
                   "agent name",
                   self);
}

static int bs_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    const struct self *s = self;

    if (s->sk.events <= s->after)
        return sk_save(self, a, out);
    return out->write(out->data, "\xc1", 1) < 0 ? OL_AGENT_ETOOBIG : 0;
}

SK_PLUGIN("bad_state", bs_open, sk_restore, sk_handle, bs_save)
