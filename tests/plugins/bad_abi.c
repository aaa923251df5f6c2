/*
 * bad_abi - a test plugin built for another generation of the ABI.
 *
 * Everything about it is well formed except the vtable's `abi`, which is
 * 99.  The host must refuse to load it with an error naming the ABI, and
 * must keep running every other agent.
 */
#include <stddef.h>

#include <outlast/agent.h>

static int bad_open(struct ol_agent *a, const void *config, size_t len,
                    void **self)
{
    *self = NULL;
    return 0;
}

static int bad_restore(void *self, struct ol_agent *a, const void *state,
                       size_t len)
{
    return 0;
}

static int bad_handle(void *self, struct ol_agent *a,
                      const struct ol_event *ev)
{
    return 0;
}

static int bad_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    return out->write(out->data, "\x80", 1); /* {} */
}

static const struct ol_agent_vtable vtable = {
    .abi = 99,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "bad_abi",
    .version = "0",
    .open = bad_open,
    .restore = bad_restore,
    .handle = bad_handle,
    .save = bad_save,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    *out = &vtable;
    return 0;
}
