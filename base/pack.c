#include "pack.h"

#include <sodium.h>

#include "err.h"

void ol__pk_map_begin(struct ol__pk_map *m, msgpack_packer *pk,
                      struct ol__buf *buf)
{
    static const uint8_t head[5] = {0xdf, 0, 0, 0, 0};

    m->pk = pk;
    m->buf = buf;
    m->at = buf->len;
    m->n = 0;
    (void)ol__buf_append(buf, head, sizeof head);
}

void ol__pk_key(struct ol__pk_map *m, const char *key)
{
    m->n++;
    ol__pk_str(m->pk, key);
}

void ol__pk_kv_str(struct ol__pk_map *m, const char *key, const char *v)
{
    ol__pk_key(m, key);
    ol__pk_str(m->pk, v);
}

void ol__pk_kv_uint(struct ol__pk_map *m, const char *key, uint64_t v)
{
    ol__pk_key(m, key);
    msgpack_pack_uint64(m->pk, v);
}

void ol__pk_kv_int(struct ol__pk_map *m, const char *key, int64_t v)
{
    ol__pk_key(m, key);
    msgpack_pack_int64(m->pk, v);
}

void ol__pk_kv_bool(struct ol__pk_map *m, const char *key, int v)
{
    ol__pk_key(m, key);
    if (v)
        msgpack_pack_true(m->pk);
    else
        msgpack_pack_false(m->pk);
}

void ol__pk_kv_double(struct ol__pk_map *m, const char *key, double v)
{
    ol__pk_key(m, key);
    msgpack_pack_double(m->pk, v);
}

void ol__pk_kv_bin(struct ol__pk_map *m, const char *key, const void *p,
                   size_t n)
{
    ol__pk_key(m, key);
    msgpack_pack_bin_with_body(m->pk, p, n);
}

int ol__pk_map_end(struct ol__pk_map *m)
{
    uint8_t *h;

    if (m->buf->base == NULL || m->buf->len < m->at + 5)
        return OL_ENOMEM;
    h = (uint8_t *)m->buf->base + m->at;
    if (h[0] != 0xdf)
        return OL_ENOMEM;
    h[1] = (uint8_t)(m->n >> 24);
    h[2] = (uint8_t)(m->n >> 16);
    h[3] = (uint8_t)(m->n >> 8);
    h[4] = (uint8_t)m->n;
    return 0;
}

uint64_t ol__random_id(void)
{
    uint64_t r = 0;

    while (r == 0)
        randombytes_buf(&r, sizeof r);
    return r;
}
