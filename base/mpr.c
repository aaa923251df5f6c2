/*
 * The bounded msgpack reader.  msgpack-c's unpacker allocates an array of
 * objects sized by the count in a header before it has seen the elements,
 * so five hostile bytes can ask it for gigabytes.  Every decoder of bytes
 * from disk, peers or plugins reads through this cursor instead; msgpack-c
 * still does all the packing, and unpacks only bytes this reader has
 * already checked.
 */
#include "mpr.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

void ol__mpr_init(struct ol__mpr *r, const void *p, size_t len)
{
    r->base = p;
    r->len = len;
    r->off = 0;
    r->err = 0;
}

static int fail(struct ol__mpr *r)
{
    if (r->err == 0)
        r->err = OL_EMALFORMED;
    return OL_EMALFORMED;
}

static size_t left(const struct ol__mpr *r)
{
    return r->len - r->off;
}

static int take(struct ol__mpr *r, size_t n, const uint8_t **p)
{
    if (r->err || left(r) < n)
        return fail(r);
    *p = r->base + r->off;
    r->off += n;
    return 0;
}

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;

    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Read a big-endian length of n bytes. */
static int take_be(struct ol__mpr *r, size_t n, uint64_t *v)
{
    const uint8_t *p;

    if (take(r, n, &p))
        return OL_EMALFORMED;
    *v = be(p, n);
    return 0;
}

static int peek(struct ol__mpr *r, uint8_t *b)
{
    if (r->err || left(r) < 1)
        return fail(r);
    *b = r->base[r->off];
    return 0;
}

static int container(struct ol__mpr *r, int is_map, uint32_t *n)
{
    uint8_t b;
    uint64_t v;
    size_t per = is_map ? 2 : 1;

    if (peek(r, &b))
        return OL_EMALFORMED;
    if (!is_map && (b & 0xf0) == 0x90) {
        v = b & 0x0f;
        r->off++;
    } else if (is_map && (b & 0xf0) == 0x80) {
        v = b & 0x0f;
        r->off++;
    } else if (b == (is_map ? 0xde : 0xdc)) {
        r->off++;
        if (take_be(r, 2, &v))
            return OL_EMALFORMED;
    } else if (b == (is_map ? 0xdf : 0xdd)) {
        r->off++;
        if (take_be(r, 4, &v))
            return OL_EMALFORMED;
    } else {
        return fail(r);
    }
    /* Every element takes at least one byte. */
    if (v > left(r) / per)
        return fail(r);
    *n = (uint32_t)v;
    return 0;
}

int ol__mpr_array(struct ol__mpr *r, uint32_t *n)
{
    return container(r, 0, n);
}

int ol__mpr_map(struct ol__mpr *r, uint32_t *n)
{
    return container(r, 1, n);
}

int ol__mpr_int(struct ol__mpr *r, int64_t *v)
{
    uint8_t b;
    uint64_t u;

    if (peek(r, &b))
        return OL_EMALFORMED;
    if (b <= 0x7f) {
        r->off++;
        *v = b;
        return 0;
    }
    if (b >= 0xe0) {
        r->off++;
        *v = (int8_t)b;
        return 0;
    }
    r->off++;
    switch (b) {
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        size_t n = (size_t)1 << (b - 0xcc);

        if (take_be(r, n, &u))
            return OL_EMALFORMED;
        if (u > INT64_MAX)
            return fail(r);
        *v = (int64_t)u;
        return 0;
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        size_t n = (size_t)1 << (b - 0xd0);

        if (take_be(r, n, &u))
            return OL_EMALFORMED;
        /* Sign-extend from n bytes. */
        if (n < 8 && (u >> (8 * n - 1)) & 1)
            u |= ~(uint64_t)0 << (8 * n);
        memcpy(v, &u, sizeof *v);
        return 0;
    }
    }
    r->off--;
    return fail(r);
}

int ol__mpr_uint(struct ol__mpr *r, uint64_t *v)
{
    uint8_t b;

    if (peek(r, &b))
        return OL_EMALFORMED;
    if (b <= 0x7f) {
        r->off++;
        *v = b;
        return 0;
    }
    if (b >= 0xcc && b <= 0xcf) {
        r->off++;
        return take_be(r, (size_t)1 << (b - 0xcc), v);
    }
    return fail(r);
}

int ol__mpr_bool(struct ol__mpr *r, bool *v)
{
    uint8_t b;

    if (peek(r, &b))
        return OL_EMALFORMED;
    if (b != 0xc2 && b != 0xc3)
        return fail(r);
    r->off++;
    *v = b == 0xc3;
    return 0;
}

int ol__mpr_nil(struct ol__mpr *r)
{
    uint8_t b;

    if (peek(r, &b))
        return OL_EMALFORMED;
    if (b != 0xc0)
        return fail(r);
    r->off++;
    return 0;
}

bool ol__mpr_is_nil(const struct ol__mpr *r)
{
    return r->err == 0 && left(r) > 0 && r->base[r->off] == 0xc0;
}

