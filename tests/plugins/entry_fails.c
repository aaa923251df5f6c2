/*
 * entry_fails - a test plugin whose entry point refuses the host.
 *
 * ol_agent_entry() returns -1 and leaves *out alone.  The host must treat
 * the plugin as unloadable and must not read *out.
 */
#include <stddef.h>

#include <outlast/agent.h>

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    return -1;
}
