/*
 * The transport's frame codec (wireframe.h): the type byte, compression
 * with zstd when it pays, and decoding that holds the peer to the caps
 * whatever it claims.  Compression is one-shot per frame, so a frame never
 * depends on the ones before it; the raft pump's frames are already
 * batches of libraft's messages, up to 64 KiB each.
 */
#include "wireframe.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "base/err.h"
#include "handshake.h"

void ol__wf_init(struct ol__wf *w)
{
    memset(w, 0, sizeof *w);
    ol__buf_init(&w->enc);
    ol__buf_init(&w->dec);
}

void ol__wf_trim(struct ol__wf *w)
{
    if (w->enc.cap > (1u << 20))
        ol__buf_close(&w->enc);
    if (w->dec.cap > (1u << 20))
        ol__buf_close(&w->dec);
}

void ol__wf_close(struct ol__wf *w)
{
    ZSTD_freeCCtx(w->cctx);
    ZSTD_freeDCtx(w->dctx);
    ol__buf_close(&w->enc);
    ol__buf_close(&w->dec);
    memset(w, 0, sizeof *w);
}

/* Make room for n bytes in b, emptied. */
static int reserve(struct ol__buf *b, size_t n)
{
    uint8_t *p;

    b->len = 0;
    if (b->cap >= n)
        return 0;
    p = realloc(b->base, n);
    if (p == NULL)
        return OL_ENOMEM;
    b->base = p;
    b->cap = n;
    return 0;
}

/* Try a ZSTD frame; 1 when it came out smaller than a DATA one. */
static int try_zip(struct ol__wf *w, const void *p, size_t n)
{
    size_t bound = ZSTD_compressBound(n), z;

    if (n > UINT32_MAX || ZSTD_isError(bound))
        return 0;
    if (w->cctx == NULL && (w->cctx = ZSTD_createCCtx()) == NULL)
        return 0;
    if (reserve(&w->enc, 5 + bound) != 0)
        return 0;
    z = ZSTD_compressCCtx(w->cctx, w->enc.base + 5, bound, p, n,
                          OL_WF_LEVEL);
    if (ZSTD_isError(z) || 5 + z >= 1 + n)
        return 0;
    w->enc.base[0] = OL_WF_ZSTD;
    ol__be32_put(w->enc.base + 1, (uint32_t)n);
    w->enc.len = 5 + z;
    return 1;
}

int ol__wf_encode(struct ol__wf *w, uint32_t feat, const void *p, size_t n,
                  const uint8_t **plain, size_t *plain_len, int *zipped)
{
    *zipped = 0;
    if (!(feat & OL_HS_FEAT_FRAMES)) {
        *plain = p;
        *plain_len = n;
        return 0;
    }
    if ((feat & OL_HS_FEAT_ZSTD) && n >= OL_WF_COMPRESS_MIN &&
        try_zip(w, p, n)) {
        *zipped = 1;
    } else {
        if (reserve(&w->enc, 1 + n) != 0)
            return OL_ENOMEM;
        w->enc.base[0] = OL_WF_DATA;
        if (n > 0)
            memcpy(w->enc.base + 1, p, n);
        w->enc.len = 1 + n;
    }
    *plain = w->enc.base;
    *plain_len = w->enc.len;
    return 0;
}

void ol__wf_ping(uint8_t type, uint64_t id, uint8_t out[9])
{
    out[0] = type;
    for (int i = 8; i >= 1; i--, id >>= 8)
        out[i] = (uint8_t)id;
}

static int unzip(struct ol__wf *w, const uint8_t *p, size_t n, size_t max,
                 struct ol__wf_msg *out, char *errmsg)
{
    unsigned long long fcs;
    uint32_t raw;
    size_t got;

    if (n < 5) {
        ol__errf(errmsg, "compressed frame of %zu bytes has no length", n);
        return OL_EMALFORMED;
    }
    raw = ol__be32_get(p + 1);
    if (raw > max) {
        ol__errf(errmsg, "compressed frame claims %" PRIu32 " bytes, over "
                 "the cap of %zu", raw, max);
        return OL_ETOOBIG;
    }
    /* zstd writes the size into the frame; one that says otherwise, or
     * nothing, is not ours. */
    fcs = ZSTD_getFrameContentSize(p + 5, n - 5);
    if (raw == 0 || fcs != raw) {
        ol__errf(errmsg, "compressed frame is corrupt or truncated (its "
                 "header does not say %" PRIu32 " bytes)", raw);
        return OL_EMALFORMED;
    }
    if (w->dctx == NULL && (w->dctx = ZSTD_createDCtx()) == NULL)
        return OL_ENOMEM;
    if (reserve(&w->dec, raw) != 0)
        return OL_ENOMEM;
    got = ZSTD_decompressDCtx(w->dctx, w->dec.base, raw, p + 5, n - 5);
    if (ZSTD_isError(got) || got != raw) {
        ol__errf(errmsg, "compressed frame does not decode to %" PRIu32
                 " bytes: %s", raw, ZSTD_isError(got) ?
                 ZSTD_getErrorName(got) : "short");
        return OL_EMALFORMED;
    }
    w->dec.len = got;
    out->p = w->dec.base;
    out->len = got;
    return 0;
}

int ol__wf_decode(struct ol__wf *w, uint32_t feat, const uint8_t *plain,
                  size_t n, size_t max, struct ol__wf_msg *out, char *errmsg)
{
    memset(out, 0, sizeof *out);
    if (!(feat & OL_HS_FEAT_FRAMES)) {
        out->type = OL_WF_DATA;
        out->p = plain;
        out->len = n;
        if (n > max) {
            ol__errf(errmsg, "frame of %zu bytes over the cap of %zu", n,
                     max);
            return OL_ETOOBIG;
        }
        return 0;
    }
    if (n == 0) {
        ol__errf(errmsg, "empty frame has no type");
        return OL_EMALFORMED;
    }
    out->type = plain[0];
    switch (plain[0]) {
    case OL_WF_DATA:
        if (n - 1 > max) {
            ol__errf(errmsg, "frame of %zu bytes over the cap of %zu",
                     n - 1, max);
            return OL_ETOOBIG;
        }
        out->p = plain + 1;
        out->len = n - 1;
        return 0;
    case OL_WF_ZSTD:
        if (!(feat & OL_HS_FEAT_ZSTD)) {
            ol__errf(errmsg, "compressed frame, but compression was not "
                             "agreed");
            return OL_EMALFORMED;
        }
        return unzip(w, plain, n, max, out, errmsg);
    case OL_WF_PING:
    case OL_WF_PONG:
        if (n != 9) {
            ol__errf(errmsg, "ping frame of %zu bytes (want 9)", n);
            return OL_EMALFORMED;
        }
        for (int i = 1; i <= 8; i++)
            out->id = out->id << 8 | plain[i];
        return 0;
    default:
        ol__errf(errmsg, "unknown frame type %u", plain[0]);
        return OL_EMALFORMED;
    }
}
