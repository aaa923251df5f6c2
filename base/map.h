/*
 * A string-keyed hash map with open addressing.  Keys are borrowed: the
 * value must keep its key alive (typically the key is a member of the
 * value).  Not thread-safe.
 */
#ifndef OL_MAP_H
#define OL_MAP_H

#include <stddef.h>
#include <stdint.h>

struct ol__map_slot {
    const char *key; /* NULL: empty; OL__MAP_TOMB: deleted */
    void *value;
    uint64_t hash;
};

struct ol__map {
    struct ol__map_slot *slots;
    size_t cap;   /* power of two, or 0 */
    size_t count; /* live entries */
    size_t used;  /* live + tombstones */
};

void ol__map_init(struct ol__map *m);
void ol__map_close(struct ol__map *m);

void *ol__map_get(const struct ol__map *m, const char *key);

/* Insert or replace.  Returns 0 or OL_ENOMEM. */
int ol__map_put(struct ol__map *m, const char *key, void *value);

/* Remove; returns the value or NULL. */
void *ol__map_del(struct ol__map *m, const char *key);

/* Iterate: for (size_t i = 0; ol__map_next(m, &i, &v);) ... */
int ol__map_next(const struct ol__map *m, size_t *iter, void **value);

#endif
