/*
 * A bounded msgpack reader for untrusted bytes.  It walks a buffer with a
 * cursor and allocates nothing; every length and element count is checked
 * against the bytes that remain before the caller can act on it.  Errors
 * are sticky: after the first one every call fails with OL_EMALFORMED and
 * `off` tells where reading stopped.
 */
#ifndef OL_MPR_H
#define OL_MPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WUR __attribute__((warn_unused_result))

struct ol__mpr {
    const uint8_t *base;
    size_t len;
    size_t off;
    int err;
};

/* Nesting deeper than this is refused by ol__mpr_skip(). */
#define OL_MPR_MAX_DEPTH 64

void ol__mpr_init(struct ol__mpr *r, const void *p, size_t len);

int ol__mpr_array(struct ol__mpr *r, uint32_t *n) WUR;
int ol__mpr_map(struct ol__mpr *r, uint32_t *n) WUR;
int ol__mpr_uint(struct ol__mpr *r, uint64_t *v) WUR;
int ol__mpr_int(struct ol__mpr *r, int64_t *v) WUR;
int ol__mpr_bool(struct ol__mpr *r, bool *v) WUR;
int ol__mpr_nil(struct ol__mpr *r) WUR;
bool ol__mpr_is_nil(const struct ol__mpr *r);

/* Strings and binaries point into the buffer (not NUL-terminated). */
int ol__mpr_str(struct ol__mpr *r, const char **s, uint32_t *len) WUR;
int ol__mpr_bin(struct ol__mpr *r, const void **p, uint32_t *len) WUR;
/* A bin of exactly n bytes, copied out. */
int ol__mpr_bin_fixed(struct ol__mpr *r, void *out, size_t n) WUR;
/* A str copied into a NUL-terminated malloc'd string without NUL bytes. */
int ol__mpr_strdup(struct ol__mpr *r, size_t max, char **out) WUR;
/* A str copied into a caller buffer of `cap` bytes, NUL-terminated. */
int ol__mpr_strcpy(struct ol__mpr *r, char *out, size_t cap) WUR;

/* Skip one whole object. */
int ol__mpr_skip(struct ol__mpr *r) WUR;

/* True when the cursor is at the end. */
bool ol__mpr_done(const struct ol__mpr *r);

/* Check that p..p+len is exactly one well-formed msgpack object.  Returns 0
 * or OL_EMALFORMED; *bad_off (may be NULL) gets where it went wrong. */
int ol__mp_check(const void *p, size_t len, size_t *bad_off) WUR;

#endif
