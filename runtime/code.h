/*
 * Plugin code as the node keeps it.  A plugin file is never mapped where
 * it was found: it is copied into a private, content-addressed store in the
 * data directory (code/<hash>.so) while it is hashed, and everything runs
 * from the copy, so installing a new build over the old file (`cp`) cannot
 * change code that is running.  The hash is the one every checkpoint names.
 *
 * A kind has one current code; agents of the kind run the code they were
 * started with until they are restarted or rolled (upgrade.c) onto the
 * current one.  How a kind runs is its configuration ([plugin.KIND]): in an
 * agent-host process (the default; hostproc.c), or inside the node.
 *
 * Loading is asynchronous for hosted code: the code is LOADING until its
 * host process has bound the plugin and said HELLO (with the version), or
 * FAILED with the plugin's error.  Code that runs inside the node is
 * bound at once.
 */
#ifndef OL_CODE_H
#define OL_CODE_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "base/err.h"
#include "base/map.h"
#include "plugin.h"

struct ol__node;
struct ol__hostproc;

enum ol__code_state {
    OL_CODE_LOADING = 1,
    OL_CODE_READY = 2,
    OL_CODE_FAILED = 3,
};

typedef void (*ol__code_cb)(void *data, int status, const char *errmsg);

struct ol__code_wait {
    struct ol__code_wait *next;
    ol__code_cb cb;
    void *data;
};

struct ol__code {
    struct ol__codes *cs;
    char kind[OL_KIND_MAX + 1];
    char version[OL_VERSION_MAX + 1];
    uint8_t hash[OL_HASH_SIZE];
    char hash_hex[2 * OL_HASH_SIZE + 1];
    char src[PATH_MAX];  /* the file it was copied from */
    char path[PATH_MAX]; /* the private copy */
    struct ol__plugin_cfg cfg;
    int state;           /* enum ol__code_state */
    int err;
    char errmsg[OL_ERRMSG_SIZE];
    unsigned refs;       /* agent instances, plus one while current */
    struct ol__code_wait *waiters;
    struct ol__plugin plugin;     /* bound here when running in the node */
    struct ol__hostproc *hp;      /* its host process, when hosted */
    int wanted;                   /* an upgrade asked for this build */
    uint64_t hp_not_before_ms;    /* restart back-off (monotonic) */
    unsigned hp_quick_deaths;     /* host deaths soon after a start */
    struct ol__code *next;
};

struct ol__codes {
    struct ol__node *node;
    char dirs[6][PATH_MAX]; /* searched in order; the data dir's first */
    int n_dirs;
    char store[PATH_MAX];   /* <data_dir>/code */
    struct ol__map current; /* kind -> struct ol__code * */
    struct ol__code *all;
    /* The file each current code came from, to notice a new build. */
    struct ol__map seen;    /* kind -> struct ol__code_seen * */
};

/* Set up the search path: <data_dir>/plugins, then `dir` (a colon-separated
 * list) if not empty, else $OUTLAST_PLUGIN_DIR, <exe dir>/../agents (the
 * build tree) and the installed plugin dir.  Returns 0 or OL_EIO with
 * errmsg (the store directory cannot be made). */
int ol__codes_init(struct ol__codes *cs, struct ol__node *n,
                   const char *data_dir, const char *dir, char *errmsg);
void ol__codes_close(struct ol__codes *cs);

/*
 * The current code for `kind`, loading it if there is none yet or, with
 * `recheck`, if the file in the search path has changed since it was
 * loaded.  Returns 0 with *out (possibly still LOADING), or OL_ENOTFOUND /
 * OL_EIO / OL_EABI / OL_EPLUGIN with errmsg.  The pointer stays valid
 * while the caller holds a reference (ol__code_ref).
 */
int ol__code_current(struct ol__codes *cs, const char *kind, int recheck,
                     struct ol__code **out, char *errmsg);

/* Load `path` as new code for `kind` (not yet current); *out comes with a
 * reference the caller drops with ol__code_unref().  Same returns. */
int ol__code_load(struct ol__codes *cs, const char *kind, const char *path,
                  struct ol__code **out, char *errmsg);

/* Make `c` the current code of its kind. */
void ol__code_make_current(struct ol__code *c);

/* Call cb once `c` is READY or FAILED (at once if it is already). */
void ol__code_wait(struct ol__code *c, ol__code_cb cb, void *data);

/* The host process reported HELLO (status 0) or failed to load. */
void ol__code_loaded(struct ol__code *c, int status, const char *version,
                     const char *errmsg);

void ol__code_ref(struct ol__code *c);
void ol__code_unref(struct ol__code *c);

/* The code's host process, started if there is none (or the last one
 * died).  Never NULL for hosted code unless out of memory. */
struct ol__hostproc *ol__code_host(struct ol__code *c);

/* How long to wait before starting a host for it again, after hosts that
 * died soon after they started (ms; 0: now). */
uint64_t ol__code_restart_wait(const struct ol__code *c);

/* Is this code run inside the node? */
int ol__code_inproc(const struct ol__code *c);

/* Iterate over every code object (current or still in use). */
struct ol__code *ol__codes_first(struct ol__codes *cs);

#endif
