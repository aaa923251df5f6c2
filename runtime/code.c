/*
 * The code store (see code.h).  Copying and hashing happen in one pass
 * over the file; the copy is written to a temporary name and renamed to
 * its hash, so a store file is either complete or absent and never
 * changes once it exists.  Copies of code no agent runs any more are
 * removed when the last reference goes; the whole store is emptied at
 * start, since it is only ever a cache of files found elsewhere.
 */
#include "code.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/fsutil.h"
#include "hostproc.h"
#include "base/log.h"
#include "node.h"
#include "host.h"
#include "ol_config.h"

/* The file a kind's current code came from, as stat() saw it. */
struct ol__code_seen {
    char kind[OL_KIND_MAX + 1];
    char path[PATH_MAX];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

static void add_dir(struct ol__codes *cs, const char *fmt, const char *a,
                    size_t len)
{
    if (cs->n_dirs < (int)(sizeof cs->dirs / sizeof cs->dirs[0]))
        snprintf(cs->dirs[cs->n_dirs++], PATH_MAX, fmt, (int)len, a);
}

static void empty_store(const char *store)
{
    DIR *d = opendir(store);
    struct dirent *e;
    char path[PATH_MAX + 300];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", store, e->d_name);
        unlink(path);
    }
    closedir(d);
}

/* The plugins that go with the running executable, in directory `bin`:
 * the build tree's agents/ when it runs from a build tree (bin is
 * <build>/runtime/bin), else the install's plugin dir found relative to
 * bin, so that a staged or moved install loads its own plugins. */
static void add_exe_dir(struct ol__codes *cs, const char *bin)
{
    char probe[PATH_MAX + 32];

    snprintf(probe, sizeof probe, "%s/../../build.ninja", bin);
    if (access(probe, F_OK) == 0)
        add_dir(cs, "%.*s/../../agents", bin, strlen(bin));
    else if (OL_PLUGINDIR_REL[0])
        add_dir(cs, "%.*s/" OL_PLUGINDIR_REL, bin, strlen(bin));
}

int ol__codes_init(struct ol__codes *cs, struct ol__node *n,
                   const char *data_dir, const char *dir, char *errmsg)
{
    char exe[PATH_MAX];
    ssize_t len;
    int rv;

    memset(cs, 0, sizeof *cs);
    cs->node = n;
    ol__map_init(&cs->current);
    ol__map_init(&cs->seen);
    add_dir(cs, "%.*s/plugins", data_dir, strlen(data_dir));
    if (ol__path_join(cs->store, sizeof cs->store, data_dir, "code")) {
        ol__errf(errmsg, "data dir '%s': path too long", data_dir);
        return OL_EINVAL;
    }
    rv = ol__mkdirs(cs->store, 0700, errmsg);
    if (rv != 0)
        return rv;
    empty_store(cs->store);
    if (dir && dir[0]) {
        /* A colon-separated list, searched in order. */
        const char *p = dir;

        while (*p) {
            size_t l = strcspn(p, ":");

            if (l > 0 && l < PATH_MAX)
                add_dir(cs, "%.*s", p, l);
            p += l;
            if (*p == ':')
                p++;
        }
        return 0;
    }
    if (getenv("OUTLAST_PLUGIN_DIR"))
        add_dir(cs, "%.*s", getenv("OUTLAST_PLUGIN_DIR"),
                strlen(getenv("OUTLAST_PLUGIN_DIR")));
    len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = '\0';
        add_exe_dir(cs, dirname(exe));
    }
    add_dir(cs, "%.*s", OL_PLUGINDIR, strlen(OL_PLUGINDIR));
    return 0;
}

static void code_free(struct ol__code *c)
{
    struct ol__codes *cs = c->cs;
    struct ol__code **pp = &cs->all;

    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    if (c->path[0]) {
        int shared = 0;

        /* The same bytes may be loaded twice (under two kinds). */
        for (struct ol__code *o = cs->all; o; o = o->next)
            shared |= strcmp(o->path, c->path) == 0;
        if (!shared && !ol__code_inproc(c))
            unlink(c->path);
    }
    free(c);
}

void ol__codes_close(struct ol__codes *cs)
{
    void *v;

    while (cs->all) {
        struct ol__code *c = cs->all;

        /* Plugins bound in this process stay mapped until exit: an
         * agent's timers or work may still point into them. */
        ol__hostproc_abandon(c->hp);
        c->hp = NULL;
        for (struct ol__code_wait *w = c->waiters, *next; w; w = next) {
            next = w->next;
            free(w);
        }
        c->waiters = NULL;
        code_free(c);
    }
    for (size_t i = 0; ol__map_next(&cs->seen, &i, &v);)
        free(v);
    ol__map_close(&cs->seen);
    ol__map_close(&cs->current);
}

int ol__code_inproc(const struct ol__code *c)
{
    return c->cfg.isolation == OL_ISO_NODE;
}

struct ol__code *ol__codes_first(struct ol__codes *cs)
{
    return cs->all;
}

