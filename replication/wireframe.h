/*
 * The plaintext inside a transport frame on a connection whose handshake
 * agreed on OL_HS_FEAT_FRAMES (handshake.h): a type byte, then
 *
 *   OL_WF_DATA  payload
 *   OL_WF_ZSTD  raw_len u32 | one zstd frame that decodes to raw_len bytes
 *               (only with OL_HS_FEAT_ZSTD)
 *   OL_WF_PING  id u64
 *   OL_WF_PONG  id u64 (the id of the ping it answers)
 *
 * Frames are authenticated (ol__frame_open()) before anything here reads
 * them.  Decoding still trusts nothing: the claimed raw length is checked
 * against the channel's cap before any memory is set aside, and the zstd
 * frame must decode to exactly that many bytes.  On connections without
 * the feature the plaintext is the payload, as before.  Free of I/O.
 */
#ifndef OL_WIREFRAME_H
#define OL_WIREFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define OL_WF_WUR __attribute__((warn_unused_result))

enum {
    OL_WF_DATA = 0,
    OL_WF_ZSTD = 1,
    OL_WF_PING = 2,
    OL_WF_PONG = 3,
};

#define OL_WF_HDR_MAX 5           /* type + raw_len */
#define OL_WF_COMPRESS_MIN 512u   /* smaller payloads go as they are */
#define OL_WF_LEVEL 1             /* zstd level: cheap, most of the gain */

/* One per transport: compression contexts and buffers, reused (one loop
 * thread). */
struct ol__wf {
    void *cctx;
    void *dctx;
    struct ol__buf enc;  /* what ol__wf_encode() returns */
    struct ol__buf dec;  /* what ol__wf_decode() returns for OL_WF_ZSTD */
};

void ol__wf_init(struct ol__wf *w);
void ol__wf_close(struct ol__wf *w);

/* Give back buffers grown past 1 MiB by a large message (between
 * frames only: what encode and decode returned is then gone). */
void ol__wf_trim(struct ol__wf *w);

/*
 * The plaintext to seal for n payload bytes on a connection with features
 * `feat`: the payload itself without OL_HS_FEAT_FRAMES, else a DATA frame,
 * or a ZSTD one when the feature is on, n >= OL_WF_COMPRESS_MIN and the
 * result is smaller.  *plain is valid until the next call.  *zipped says
 * which.  Returns 0 or OL_ENOMEM.
 */
int ol__wf_encode(struct ol__wf *w, uint32_t feat, const void *p, size_t n,
                  const uint8_t **plain, size_t *plain_len,
                  int *zipped) OL_WF_WUR;

/* A PING or PONG frame's plaintext (9 bytes) into out. */
void ol__wf_ping(uint8_t type, uint64_t id, uint8_t out[9]);

/* Decoded frame.  `p` points into the plaintext or into w->dec. */
struct ol__wf_msg {
    int type;
    const uint8_t *p;
    size_t len;
    uint64_t id; /* PING, PONG */
};

/*
 * Decode the opened plaintext of one frame on a connection with features
 * `feat`; a payload longer than `max` is refused.  Returns 0, OL_ETOOBIG
 * (the payload or its claimed raw length is over `max`), OL_EMALFORMED
 * (empty, unknown type, compression not agreed, a bad ping, or zstd data
 * that is corrupt, truncated or decodes to another length) or OL_ENOMEM,
 * with errmsg (OL_ERRMSG_SIZE) saying which.
 */
int ol__wf_decode(struct ol__wf *w, uint32_t feat, const uint8_t *plain,
                  size_t n, size_t max, struct ol__wf_msg *out,
                  char *errmsg) OL_WF_WUR;

#endif
