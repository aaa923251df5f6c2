/*
 * libFuzzer target for the raft wire parser: what an authenticated peer
 * can send towards libraft (raftwire.h).  The first byte picks the
 * direction and how the rest is split into reads; what passes must never
 * be more than what was fed, whatever the bytes.
 */
#include <stdint.h>
#include <stdlib.h>

#include "replication/raftwire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t passed;

static int count(void *ctx, const uint8_t *p, size_t n)
{
    (void)ctx;
    (void)p;
    passed += n;
    return 0;
}

static uint64_t cap(void *data, uint64_t term, uint64_t last)
{
    (void)data;
    return last > term ? term : last;
}

static void seen(void *data, uint64_t a, uint64_t b, uint64_t c)
{
    (void)data;
    (void)a;
    (void)b;
    (void)c;
}

static void snap(void *data, uint64_t a, uint64_t b)
{
    (void)data;
    (void)a;
    (void)b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ol__rw_hooks h = {NULL, seen, snap, cap};
    struct ol__rwire w;
    size_t step;

    if (size < 1)
        return 0;
    step = 1 + data[0] / 2;
    ol__rwire_init(&w, data[0] & 1 ? OL_RW_OUT : OL_RW_IN, &h);
    passed = 0;
    for (size_t off = 1; off < size; off += step)
        if (ol__rwire_feed(&w, data + off,
                           size - off < step ? size - off : step, count,
                           NULL) != 0)
            break;
    if (passed > size)
        abort();
    ol__rwire_close(&w);
    return 0;
}
