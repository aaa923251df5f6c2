/*
 * outlast/agent_util.h - msgpack helpers for agent plugins.
 *
 * Config, state and messages reach a plugin as msgpack bytes.  These
 * helpers do the parts every plugin repeats: unpack exactly one object,
 * find a value in a map by its string key, read a number, a bool or a
 * string with its type checked, and pack a C string.  They are static
 * inline and need only msgpack-c and agent.h, so there is nothing to link.
 *
 * Every reader is NULL-safe (a missing key reads as "not there"), checks the
 * type, and writes its out-parameter only when it returns true.  Config and
 * messages are input: check what a reader returns before using the value.
 *
 *     msgpack_unpacked u;
 *     uint64_t every = 5000;
 *     const msgpack_object *iv;
 *
 *     if (ol_mp_unpack(&u, config, len) != 0)
 *         return OL_AGENT_EINVAL;
 *     iv = ol_mp_get(&u.data, "interval_ms");
 *     if (iv != NULL && !ol_mp_uint(iv, &every))
 *         ...refuse the config...
 *     msgpack_unpacked_destroy(&u);
 */
#ifndef OUTLAST_AGENT_UTIL_H
#define OUTLAST_AGENT_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <msgpack.h>
#include <outlast/agent.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Unpack p..p+len, which must hold exactly one msgpack object and nothing
 * after it.  Returns 0 and fills *u, or OL_AGENT_EMALFORMED when the bytes
 * are not one whole object (empty, truncated, invalid, or followed by more
 * bytes).  On success the objects in u->data point into u's zone: copy
 * what you keep, then call msgpack_unpacked_destroy(u).  On failure there
 * is nothing to destroy.
 */
static inline int ol_mp_unpack(msgpack_unpacked *u, const void *p, size_t len)
{
    size_t off = 0;

    msgpack_unpacked_init(u);
    if (p == NULL || msgpack_unpack_next(u, (const char *)p, len, &off) !=
                         MSGPACK_UNPACK_SUCCESS || off != len) {
        msgpack_unpacked_destroy(u);
        return OL_AGENT_EMALFORMED;
    }
    return 0;
}

/* The value under the str key `key` in the map m, or NULL when m is NULL,
 * is not a map, or has no such key.  With duplicate keys, the first wins.
 * The result points into m. */
static inline const msgpack_object *ol_mp_get(const msgpack_object *m,
                                              const char *key)
{
    size_t klen = strlen(key);

    if (m == NULL || m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

/* Reads a non-negative integer.  False for NULL, a negative integer, or
 * any other type. */
static inline bool ol_mp_uint(const msgpack_object *o, uint64_t *v)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *v = o->via.u64;
    return true;
}

/* Reads an integer that fits int64_t.  False for NULL, a positive integer
 * above INT64_MAX, or any other type. */
static inline bool ol_mp_int(const msgpack_object *o, int64_t *v)
{
    if (o == NULL)
        return false;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        o->via.u64 <= (uint64_t)INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return true;
    }
    return false;
}

/* Reads a bool.  False for NULL or any other type (0 and 1 included). */
static inline bool ol_mp_bool(const msgpack_object *o, bool *v)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *v = o->via.boolean;
    return true;
}

/* Reads a finite number of any msgpack numeric type (float or integer;
 * large integers lose precision).  False for NULL, NaN, an infinity or a
 * non-number. */
static inline bool ol_mp_double(const msgpack_object *o, double *v)
{
    double d;

    if (o == NULL)
        return false;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        d = o->via.f64;
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        d = (double)o->via.u64;
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        d = (double)o->via.i64;
        break;
    default:
        return false;
    }
    if (!isfinite(d))
        return false;
    *v = d;
    return true;
}

/*
 * Copies a str into out, `cap` bytes including the terminating NUL.  There
 * is no truncation: false, with out untouched, when o is NULL or not a str,
 * when the str holds a NUL byte, or when it has cap bytes or more (it would
 * not fit with its NUL).  An empty str reads as "".
 */
static inline bool ol_mp_str(const msgpack_object *o, char *out, size_t cap)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_STR ||
        o->via.str.size >= cap ||
        (o->via.str.size > 0 &&
         memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL))
        return false;
    if (o->via.str.size > 0)
        memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}

/* True when o is a str equal to the C string s. */
static inline bool ol_mp_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);

    return o != NULL && o->type == MSGPACK_OBJECT_STR &&
           o->via.str.size == n &&
           (n == 0 || memcmp(o->via.str.ptr, s, n) == 0);
}

/* Packs the C string s as a msgpack str.  Returns msgpack's result: 0, or
 * the sink's error. */
static inline int ol_mp_pack_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Starts packing into an ol_sink, as save() does:
 *     msgpack_packer pk;
 *     ol_mp_packer_init(&pk, out);
 */
static inline void ol_mp_packer_init(msgpack_packer *pk,
                                     const struct ol_sink *out)
{
    msgpack_packer_init(pk, out->data, out->write);
}

#ifdef __cplusplus
}
#endif

#endif /* OUTLAST_AGENT_UTIL_H */