/* Copy `src` into the store while hashing it. */
static int copy_in(struct ol__codes *cs, const char *src, int fd,
                   struct ol__code *c, char *errmsg)
{
    crypto_generichash_state st;
    char tmp[PATH_MAX + 32];
    uint8_t buf[65536];
    ssize_t n;
    int out, rv = 0;

    snprintf(tmp, sizeof tmp, "%s/.in-%ld-%p", cs->store, (long)getpid(),
             (void *)c);
    out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        ol__errf(errmsg, "plugin '%s': copy into '%s': %s", src, cs->store,
                 strerror(errno));
        return OL_EIO;
    }
    crypto_generichash_init(&st, NULL, 0, OL_HASH_SIZE);
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        crypto_generichash_update(&st, buf, (size_t)n);
        if (write(out, buf, (size_t)n) != n) {
            rv = OL_EIO;
            break;
        }
    }
    if (n < 0)
        rv = OL_EIO;
    /* Readable by an agent host that runs as another user: it opens the
     * copy through the descriptor the node hands it, never by path. */
    if (fchmod(out, 0644) != 0 || close(out) != 0)
        rv = OL_EIO;
    if (rv != 0) {
        ol__errf(errmsg, "plugin '%s': copy: %s", src, strerror(errno));
        unlink(tmp);
        return rv;
    }
    crypto_generichash_final(&st, c->hash, OL_HASH_SIZE);
    ol__hex(c->hash, OL_HASH_SIZE, c->hash_hex);
    snprintf(c->path, sizeof c->path, "%s/%.16s-%s.so", cs->store,
             c->hash_hex, c->kind);
    if (rename(tmp, c->path) != 0) {
        ol__errf(errmsg, "plugin '%s': store copy: %s", src,
                 strerror(errno));
        unlink(tmp);
        return OL_EIO;
    }
    return 0;
}

static int find_file(struct ol__codes *cs, const char *kind, char *out,
                     size_t cap, char *errmsg)
{
    struct stat st;

    for (int i = 0; i < cs->n_dirs; i++) {
        snprintf(out, cap, "%s/%s.so", cs->dirs[i], kind);
        if (stat(out, &st) == 0)
            return 0;
    }
    ol__errf(errmsg, "no plugin '%s.so' in %s%s%s%s%s%s%s", kind,
             cs->dirs[0], cs->n_dirs > 1 ? ", " : "",
             cs->n_dirs > 1 ? cs->dirs[1] : "", cs->n_dirs > 2 ? ", " : "",
             cs->n_dirs > 2 ? cs->dirs[2] : "", cs->n_dirs > 3 ? ", " : "",
             cs->n_dirs > 3 ? cs->dirs[3] : "");
    return OL_ENOTFOUND;
}

static struct ol__code *same_code(struct ol__codes *cs, const char *kind,
                                  const uint8_t *hash)
{
    for (struct ol__code *c = cs->all; c; c = c->next)
        if (c->state != OL_CODE_FAILED && strcmp(c->kind, kind) == 0 &&
            memcmp(c->hash, hash, OL_HASH_SIZE) == 0)
            return c;
    return NULL;
}

static void remember(struct ol__codes *cs, const char *kind, const char *path,
                     const struct stat *st)
{
    struct ol__code_seen *s = ol__map_get(&cs->seen, kind);

    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return;
        snprintf(s->kind, sizeof s->kind, "%s", kind);
        if (ol__map_put(&cs->seen, s->kind, s) != 0) {
            free(s);
            return;
        }
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    s->dev = st->st_dev;
    s->ino = st->st_ino;
    s->size = st->st_size;
    s->mtime = st->st_mtim;
}

int ol__code_load(struct ol__codes *cs, const char *kind, const char *path,
                  struct ol__code **out, char *errmsg)
{
    struct ol__node *n = cs->node;
    struct ol__code *c, *dup;
    struct stat st;
    int fd, rv;

