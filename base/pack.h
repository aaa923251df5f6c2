/*
 * Writing msgpack: what msgpack-c's packer lacks for outlast's records.
 *
 * The map writer counts its own pairs, so a map's header can never
 * disagree with what follows it:
 *
 *     struct ol__pk_map m;
 *
 *     ol__pk_map_begin(&m, pk, buf);
 *     ol__pk_kv_str(&m, "name", a->name);
 *     ol__pk_kv_uint(&m, "seq", a->seq);
 *     rv = ol__pk_map_end(&m);
 *
 * It writes a map32 header and patches the count at the end, so it packs
 * only into an ol__buf.  Records whose bytes are hashed or signed
 * (checkpoints, seals, log entries) keep msgpack-c's shortest encoding
 * and do not use it.
 */
#ifndef OL_PACK_H
#define OL_PACK_H

#include <limits.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"

/* A NUL-terminated string as a msgpack str. */
static inline int ol__pk_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

struct ol__pk_map {
    msgpack_packer *pk;
    struct ol__buf *buf;
    size_t at;      /* where the header is in buf */
    uint32_t n;     /* pairs so far */
};

/* Start a map whose packer `pk` writes into `buf`. */
void ol__pk_map_begin(struct ol__pk_map *m, msgpack_packer *pk,
                      struct ol__buf *buf);
/* Write a key: the value must follow (pack it with m->pk). */
void ol__pk_key(struct ol__pk_map *m, const char *key);
void ol__pk_kv_str(struct ol__pk_map *m, const char *key, const char *v);
void ol__pk_kv_uint(struct ol__pk_map *m, const char *key, uint64_t v);
void ol__pk_kv_int(struct ol__pk_map *m, const char *key, int64_t v);
void ol__pk_kv_bool(struct ol__pk_map *m, const char *key, int v);
void ol__pk_kv_double(struct ol__pk_map *m, const char *key, double v);
void ol__pk_kv_bin(struct ol__pk_map *m, const char *key, const void *p,
                   size_t n);
/* Patch the header with the count.  Returns 0, or OL_ENOMEM if the
 * buffer failed to grow at any point. */
int ol__pk_map_end(struct ol__pk_map *m);

/* A random nonzero 64-bit id: request ids, incarnations. */
uint64_t ol__random_id(void);

#endif
