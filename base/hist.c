/*
 * Log-linear latency histogram: bucket = 8 * floor(log2 v) + the next three
 * bits of v, so relative error stays under 1/8 at any scale.
 */
#include "hist.h"

#include <string.h>
#include <time.h>

static unsigned bucket(uint64_t v)
{
    unsigned lg, sub;

    if (v < 8)
        return (unsigned)v;
    lg = 63u - (unsigned)__builtin_clzll(v);
    sub = (unsigned)(v >> (lg - 3)) & 7u;
    if (lg * 8 + sub >= OL_HIST_BUCKETS)
        return OL_HIST_BUCKETS - 1;
    return lg * 8 + sub;
}

static uint64_t lower(unsigned b)
{
    unsigned lg = b / 8, sub = b % 8;

    if (b < 8)
        return b;
    return ((uint64_t)8 + sub) << (lg - 3);
}

void ol__hist_add(struct ol__hist *h, uint64_t us)
{
    h->b[bucket(us)]++;
    h->count++;
    h->sum_us += us;
    if (us > h->max_us)
        h->max_us = us;
}

uint64_t ol__hist_quantile(const struct ol__hist *h, double q)
{
    uint64_t want, seen = 0;

    if (h->count == 0)
        return 0;
    want = (uint64_t)(q * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    for (unsigned i = 0; i < OL_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > want)
            return lower(i);
    }
    return h->max_us;
}

void ol__hist_reset(struct ol__hist *h)
{
    memset(h, 0, sizeof *h);
}

uint64_t ol__now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

const uint64_t ol__lat_bounds_us[] = {
    100,    250,    500,     1000,    2500,    5000,    10000,  25000,
    50000,  100000, 250000,  500000,  1000000, 2500000, 5000000, 10000000,
};
const unsigned ol__lat_nbounds = sizeof ol__lat_bounds_us /
                                 sizeof ol__lat_bounds_us[0];
const uint64_t ol__batch_bounds[] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
};
const unsigned ol__batch_nbounds = sizeof ol__batch_bounds /
                                   sizeof ol__batch_bounds[0];

void ol__phist_add(struct ol__phist *h, const uint64_t *bounds, unsigned n,
                   uint64_t v)
{
    unsigned lo = 0, hi = n;

    /* The first bound >= v, or n. */
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;

        if (bounds[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    h->b[lo]++;
    h->count++;
    h->sum += v;
}
