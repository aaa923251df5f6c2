/*
 * What the cluster adds to /metrics and to runtime messages: counters the
 * status map does not carry, and the MSG_APP channel that lets the runtime
 * ask another node something (an agent's log lines) over the same
 * authenticated transport as raft.
 */
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "cluster_int.h"

void ol__cluster_metrics(struct ol__replica *r,
                         struct ol__cluster_metrics *out)
{
    struct cluster *c = (struct cluster *)r;

    memset(out, 0, sizeof *out);
    out->leader_changes = c->n.leader_changes;
    out->lease_losses = c->n.lease_losses;
    out->suspends = c->n.suspends;
    out->stalls = c->n.stalls;
    out->refused_fwd = c->n.refused_fwd;
    memcpy(out->placed, c->n.placed, sizeof out->placed);
    if (c->tr)
        ol__transport_stats(c->tr, &out->transport);
}

int ol__cluster_send_app(struct ol__replica *r, uint64_t to, const void *p,
                         size_t len)
{
    struct cluster *c = (struct cluster *)r;
    struct ol__buf b;
    msgpack_packer pk;
    int rv;

    if (c->closing || c->tr == NULL)
        return OL_ESHUTDOWN;
    if (len > UINT32_MAX)
        return OL_ETOOBIG;
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, MSG_APP);
    msgpack_pack_bin(&pk, len);
    msgpack_pack_bin_body(&pk, p, len);
    rv = b.base ? ol__transport_send(c->tr, to, b.base, b.len) : OL_ENOMEM;
    ol__buf_close(&b);
    return rv;
}
