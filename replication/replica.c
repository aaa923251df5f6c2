/*
 * What both replicas (local.c, cluster*.c) share beyond the interface in
 * replica.h: writing their status map.
 */
#include "replica.h"

#include "base/err.h"

/* The map writer counts its own pairs into an ol__buf; the caller's
 * packer may write anywhere, so the finished map goes to it as bytes. */
int ol__replica_pack_map(msgpack_packer *out,
                         void (*fill)(struct ol__pk_map *m, void *data),
                         void *data)
{
    struct ol__buf b;
    msgpack_packer pk;
    struct ol__pk_map m;
    int rv;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    ol__pk_map_begin(&m, &pk, &b);
    fill(&m, data);
    rv = ol__pk_map_end(&m);
    if (rv != 0)
        msgpack_pack_nil(out); /* the map could not be made whole */
    else if (out->callback(out->data, (const char *)b.base, b.len) != 0)
        rv = OL_ENOMEM;
    ol__buf_close(&b);
    return rv;
}
