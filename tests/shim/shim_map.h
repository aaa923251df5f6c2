/*
 * Mapping the control page (shimctl.h) from inside a shim.  Header-only so
 * each shim stays one self-contained shared object.
 */
#ifndef OL_TEST_SHIM_MAP_H
#define OL_TEST_SHIM_MAP_H

#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shimctl.h"

/* Points function pointer `fp` at the next definition of `name` (ISO C
 * has no cast from dlsym's object pointer to a function pointer). */
#define SHIM_NEXT(fp, name)                                                \
    do {                                                                   \
        void *p_ = dlsym(RTLD_NEXT, name);                                 \
                                                                           \
        memcpy(&(fp), &p_, sizeof p_);                                     \
    } while (0)

/* The page named by OL_SHIM_CTL, or NULL (no file, not set up): the shim
 * then only forwards.  Called from the shim's constructor, before any
 * thread of the process exists. */
static struct ol_shim_ctl *shim_map(void)
{
    const char *path = getenv(OL_SHIM_CTL_ENV);
    struct ol_shim_ctl *c;
    int fd;

    if (path == NULL || path[0] == '\0')
        return NULL;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    c = mmap(NULL, OL_SHIM_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
             0);
    close(fd);
    if (c == MAP_FAILED)
        return NULL;
    if (__atomic_load_n(&c->magic, __ATOMIC_ACQUIRE) != OL_SHIM_MAGIC) {
        munmap(c, OL_SHIM_CTL_SIZE);
        return NULL;
    }
    __atomic_add_fetch(&c->loaded, 1, __ATOMIC_RELAXED);
    return c;
}

static inline int64_t shim_get(const int64_t *field)
{
    return __atomic_load_n(field, __ATOMIC_ACQUIRE);
}

static inline void shim_count(uint64_t *field)
{
    __atomic_add_fetch(field, 1, __ATOMIC_RELAXED);
}

#endif
