/*
 * no_entry - a test plugin that exports no ol_agent_entry.
 *
 * It exports a near miss instead (an entry under an older name), so the
 * shared object loads but dlsym() of the real entry fails.  The host must
 * refuse it with an error naming the missing symbol.
 */
#include <stddef.h>

#include <outlast/agent.h>

OL_AGENT_EXPORT int ol_agent_entry_v0(const struct ol_host *h,
                                      const void **out);

OL_AGENT_EXPORT int ol_agent_entry_v0(const struct ol_host *h,
                                      const void **out)
{
    *out = NULL;
    return 0;
}
