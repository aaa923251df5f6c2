/*
 * The plugin loader: finds <kind>.so in the plugin directories, dlopen()s
 * it, calls its entry with the host table and checks what comes back.  A
 * plugin built for another ABI, without the entry symbol, or with an
 * incomplete vtable is refused with a message that says which.
 */
#ifndef OL_PLUGIN_H
#define OL_PLUGIN_H

#include <limits.h>
#include <stdint.h>

#include "../replication/ckpt.h"
#include "map.h"
#include "outlast/agent.h"

struct ol__plugin {
    char kind[OL_KIND_MAX + 1];
    char version[OL_VERSION_MAX + 1];
    char path[PATH_MAX];
    uint8_t so_hash[OL_HASH_SIZE]; /* BLAKE2b-256 of the file */
    void *dl;
    const struct ol_agent_vtable *vt;
};

struct ol__plugins {
    char dirs[4][PATH_MAX]; /* searched in order */
    int n_dirs;
    const struct ol_host *host;
    struct ol__map loaded; /* kind -> struct ol__plugin * */
};

/* Set up the search path: `dir` (a colon-separated list) if not empty, else $OUTLAST_PLUGIN_DIR,
 * <exe dir>/../agents (the build tree) and the installed plugin dir. */
void ol__plugins_init(struct ol__plugins *ps, const char *dir,
                      const struct ol_host *host);
void ol__plugins_close(struct ol__plugins *ps);

/* Load (once) and return the plugin for `kind`.  Returns 0, OL_ENOTFOUND
 * (no file), OL_EABI or OL_EPLUGIN with errmsg naming the file and the
 * problem. */
int ol__plugin_get(struct ol__plugins *ps, const char *kind,
                   struct ol__plugin **out, char *errmsg);

/* Load one file directly (for tests and tools). */
int ol__plugin_load_path(const char *path, const char *kind,
                         const struct ol_host *host, struct ol__plugin *out,
                         char *errmsg);

#endif
