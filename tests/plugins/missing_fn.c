/*
 * missing_fn - a test plugin whose vtable lacks a required function.
 *
 * The vtable has the right ABI and size but handle is NULL.  The host must
 * refuse the plugin at load time, naming the missing member, rather than
 * crash on the first event.
 */
#include <stddef.h>

#include <outlast/agent.h>

static int mf_open(struct ol_agent *a, const void *config, size_t len,
                   void **self)
{
    *self = NULL;
    return 0;
}

static int mf_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    return 0;
}

static int mf_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    return out->write(out->data, "\x80", 1); /* {} */
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "missing_fn",
    .version = "0",
    .open = mf_open,
    .restore = mf_restore,
    .handle = NULL,
    .save = mf_save,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h->abi != OL_AGENT_ABI)
        return OL_AGENT_EINVAL;
    *out = &vtable;
    return 0;
}
