/*
 * The node-to-node wire in the /metrics exposition (metrics.c formats the
 * rest): each peer's round trip as the transport's pings measure it, and
 * the bytes sent to and received from it, both as they go on the socket
 * (after compression) and as payload (before).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "base/err.h"
#include "obs.h"

static int put(struct ol__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int put(struct ol__buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        return OL_EINVAL;
    return ol__buf_append(b, line, (size_t)n);
}

/* The RTT gauges: the newest sample, the least and the smoothed one. */
static int rtt(struct ol__buf *b, const struct ol__transport_stats *t)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } g[] = {
        {"outlast_peer_rtt_seconds",
         "Round trip to each peer: the newest ping on the node-to-node "
         "connections (one a second each, at most one outstanding).",
         offsetof(struct ol__transport_peer_stats, rtt_last_us)},
        {"outlast_peer_rtt_min_seconds",
         "The least round trip to each peer seen since start.",
         offsetof(struct ol__transport_peer_stats, rtt_min_us)},
        {"outlast_peer_rtt_avg_seconds",
         "Smoothed round trip to each peer (moving average, weight 1/8).",
         offsetof(struct ol__transport_peer_stats, rtt_avg_us)},
    };
    int rv = 0;

    for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) {
        rv |= put(b, "# HELP %s %s\n# TYPE %s gauge\n", g[k].name, g[k].help,
                  g[k].name);
        for (size_t i = 0; i < t->n_peers; i++) {
            const struct ol__transport_peer_stats *p = &t->peers[i];
            uint64_t us = *(const uint64_t *)((const char *)p + g[k].off);

            if (p->rtt_samples > 0)
                rv |= put(b, "%s{peer=\"%" PRIu64 "\"} %.6f\n", g[k].name,
                          p->id, (double)us / 1e6);
        }
    }
    return rv;
}

/* A counter family with one sample per peer and direction, read from
 * the peer's figures at offsets `out` and `in`. */
static int bytes(struct ol__buf *b, const struct ol__transport_stats *t,
                 const char *name, const char *help, size_t out, size_t in)
{
    int rv = put(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);

    for (size_t i = 0; i < t->n_peers; i++) {
        const char *p = (const char *)&t->peers[i];

        rv |= put(b, "%s{peer=\"%" PRIu64 "\",direction=\"out\"} %" PRIu64
                     "\n%s{peer=\"%" PRIu64 "\",direction=\"in\"} %" PRIu64
                     "\n",
                  name, t->peers[i].id, *(const uint64_t *)(p + out), name,
                  t->peers[i].id, *(const uint64_t *)(p + in));
    }
    return rv;
}

int ol__metrics_wire(struct ol__buf *b, const struct ol__transport_stats *t)
{
    int rv = rtt(b, t);

    rv |= bytes(b, t, "outlast_peer_wire_bytes_total",
                "Bytes of node-to-node frames sent to and received from "
                "each peer, as they go on the socket (after compression; "
                "handshakes and TCP/IP headers not counted).",
                offsetof(struct ol__transport_peer_stats, wire_out),
                offsetof(struct ol__transport_peer_stats, wire_in));
    rv |= bytes(b, t, "outlast_peer_data_bytes_total",
                "Payload bytes (raft's messages and node-to-node messages) "
                "sent to and received from each peer, before compression.",
                offsetof(struct ol__transport_peer_stats, data_out),
                offsetof(struct ol__transport_peer_stats, data_in));
    return rv == 0 ? 0 : OL_ENOMEM;
}
