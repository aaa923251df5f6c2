/*
 * A growable byte buffer.  Its write function has msgpack-c's packer
 * signature, so a msgpack_packer can pack straight into it.
 */
#ifndef OL_BUF_H
#define OL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct ol__buf {
    uint8_t *base; /* owned; free with ol__buf_close() */
    size_t len;
    size_t cap;
    size_t max;    /* 0: unlimited; writes past it fail */
};

void ol__buf_init(struct ol__buf *b);
void ol__buf_close(struct ol__buf *b);
void ol__buf_reset(struct ol__buf *b);

/* Append bytes.  Returns 0, OL_ENOMEM, or OL_ETOOBIG past b->max. */
int ol__buf_append(struct ol__buf *b, const void *p, size_t n);

/* msgpack_packer_write-compatible: `data` is a struct ol__buf *. */
int ol__buf_write(void *data, const char *p, size_t n);

/* Take ownership of the bytes; the buffer is left empty. */
uint8_t *ol__buf_steal(struct ol__buf *b, size_t *len);

/* Hex encoding of n bytes into out (2n+1 bytes). */
void ol__hex(const uint8_t *p, size_t n, char *out);

/* Decode exactly n bytes of hex; returns 0 or OL_EMALFORMED. */
int ol__unhex(const char *s, uint8_t *out, size_t n)
    __attribute__((warn_unused_result));

#endif
