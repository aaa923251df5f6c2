/*
 * Open-addressing hash map (linear probing, FNV-1a) for agent names.  The
 * runtime and the state machine each keep one entry per agent, so the map
 * stays dense: tombstones are cleared whenever it grows or rehashes.
 */
#include "map.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

static const char tomb_key[] = "";
#define TOMB tomb_key

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

void ol__map_init(struct ol__map *m)
{
    memset(m, 0, sizeof *m);
}

void ol__map_close(struct ol__map *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static struct ol__map_slot *find(const struct ol__map *m, const char *key,
                                 uint64_t h)
{
    size_t mask = m->cap - 1;

    if (m->cap == 0)
        return NULL;
    for (size_t i = h & mask, n = 0; n < m->cap; i = (i + 1) & mask, n++) {
        struct ol__map_slot *s = &m->slots[i];

        if (s->key == NULL)
            return NULL;
        if (s->key != TOMB && s->hash == h && strcmp(s->key, key) == 0)
            return s;
    }
    return NULL;
}

void *ol__map_get(const struct ol__map *m, const char *key)
{
    struct ol__map_slot *s = find(m, key, fnv(key));

    return s ? s->value : NULL;
}

static void place(struct ol__map_slot *slots, size_t cap,
                  const struct ol__map_slot *e)
{
    size_t mask = cap - 1;
    size_t i = e->hash & mask;

    while (slots[i].key != NULL)
        i = (i + 1) & mask;
    slots[i] = *e;
}

static int rehash(struct ol__map *m, size_t cap)
{
    struct ol__map_slot *slots = calloc(cap, sizeof *slots);

    if (slots == NULL)
        return OL_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key && m->slots[i].key != TOMB)
            place(slots, cap, &m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    m->used = m->count;
    return 0;
}

int ol__map_put(struct ol__map *m, const char *key, void *value)
{
    uint64_t h = fnv(key);
    struct ol__map_slot *s = find(m, key, h);
    struct ol__map_slot e = {key, value, h};

    if (s) {
        s->key = key;
        s->value = value;
        return 0;
    }
    if ((m->used + 1) * 4 >= m->cap * 3) {
        size_t cap = m->cap ? m->cap : 16;

        while ((m->count + 1) * 2 >= cap)
            cap *= 2;
        if (rehash(m, cap) != 0)
            return OL_ENOMEM;
    }
    place(m->slots, m->cap, &e);
    m->count++;
    m->used++;
    return 0;
}

void *ol__map_del(struct ol__map *m, const char *key)
{
    struct ol__map_slot *s = find(m, key, fnv(key));
    void *v;

    if (s == NULL)
        return NULL;
    v = s->value;
    s->key = TOMB;
    s->value = NULL;
    m->count--;
    return v;
}

int ol__map_next(const struct ol__map *m, size_t *iter, void **value)
{
    while (*iter < m->cap) {
        struct ol__map_slot *s = &m->slots[(*iter)++];

        if (s->key && s->key != TOMB) {
            *value = s->value;
            return 1;
        }
    }
    return 0;
}
