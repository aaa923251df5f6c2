/*
 * Filesystem helpers.  Files that must survive a crash are written the way
 * Redis writes its RDB: a temp file is fsynced, renamed over the target, and
 * the directory is fsynced so the rename itself is durable.
 */
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"

int ol__path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= cap)
        return OL_ETOOBIG;
    return 0;
}

int ol__fsync_dir_of(const char *path, char *errmsg)
{
    char copy[PATH_MAX];
    int fd;

    snprintf(copy, sizeof copy, "%s", path);
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        ol__errf(errmsg, "fsync directory of '%s': %s", path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return OL_EIO;
    }
    close(fd);
    return 0;
}

int ol__write_file_atomic(const char *path, const void *data, size_t len,
                          mode_t mode, char *errmsg)
{
    char tmp[PATH_MAX];
    const char *p = data;
    int fd;

    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >=
        (int)sizeof tmp) {
        ol__errf(errmsg, "path too long: '%s'", path);
        return OL_EINVAL;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        ol__errf(errmsg, "create '%s': %s", tmp, strerror(errno));
        return OL_EIO;
    }
    /* open() honours the umask; the mode must be exactly what we asked. */
    if (fchmod(fd, mode) != 0)
        goto fail;
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    return ol__fsync_dir_of(path, errmsg);

fail:
    ol__errf(errmsg, "write '%s': %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return OL_EIO;
}

int ol__read_file(const char *path, size_t max, char **out, size_t *len,
                  char *errmsg)
{
    struct stat st;
    char *buf;
    size_t got = 0;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0) {
        ol__errf(errmsg, "open '%s': %s", path, strerror(errno));
        return errno == ENOENT ? OL_ENOTFOUND : OL_EIO;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ol__errf(errmsg, "'%s' is %s", path,
                 S_ISDIR(st.st_mode) ? "a directory, not a file"
                                     : "not a regular file (a FIFO, socket "
                                       "or device)");
        close(fd);
        return OL_EINVAL;
    }
    if ((size_t)st.st_size > max) {
        ol__errf(errmsg, "'%s' is too big (%lld bytes, limit %zu)", path,
                 (long long)st.st_size, max);
        close(fd);
        return OL_ETOOBIG;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return OL_ENOMEM;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

int ol__mkdirs(const char *path, mode_t mode, char *errmsg)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof buf) {
        ol__errf(errmsg, "bad directory path '%s'", path);
        return OL_EINVAL;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST) {
            ol__errf(errmsg, "mkdir '%s': %s", buf, strerror(errno));
            return OL_EIO;
        }
        *p = '/';
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST) {
        ol__errf(errmsg, "mkdir '%s': %s", buf, strerror(errno));
        return OL_EIO;
    }
    return 0;
}
