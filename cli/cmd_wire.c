/*
 * The wire part of `outlast cluster status`: this node's bytes on the
 * wire, compression and egress per checkpoint, and a row per peer with
 * its round trip (the node's "wire" object; see cmd_node.c for the rest).
 */
#include <stdio.h>

#include "cli.h"

static double mp_getf(const msgpack_object *map, const char *key)
{
    const msgpack_object *o = ol__mp_get(map, key);

    if (o == NULL)
        return 0;
    if (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32)
        return o->via.f64;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (double)o->via.u64;
    return 0;
}

/* A byte count as B, KiB, MiB or GiB. */
static const char *human_bytes(uint64_t b, char *out, size_t cap)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;

    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
    return out;
}

/* The "wire" entry: per-peer round trips, bytes and compression. */
void ol__cli_print_wire(const msgpack_object *root)
{
    const msgpack_object *w = ol__mp_get(root, "wire");
    const msgpack_object *peers = ol__mp_get(w, "peers");
    static const char *const head[] = {"PEER", "RTT", "RTT MIN", "RTT AVG",
                                       "OUT", "IN", "COMPRESSION", "RATIO"};
    struct ol__table t;
    char a[32], b[32], c[32], d[32];

    if (peers == NULL || peers->type != MSGPACK_OBJECT_ARRAY)
        return;
    printf("wire       %s out, %s in, compress %s, %.2fx; %s out per "
           "checkpoint committed\n",
           human_bytes(ol__mp_getu(w, "bytes_out"), a, sizeof a),
           human_bytes(ol__mp_getu(w, "bytes_in"), b, sizeof b),
           ol__mp_gets(w, "compress", c, sizeof c),
           mp_getf(w, "compression_ratio"),
           human_bytes(ol__mp_getu(w, "bytes_out_per_checkpoint"), d,
                       sizeof d));
    if (peers->via.array.size == 0 || ol__table_init(&t, 8, head) != 0)
        return;
    for (uint32_t i = 0; i < peers->via.array.size; i++) {
        const msgpack_object *p = &peers->via.array.ptr[i];
        char id[24], rtt[3][24], out[24], in[24], zip[24], ratio[24];
        static const char *const keys[] = {"rtt_ms", "rtt_min_ms",
                                           "rtt_avg_ms"};
        const char *cells[8];

        for (int k = 0; k < 3; k++) {
            if (ol__mp_getu(p, "rtt_samples") == 0)
                snprintf(rtt[k], sizeof rtt[k], "-");
            else
                snprintf(rtt[k], sizeof rtt[k], "%.2f ms",
                         mp_getf(p, keys[k]));
        }
        snprintf(ratio, sizeof ratio, "%.2fx",
                 mp_getf(p, "compression_ratio"));
        cells[0] = ol__mp_gets(p, "id", id, sizeof id);
        cells[1] = rtt[0];
        cells[2] = rtt[1];
        cells[3] = rtt[2];
        cells[4] = human_bytes(ol__mp_getu(p, "bytes_out"), out, sizeof out);
        cells[5] = human_bytes(ol__mp_getu(p, "bytes_in"), in, sizeof in);
        cells[6] = ol__mp_gets(p, "compression", zip, sizeof zip);
        cells[7] = ratio;
        ol__table_add(&t, cells);
    }
    ol__table_print(&t, stdout);
    ol__table_free(&t);
}
