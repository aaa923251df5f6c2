/*
 * Plugin loading.  Everything a plugin returns is input: the entry's return
 * code, the vtable pointer, its abi, size and function pointers are all
 * checked before the host calls into it.  The file is hashed so every
 * checkpoint can name exactly which build of the plugin wrote it.
 */
#include "plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "ol_config.h"

/* The size of a version-1 vtable: a plugin must provide at least this. */
#define VTABLE_V1_SIZE                                                     \
    (offsetof(struct ol_agent_vtable, close) +                             \
     sizeof(((struct ol_agent_vtable *)0)->close))

void ol__plugins_init(struct ol__plugins *ps, const char *dir,
                      const struct ol_host *host)
{
    char exe[PATH_MAX];
    ssize_t n;

    memset(ps, 0, sizeof *ps);
    ps->host = host;
    ol__map_init(&ps->loaded);
    if (dir && dir[0]) {
        /* A colon-separated list, searched in order. */
        const char *p = dir;

        while (*p && ps->n_dirs < (int)(sizeof ps->dirs / sizeof ps->dirs[0])) {
            size_t len = strcspn(p, ":");

            if (len > 0 && len < PATH_MAX)
                snprintf(ps->dirs[ps->n_dirs++], PATH_MAX, "%.*s", (int)len,
                         p);
            p += len;
            if (*p == ':')
                p++;
        }
        return;
    }
    if (getenv("OUTLAST_PLUGIN_DIR"))
        snprintf(ps->dirs[ps->n_dirs++], PATH_MAX, "%s",
                 getenv("OUTLAST_PLUGIN_DIR"));
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        snprintf(ps->dirs[ps->n_dirs++], PATH_MAX, "%s/../../agents",
                 dirname(exe));
    }
    snprintf(ps->dirs[ps->n_dirs++], PATH_MAX, "%s", OL_PLUGINDIR);
}

void ol__plugins_close(struct ol__plugins *ps)
{
    void *v;

    for (size_t i = 0; ol__map_next(&ps->loaded, &i, &v);) {
        struct ol__plugin *p = v;

        /* Plugins stay mapped until exit: an agent's timers or work may
         * still point into them while the loop winds down. */
        free(p);
    }
    ol__map_close(&ps->loaded);
}

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
    int (*entry)(const struct ol_host *, const struct ol_agent_vtable **);
    const struct ol_agent_vtable *vt = NULL;
    const char *missing = NULL;
    int rv;

    memset(p, 0, sizeof *p);
    snprintf(p->kind, sizeof p->kind, "%s", kind);
    snprintf(p->path, sizeof p->path, "%s", path);
    rv = hash_file(path, p->so_hash, errmsg);
    if (rv != 0)
        return rv;
    p->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        ol__errf(errmsg, "plugin '%s': cannot load: %s", path, dlerror());
        return OL_EPLUGIN;
    }
    *(void **)&entry = dlsym(p->dl, OL_AGENT_ENTRY_SYMBOL);
    if (entry == NULL) {
        ol__errf(errmsg, "plugin '%s': missing symbol '%s'", path,
                 OL_AGENT_ENTRY_SYMBOL);
        goto fail;
    }
    rv = entry(host, &vt);
    if (rv != 0) {
        ol__errf(errmsg, "plugin '%s': %s() refused the host (returned %d)",
                 path, OL_AGENT_ENTRY_SYMBOL, rv);
        goto fail;
    }
    if (vt == NULL) {
        ol__errf(errmsg, "plugin '%s': %s() returned no vtable", path,
                 OL_AGENT_ENTRY_SYMBOL);
        goto fail;
    }
    if (vt->abi != OL_AGENT_ABI) {
        ol__errf(errmsg,
                 "plugin '%s' is built for agent ABI %u; this host speaks "
                 "ABI %d (rebuild it against this outlast/agent.h)",
                 path, vt->abi, OL_AGENT_ABI);
        dlclose(p->dl);
        p->dl = NULL;
        return OL_EABI;
    }
    if (vt->size < VTABLE_V1_SIZE) {
        ol__errf(errmsg,
                 "plugin '%s': vtable is %u bytes, ABI %d needs at least "
                 "%zu",
                 path, vt->size, OL_AGENT_ABI, (size_t)VTABLE_V1_SIZE);
        dlclose(p->dl);
        p->dl = NULL;
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
        goto fail;
    }
    if (strcmp(vt->kind, kind) != 0) {
        ol__errf(errmsg, "plugin '%s' declares kind '%.64s', expected '%s'",
                 path, vt->kind, kind);
        goto fail;
    }
    snprintf(p->version, sizeof p->version, "%s", vt->version);
    p->vt = vt;
    return 0;
fail:
    dlclose(p->dl);
    p->dl = NULL;
    return OL_EPLUGIN;
}

int ol__plugin_get(struct ol__plugins *ps, const char *kind,
                   struct ol__plugin **out, char *errmsg)
{
    struct ol__plugin *p = ol__map_get(&ps->loaded, kind);
    char path[PATH_MAX + 80];
    int rv;

    if (p) {
        *out = p;
        return 0;
    }
    if (!ol__name_valid(kind)) {
        ol__errf(errmsg, "'%s' is not a valid plugin kind", kind);
        return OL_EINVAL;
    }
    for (int i = 0; i < ps->n_dirs; i++) {
        struct stat st;

        snprintf(path, sizeof path, "%s/%s.so", ps->dirs[i], kind);
        if (stat(path, &st) != 0)
            continue;
        p = calloc(1, sizeof *p);
        if (p == NULL)
            return OL_ENOMEM;
        rv = ol__plugin_load_path(path, kind, ps->host, p, errmsg);
        if (rv == 0)
            rv = ol__map_put(&ps->loaded, p->kind, p);
        if (rv != 0) {
            free(p);
            return rv;
        }
        ol_log(OL_LOG_INFO, "plugin '%s' %s loaded from %s", kind,
               p->version, path);
        *out = p;
        return 0;
    }
    ol__errf(errmsg, "no plugin '%s.so' in %s%s%s%s%s", kind, ps->dirs[0],
             ps->n_dirs > 1 ? ", " : "", ps->n_dirs > 1 ? ps->dirs[1] : "",
             ps->n_dirs > 2 ? ", " : "", ps->n_dirs > 2 ? ps->dirs[2] : "");
    return OL_ENOTFOUND;
}
