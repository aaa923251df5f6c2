/*
 * What the agent host and the node's in-process host share behind struct
 * ol_host (hostapi.h).
 */
#include "hostapi.h"

#include <stdio.h>
#include <stdlib.h>

const char *ol__host_version(void)
{
    return OL_VERSION_STRING;
}

struct ol__witem *ol__witem_new(ol_work_fn fn, void *arg, uint64_t id,
                                uint64_t epoch, const char *name)
{
    struct ol__witem *it = calloc(1, sizeof *it);

    if (it == NULL)
        return NULL;
    it->fn = fn;
    it->arg = arg;
    it->id = id;
    it->epoch = epoch;
    snprintf(it->name, sizeof it->name, "%s", name);
    return it;
}
