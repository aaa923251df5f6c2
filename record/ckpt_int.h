/*
 * What ckpt.c shares with ckpt_fx.c, the codec of a checkpoint's effects
 * and outcomes.
 */
#ifndef OL_CKPT_INT_H
#define OL_CKPT_INT_H

#include <msgpack.h>

#include "base/mpr.h"
#include "ckpt.h"

/* Pack the two effect fields (call only when the body has them). */
void ol__ckpt_fx_pack(msgpack_packer *pk, const struct ol__ckpt *c);

/* Read the two effect fields into `c`; on error *what names the field.
 * Returns 0 or OL_EMALFORMED / OL_ENOMEM; what was read stays in `c`
 * for ol__ckpt_free(). */
int ol__ckpt_fx_read(struct ol__mpr *r, struct ol__ckpt *c,
                     const char **what);

void ol__ckpt_fx_free(struct ol__ckpt *c);

/* Copy a bin of at most `max` bytes (must_be_msgpack: one object). */
int ol__ckpt_dup_bin(struct ol__mpr *r, uint32_t max, uint8_t **out,
                     uint32_t *len, int must_be_msgpack);

#endif
