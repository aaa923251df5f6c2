/*
 * A scraper for the benchmarks: a thread that, every `interval_ms`, asks
 * each target for each path (GET over a fresh TCP connection, as
 * Prometheus and a browser polling the status page do) and reads the
 * whole answer.  It counts answers whose status line says 200 and the
 * time each took; it parses nothing else.
 */
#ifndef OL_BENCH_SCRAPER_H
#define OL_BENCH_SCRAPER_H

#include <pthread.h>
#include <stdint.h>

#define SCRAPER_TARGETS 4

struct scraper {
    char targets[SCRAPER_TARGETS][64]; /* "127.0.0.1:PORT" */
    int n_targets;
    unsigned interval_ms;
    pthread_t thread;
    int running;
    volatile int stop;
    /* results */
    uint64_t ok, failed, bytes;
    uint64_t total_us, max_us;
};

/* Start scraping /metrics and /api/status on every target.  0 or -1. */
int scraper_start(struct scraper *s, unsigned interval_ms);

/* Stop and join; the counters are then final.  Safe if never started. */
void scraper_stop(struct scraper *s);

/* One GET of `path` from `target` into buf (NUL-terminated, cut at cap).
 * Returns the bytes of the whole answer, or -1 unless it was 200. */
long scraper_fetch(const char *target, const char *path, char *buf,
                   size_t cap);

#endif
