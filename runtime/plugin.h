/*
 * Binding a plugin's shared object: dlopen() it, call its entry with a host
 * table and check what comes back.  A plugin built for another ABI,
 * without the entry symbol, or with an incomplete vtable is refused with a
 * message that says which.  Finding the file and keeping a private copy of
 * it is code.c's job; running it is an agent host's (agenthost/) or, for
 * plugins trusted to run inside the node, the node's.
 */
#ifndef OL_PLUGIN_H
#define OL_PLUGIN_H

#include <limits.h>
#include <stdint.h>

#include "base/keys.h"
#include "base/sizes.h"
#include "outlast/agent.h"

struct ol__plugin {
    char kind[OL_KIND_MAX + 1];
    char version[OL_VERSION_MAX + 1];
    char path[PATH_MAX];
    uint8_t so_hash[OL_HASH_SIZE]; /* BLAKE2b-256 of the file */
    void *dl;
    const struct ol_agent_vtable *vt;
};

/* Bind the plugin at `file` and check that it declares `kind`.  Returns 0,
 * OL_EABI or OL_EPLUGIN with errmsg naming the file (as `shown`, if not
 * NULL) and the problem.  A bound plugin stays mapped for the life of the
 * process. */
int ol__plugin_bind(const char *file, const char *shown, const char *kind,
                    const struct ol_host *host, struct ol__plugin *out,
                    char *errmsg);

/* Hash the file, then bind it (for tests and tools). */
int ol__plugin_load_path(const char *path, const char *kind,
                         const struct ol_host *host, struct ol__plugin *out,
                         char *errmsg);

#endif
