/*
 * null_vtable - a test plugin whose entry succeeds but hands back nothing.
 *
 * ol_agent_entry() returns 0 with *out = NULL.  The host must check the
 * pointer and refuse the plugin instead of dereferencing it.
 */
#include <stddef.h>

#include <outlast/agent.h>

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    *out = NULL;
    return 0;
}