    if (!ol__name_valid(kind)) {
        ol__errf(errmsg, "'%s' is not a valid plugin kind", kind);
        return OL_EINVAL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ol__errf(errmsg, "plugin '%s': %s", path, strerror(errno));
        return errno == ENOENT ? OL_ENOTFOUND : OL_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ol__errf(errmsg, "plugin '%s': not a regular file", path);
        close(fd);
        return OL_EINVAL;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return OL_ENOMEM;
    }
    c->cs = cs;
    snprintf(c->kind, sizeof c->kind, "%s", kind);
    snprintf(c->src, sizeof c->src, "%s", path);
    rv = copy_in(cs, path, fd, c, errmsg);
    close(fd);
    if (rv != 0) {
        free(c);
        return rv;
    }
    remember(cs, kind, path, &st);
    dup = same_code(cs, kind, c->hash);
    if (dup) {
        /* The same build again: one code object, one host. */
        free(c);
        dup->refs++;
        *out = dup;
        return 0;
    }
    ol__config_plugin(&n->cfg, kind, &c->cfg);
    c->refs = 1; /* the caller's */
    c->next = cs->all;
    cs->all = c;
    if (ol__code_inproc(c)) {
        rv = ol__inproc_bind(n, c, errmsg);
        if (rv != 0) {
            code_free(c);
            return rv;
        }
        c->state = OL_CODE_READY;
        ol_log(OL_LOG_INFO, "plugin '%s' %s (%.16s) loaded into the node "
                            "from %s",
               kind, c->version, c->hash_hex, path);
    } else {
        c->state = OL_CODE_LOADING;
        if (ol__code_host(c) == NULL) {
            ol__errf(errmsg, "plugin '%s': cannot start its host process",
                     kind);
            code_free(c);
            return OL_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

void ol__code_make_current(struct ol__code *c)
{
    struct ol__codes *cs = c->cs;
    struct ol__code *old = ol__map_get(&cs->current, c->kind);

    if (old == c)
        return;
    if (ol__map_put(&cs->current, c->kind, c) != 0)
        return;
    c->refs++;
    if (old)
        ol__code_unref(old);
    if (c->state == OL_CODE_READY)
        ol__node_code_current(cs->node, c);
}

/* One stat() per agent started: cheap next to the checkpoint it reads. */
static int changed(struct ol__codes *cs, const char *kind, const char *path)
{
    struct ol__code_seen *s = ol__map_get(&cs->seen, kind);
    struct stat st;

    if (s == NULL)
        return 1;
    if (stat(path, &st) != 0)
        return 1;
    return strcmp(s->path, path) != 0 || st.st_dev != s->dev ||
           st.st_ino != s->ino || st.st_size != s->size ||
           st.st_mtim.tv_sec != s->mtime.tv_sec ||
           st.st_mtim.tv_nsec != s->mtime.tv_nsec;
}

int ol__code_current(struct ol__codes *cs, const char *kind, int recheck,
                     struct ol__code **out, char *errmsg)
{
    struct ol__code *c = ol__map_get(&cs->current, kind);
    char path[PATH_MAX + 80];
    int rv;

    if (c && c->state != OL_CODE_FAILED && !recheck) {
        *out = c;
        return 0;
    }
    if (!ol__name_valid(kind)) {
        ol__errf(errmsg, "'%s' is not a valid plugin kind", kind);
        return OL_EINVAL;
    }
    rv = find_file(cs, kind, path, sizeof path, errmsg);
    if (rv != 0)
        return rv;
    if (c && c->state != OL_CODE_FAILED && !changed(cs, kind, path)) {
        *out = c;
        return 0;
    }
    rv = ol__code_load(cs, kind, path, &c, errmsg);
    if (rv != 0)
        return rv;
    ol__code_make_current(c);
    ol__code_unref(c);
    *out = c;
    return 0;
}

void ol__code_wait(struct ol__code *c, ol__code_cb cb, void *data)
{
    struct ol__code_wait *w;

    if (c->state != OL_CODE_LOADING) {
        cb(data, c->state == OL_CODE_READY ? 0 : c->err, c->errmsg);
        return;
    }
    w = calloc(1, sizeof *w);
    if (w == NULL) {
        cb(data, OL_ENOMEM, "out of memory");
        return;
    }
    w->cb = cb;
    w->data = data;
    w->next = c->waiters;
    c->waiters = w;
}

void ol__code_loaded(struct ol__code *c, int status, const char *version,
                     const char *errmsg)
{
    struct ol__code_wait *w, *next;

    if (c->state != OL_CODE_LOADING)
        return;
    if (status == 0) {
        c->state = OL_CODE_READY;
        snprintf(c->version, sizeof c->version, "%s", version);
        ol_log(OL_LOG_INFO, "plugin '%s' %s (%.16s) loaded from %s",
               c->kind, c->version, c->hash_hex, c->src);
    } else {
        c->state = OL_CODE_FAILED;
        c->err = status;
        snprintf(c->errmsg, sizeof c->errmsg, "%s", errmsg);
        ol_log(OL_LOG_ERROR, "%s", errmsg);
    }
    if (status == 0 && ol__map_get(&c->cs->current, c->kind) == c)
        ol__node_code_current(c->cs->node, c);
    w = c->waiters;
    c->waiters = NULL;
    c->refs++; /* a waiter may drop the last reference */
    for (; w; w = next) {
        next = w->next;
        w->cb(w->data, status, c->errmsg);
        free(w);
    }
    ol__code_unref(c);
}

void ol__code_ref(struct ol__code *c)
{
    c->refs++;
}

void ol__code_unref(struct ol__code *c)
{
    if (c == NULL || --c->refs > 0)
        return;
    if (ol__map_get(&c->cs->current, c->kind) == c)
        return;
    if (c->waiters)
        return;
    ol__hostproc_close(c->hp);
    c->hp = NULL;
    code_free(c);
}

struct ol__hostproc *ol__code_host(struct ol__code *c)
{
    if (c->hp && c->hp->state == OL_HP_DEAD)
        c->hp = NULL;
    if (c->hp == NULL && ol__hostproc_create(c->cs->node, c, &c->hp) != 0)
        c->hp = NULL;
    return c->hp;
}

uint64_t ol__code_restart_wait(const struct ol__code *c)
{
    uint64_t now = ol__mono_ms();

    return c->hp_not_before_ms > now ? c->hp_not_before_ms - now : 0;
}
