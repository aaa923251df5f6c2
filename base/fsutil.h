/*
 * Small filesystem helpers: durable atomic writes and directory creation.
 */
#ifndef OL_FSUTIL_H
#define OL_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Write a file durably: temp file, fsync, rename, fsync the directory.
 * Returns 0 or OL_EIO with errmsg set. */
int ol__write_file_atomic(const char *path, const void *data, size_t len,
                          mode_t mode, char *errmsg);

/* Read a whole regular file of at most `max` bytes into a malloc'd,
 * NUL-terminated buffer. */
int ol__read_file(const char *path, size_t max, char **out, size_t *len,
                  char *errmsg);

/* fsync the directory holding `path` (after a rename or link in it). */
int ol__fsync_dir_of(const char *path, char *errmsg);

/* mkdir -p with the given mode for created directories. */
int ol__mkdirs(const char *path, mode_t mode, char *errmsg);

/* Join a directory and a name into out (cap bytes); OL_ETOOBIG if it does
 * not fit. */
int ol__path_join(char *out, size_t cap, const char *dir, const char *name);

#endif
