/*
 * libFuzzer target for every decoder of bytes from disk, peers and plugins.
 * The first input byte picks the decoder; the rest is its input:
 *
 *   0  ol__mp_check       (plugin state, messages, configs)
 *   1  ol__ckpt_decode_meta (a checkpoint body without its state)
 *   2  ol__ckpt_decode    (a checkpoint body, past the signature check)
 *   3  ol__seal_verify    (a seal and its signature)
 *   4  ol__entry_decode   (a raft log entry or a forwarded proposal)
 *   5  ol__json_from_msgpack (what `outlast show` prints)
 *   6  ol__nstate_decode  (a slot of node.state, the node record)
 *
 * Nothing here may crash, leak or read out of bounds, whatever the bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "record/ckpt.h"
#include "record/cmd.h"
#include "record/seal.h"
#include "base/err.h"
#include "base/json.h"
#include "base/mpr.h"
#include "state/nodestate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[OL_ERRMSG_SIZE];

    if (size < 1)
        return 0;
    switch (data[0] % 7) {
    case 0: {
        size_t off;

        (void)ol__mp_check(data + 1, size - 1, &off);
        break;
    }
    case 1: {
        struct ol__ckpt c;

        if (ol__ckpt_decode_meta(data + 1, size - 1, &c, err) == 0)
            ol__ckpt_free(&c);
        break;
    }
    case 2: {
        struct ol__ckpt c;

        if (ol__ckpt_decode(data + 1, size - 1, &c, err) == 0)
            ol__ckpt_free(&c);
        break;
    }
    case 3: {
        struct ol__seal s;
        uint8_t sig[OL_SIG_SIZE];

        if (size < 1 + OL_SIG_SIZE)
            break;
        memcpy(sig, data + 1, OL_SIG_SIZE);
        (void)ol__seal_verify(data + 1 + OL_SIG_SIZE,
                              size - 1 - OL_SIG_SIZE, sig, &s);
        break;
    }
    case 4: {
        struct ol__entry e;

        if (ol__entry_decode(data + 1, size - 1, &e, err) == 0)
            ol__entry_free(&e);
        break;
    }
    case 5: {
        json_t *j = NULL;

        if (ol__json_from_msgpack(data + 1, size - 1, &j, err) == 0)
            json_decref(j);
        break;
    }
    case 6: {
        uint8_t slot[OL_NSTATE_SLOT] = {0};
        struct ol__nstate st;

        memcpy(slot, data + 1,
               size - 1 < OL_NSTATE_SLOT ? size - 1 : OL_NSTATE_SLOT);
        (void)ol__nstate_decode(slot, NULL, &st);
        break;
    }
    }
    return 0;
}
