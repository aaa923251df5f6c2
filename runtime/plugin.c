/*
 * Binding a plugin: dlopen() it, call its entry and check what comes back.
 * Everything a plugin returns is input: the entry's return code, the
 * vtable pointer, its abi, size and function pointers are all checked
 * before anything calls into it.  Agent hosts bind the plugin they run;
 * a node binds only plugins configured to run in its own process
 * (code.c finds, copies and hashes the file first).
 */
#include "plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"

/* The size of a version-1 vtable: a plugin must provide at least this. */
#define VTABLE_V1_SIZE                                                     \
    (offsetof(struct ol_agent_vtable, close) +                             \
     sizeof(((struct ol_agent_vtable *)0)->close))

static int hash_file(const char *path, uint8_t out[OL_HASH_SIZE],
                     char *errmsg)
{
    crypto_generichash_state st;
    uint8_t buf[65536];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        ol__errf(errmsg, "plugin '%s': %s", path, strerror(errno));
        return OL_EIO;
    }
    crypto_generichash_init(&st, NULL, 0, OL_HASH_SIZE);
    while ((n = read(fd, buf, sizeof buf)) > 0)
        crypto_generichash_update(&st, buf, (size_t)n);
    close(fd);
    if (n < 0) {
        ol__errf(errmsg, "plugin '%s': read: %s", path, strerror(errno));
        return OL_EIO;
    }
    crypto_generichash_final(&st, out, OL_HASH_SIZE);
    return 0;
}

static int bounded_str(const char *s, size_t max)
{
    return s != NULL && strnlen(s, max + 1) <= max && s[0] != '\0';
}

int ol__plugin_load_path(const char *path, const char *kind,
                         const struct ol_host *host, struct ol__plugin *p,
                         char *errmsg)
{
    uint8_t hash[OL_HASH_SIZE];
    int rv = hash_file(path, hash, errmsg);

    if (rv != 0)
        return rv;
    rv = ol__plugin_bind(path, NULL, kind, host, p, errmsg);
    memcpy(p->so_hash, hash, OL_HASH_SIZE);
    return rv;
}

/* What a plugin's vtable must hold for kind `kind`: OL_EABI for another
 * ABI, OL_EPLUGIN for a missing or wrong member. */
static int check_vtable(const struct ol_agent_vtable *vt, const char *path,
                        const char *kind, char *errmsg)
{
    const char *missing = NULL;

    if (vt->abi != OL_AGENT_ABI) {
        ol__errf(errmsg,
                 "plugin '%s' is built for agent ABI %u; this host speaks "
                 "ABI %d (rebuild it against this outlast/agent.h)",
                 path, vt->abi, OL_AGENT_ABI);
        return OL_EABI;
    }
    if (vt->size < VTABLE_V1_SIZE) {
        ol__errf(errmsg,
                 "plugin '%s': vtable is %u bytes, ABI %d needs at least "
                 "%zu",
                 path, vt->size, OL_AGENT_ABI, (size_t)VTABLE_V1_SIZE);
        return OL_EABI;
    }
    if (!bounded_str(vt->kind, OL_KIND_MAX))
        missing = "kind";
    else if (!bounded_str(vt->version, OL_VERSION_MAX))
        missing = "version";
    else if (vt->open == NULL)
        missing = "open";
    else if (vt->restore == NULL)
        missing = "restore";
    else if (vt->handle == NULL)
        missing = "handle";
    else if (vt->save == NULL)
        missing = "save";
    if (missing) {
        ol__errf(errmsg, "plugin '%s': vtable has no valid '%s'", path,
                 missing);
        return OL_EPLUGIN;
    }
    if (strcmp(vt->kind, kind) != 0) {
        ol__errf(errmsg, "plugin '%s' declares kind '%.64s', expected '%s'",
                 path, vt->kind, kind);
        return OL_EPLUGIN;
    }
    return 0;
}

/* The vtable the plugin's entry hands back, or OL_EPLUGIN. */
static int entry_vtable(void *dl, const char *path,
                        const struct ol_host *host,
                        const struct ol_agent_vtable **vt, char *errmsg)
{
    int (*entry)(const struct ol_host *, const struct ol_agent_vtable **);
    int rv;

    *(void **)&entry = dlsym(dl, OL_AGENT_ENTRY_SYMBOL);
    if (entry == NULL) {
        ol__errf(errmsg, "plugin '%s': missing symbol '%s'", path,
                 OL_AGENT_ENTRY_SYMBOL);
        return OL_EPLUGIN;
    }
    rv = entry(host, vt);
    if (rv != 0) {
        ol__errf(errmsg, "plugin '%s': %s() refused the host (returned %d)",
                 path, OL_AGENT_ENTRY_SYMBOL, rv);
        return OL_EPLUGIN;
    }
    if (*vt == NULL) {
        ol__errf(errmsg, "plugin '%s': %s() returned no vtable", path,
                 OL_AGENT_ENTRY_SYMBOL);
        return OL_EPLUGIN;
    }
    return 0;
}

int ol__plugin_bind(const char *file, const char *shown, const char *kind,
                    const struct ol_host *host, struct ol__plugin *p,
                    char *errmsg)
{
    const char *path = shown ? shown : file;
    const struct ol_agent_vtable *vt = NULL;
    int rv;

    memset(p, 0, sizeof *p);
    snprintf(p->kind, sizeof p->kind, "%s", kind);
    snprintf(p->path, sizeof p->path, "%s", path);
    p->dl = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        ol__errf(errmsg, "plugin '%s': cannot load: %s", path, dlerror());
        return OL_EPLUGIN;
    }
    if ((rv = entry_vtable(p->dl, path, host, &vt, errmsg)) != 0 ||
        (rv = check_vtable(vt, path, kind, errmsg)) != 0) {
        dlclose(p->dl);
        p->dl = NULL;
        return rv;
    }
    snprintf(p->version, sizeof p->version, "%s", vt->version);
    p->vt = vt;
    return 0;
}
