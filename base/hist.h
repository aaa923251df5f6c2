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

/*
 * A histogram in Prometheus's shape: a few fixed upper bounds, counts that
 * only grow (never reset, so a scraper can take rates), and the sum.
 * `bounds` rise strictly; values above the last go to the +Inf bucket.
 */
#define OL_PHIST_MAX 20

struct ol__phist {
    uint64_t count;
    uint64_t sum;
    uint64_t b[OL_PHIST_MAX + 1]; /* b[i]: values <= bounds[i] (not
                                     cumulative); b[n]: above them all */
};

/* Commit latency in microseconds and batch sizes in checkpoints. */
extern const uint64_t ol__lat_bounds_us[];
extern const unsigned ol__lat_nbounds;
extern const uint64_t ol__batch_bounds[];
extern const unsigned ol__batch_nbounds;

void ol__phist_add(struct ol__phist *h, const uint64_t *bounds, unsigned n,
                   uint64_t v);

void ol__hist_add(struct ol__hist *h, uint64_t us);
/* The value below which `q` (0..1) of the samples fall; 0 if empty. */
uint64_t ol__hist_quantile(const struct ol__hist *h, double q);
void ol__hist_reset(struct ol__hist *h);
uint64_t ol__now_us(void);

#endif
