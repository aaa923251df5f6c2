/*
 * A latency histogram with log-linear buckets (8 per power of two, about
 * 9% resolution) over microseconds, cheap enough to record every commit.
 */
#ifndef OL_HIST_H
#define OL_HIST_H

#include <stdint.h>

#define OL_HIST_BUCKETS (40 * 8)

struct ol__hist {
    uint64_t count;
    uint64_t sum_us;
    uint64_t max_us;
    uint64_t b[OL_HIST_BUCKETS];
};

void ol__hist_add(struct ol__hist *h, uint64_t us);
/* The value below which `q` (0..1) of the samples fall; 0 if empty. */
uint64_t ol__hist_quantile(const struct ol__hist *h, double q);
void ol__hist_reset(struct ol__hist *h);
uint64_t ol__now_us(void);

#endif