static int raw(struct ol__mpr *r, int want_bin, const void **p,
               uint32_t *len)
{
    uint8_t b;
    uint64_t n;
    const uint8_t *q;

    if (peek(r, &b))
        return OL_EMALFORMED;
    if (!want_bin && (b & 0xe0) == 0xa0) {
        r->off++;
        n = b & 0x1f;
    } else if (b == (want_bin ? 0xc4 : 0xd9)) {
        r->off++;
        if (take_be(r, 1, &n))
            return OL_EMALFORMED;
    } else if (b == (want_bin ? 0xc5 : 0xda)) {
        r->off++;
        if (take_be(r, 2, &n))
            return OL_EMALFORMED;
    } else if (b == (want_bin ? 0xc6 : 0xdb)) {
        r->off++;
        if (take_be(r, 4, &n))
            return OL_EMALFORMED;
    } else {
        return fail(r);
    }
    if (take(r, (size_t)n, &q))
        return OL_EMALFORMED;
    *p = q;
    *len = (uint32_t)n;
    return 0;
}

int ol__mpr_str(struct ol__mpr *r, const char **s, uint32_t *len)
{
    const void *p;

    if (raw(r, 0, &p, len))
        return OL_EMALFORMED;
    *s = p;
    return 0;
}

int ol__mpr_bin(struct ol__mpr *r, const void **p, uint32_t *len)
{
    return raw(r, 1, p, len);
}

int ol__mpr_bin_fixed(struct ol__mpr *r, void *out, size_t n)
{
    const void *p;
    uint32_t len;

    if (raw(r, 1, &p, &len))
        return OL_EMALFORMED;
    if (len != n)
        return fail(r);
    memcpy(out, p, n);
    return 0;
}

int ol__mpr_strdup(struct ol__mpr *r, size_t max, char **out)
{
    const char *s;
    uint32_t len;
    char *c;

    if (ol__mpr_str(r, &s, &len))
        return OL_EMALFORMED;
    if (len > max || memchr(s, '\0', len))
        return fail(r);
    c = malloc((size_t)len + 1);
    if (c == NULL)
        return OL_ENOMEM;
    memcpy(c, s, len);
    c[len] = '\0';
    *out = c;
    return 0;
}

int ol__mpr_strcpy(struct ol__mpr *r, char *out, size_t cap)
{
    const char *s;
    uint32_t len;

    if (ol__mpr_str(r, &s, &len))
        return OL_EMALFORMED;
    if (len >= cap || memchr(s, '\0', len))
        return fail(r);
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

static int skip(struct ol__mpr *r, int depth)
{
    uint8_t b;
    uint32_t n;
    const void *p;
    const uint8_t *q;
    uint64_t len;

    if (depth > OL_MPR_MAX_DEPTH)
        return fail(r);
    if (peek(r, &b))
        return OL_EMALFORMED;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        r->off++;
        return 0;
    }
    if ((b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd) {
        if (ol__mpr_array(r, &n))
            return OL_EMALFORMED;
        while (n--)
            if (skip(r, depth + 1))
                return OL_EMALFORMED;
        return 0;
    }
    if ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf) {
        if (ol__mpr_map(r, &n))
            return OL_EMALFORMED;
        while (n--)
            if (skip(r, depth + 1) || skip(r, depth + 1))
                return OL_EMALFORMED;
        return 0;
    }
    if ((b & 0xe0) == 0xa0 || (b >= 0xd9 && b <= 0xdb))
        return raw(r, 0, &p, &n);
    if (b >= 0xc4 && b <= 0xc6)
        return raw(r, 1, &p, &n);
    r->off++;
    switch (b) {
    case 0xca: /* float 32 */
        return take(r, 4, &q);
    case 0xcb: /* float 64 */
        return take(r, 8, &q);
    case 0xcc: case 0xd0:
        return take(r, 1, &q);
    case 0xcd: case 0xd1:
        return take(r, 2, &q);
    case 0xce: case 0xd2:
        return take(r, 4, &q);
    case 0xcf: case 0xd3:
        return take(r, 8, &q);
    case 0xd4: /* fixext 1..16: type byte plus data */
        return take(r, 2, &q);
    case 0xd5:
        return take(r, 3, &q);
    case 0xd6:
        return take(r, 5, &q);
    case 0xd7:
        return take(r, 9, &q);
    case 0xd8:
        return take(r, 17, &q);
    case 0xc7: case 0xc8: case 0xc9: /* ext 8/16/32 */
        if (take_be(r, (size_t)1 << (b - 0xc7), &len))
            return OL_EMALFORMED;
        return take(r, (size_t)len + 1, &q);
    }
    /* 0xc1 is never used. */
    r->off--;
    return fail(r);
}

int ol__mpr_skip(struct ol__mpr *r)
{
    return skip(r, 0);
}

bool ol__mpr_done(const struct ol__mpr *r)
{
    return r->err == 0 && r->off == r->len;
}

int ol__mp_check(const void *p, size_t len, size_t *bad_off)
{
    struct ol__mpr r;

    ol__mpr_init(&r, p, len);
    if (ol__mpr_skip(&r) == 0 && ol__mpr_done(&r))
        return 0;
    if (bad_off)
        *bad_off = r.off;
    return OL_EMALFORMED;
}
