/*
 * handle_fails - a test plugin whose handler fails on a given event.
 *
 * It ticks on timer 1 every `interval_ms` and counts the events it has
 * handled.  The `fail_on`-th event (START is the first) returns
 * OL_AGENT_EINVAL instead.  The host must quarantine the agent, keep its
 * committed history (events = fail_on - 1), release nothing from the failed
 * step, and keep running every other agent.
 *
 * With `notify` set, every event k sends {n: k} to that agent, the failing
 * one included, so a ledger there must end with n = fail_on - 1.
 *
 * Config: {interval_ms: uint (100), fail_on: uint (3), notify: str (none)}.
 * State:  {events: uint}.
 */
#include "skeleton.h"

struct self {
    struct sk sk;
    uint64_t fail_on;
};

static bool hf_config(const msgpack_object *cfg, void *self)
{
    struct self *s = self;

    s->fail_on = 3;
    return sk_get_uint(cfg, "fail_on", &s->fail_on);
}

static int hf_open(struct ol_agent *a, const void *config, size_t len,
                   void **self)
{
    return sk_open(a, config, len, sizeof(struct self), hf_config,
                   "'interval_ms' and 'fail_on' must be uints, 'notify' an "
                   "agent name",
                   self);
}

static int hf_handle(void *self, struct ol_agent *a,
                     const struct ol_event *ev)
{
    struct self *s = self;

    if (s->sk.events + 1 == s->fail_on) {
        /* The notice sent here must never be released: the step fails. */
        (void)sk_notify(a, &s->sk, s->fail_on);
        host->log(a, OL_AGENT_LOG_ERROR, "event %llu: failing on purpose",
                  (unsigned long long)s->fail_on);
        return OL_AGENT_EINVAL;
    }
    return sk_handle(self, a, ev);
}

SK_PLUGIN("handle_fails", hf_open, sk_restore, hf_handle, sk_save)
