/*
 * restore_fails - a test plugin that cannot load its own state.
 *
 * It runs normally (ticking on timer 1 every `interval_ms`, counting events
 * and saving {events: N}), but restore() always returns
 * OL_AGENT_EMALFORMED.  After a restart the host must quarantine the agent
 * with an error naming restore, keep its committed checkpoints, and resume
 * every other agent.
 *
 * Config: {interval_ms: uint (100)}.
 * State:  {events: uint}.
 */
#include "skeleton.h"

static int rf_open(struct ol_agent *a, const void *config, size_t len,
                   void **self)
{
    return sk_open(a, config, len, sizeof(struct sk), NULL,
                   "'interval_ms' must be a uint", self);
}

static int rf_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    (void)self;
    (void)state;
    (void)len;
    host->log(a, OL_AGENT_LOG_ERROR, "restore: refusing on purpose");
    return OL_AGENT_EMALFORMED;
}

SK_PLUGIN("restore_fails", rf_open, rf_restore, sk_handle, sk_save)
