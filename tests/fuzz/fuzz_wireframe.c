/*
 * libFuzzer target for the transport's frame codec (replication/
 * wireframe.h): whatever plaintext an authenticated peer sends, decoding
 * must refuse it or return at most the cap, never crash or read out of
 * bounds; and every payload must come back from encoding unchanged.
 * The first byte picks the agreed features (its low two bits).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "replication/handshake.h"
#include "replication/wireframe.h"

#define CAP (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ol__wf w;
    static int ready;
    char err[OL_ERRMSG_SIZE];
    struct ol__wf_msg m;
    const uint8_t *plain;
    uint8_t *copy;
    size_t plen;
    uint32_t feat;
    int zipped;

    if (!ready) {
        ol__wf_init(&w);
        ready = 1;
    }
    if (size < 1)
        return 0;
    feat = data[0] & (OL_HS_FEAT_FRAMES | OL_HS_FEAT_ZSTD);
    if (ol__wf_decode(&w, feat, data + 1, size - 1, CAP, &m, err) == 0 &&
        m.len > CAP)
        abort();
    if (ol__wf_encode(&w, feat, data + 1, size - 1, &plain, &plen,
                      &zipped) != 0)
        return 0;
    copy = malloc(plen ? plen : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, plain, plen);
    if (ol__wf_decode(&w, feat, copy, plen, size, &m, err) != 0 ||
        m.len != size - 1 || (m.len && memcmp(m.p, data + 1, m.len) != 0))
        abort();
    free(copy);
    return 0;
}
