/*
 * Logging.  ol_log() checks the level before it formats anything; only the
 * daemon chooses the sink.  Log ids and sequence numbers, never payloads or
 * keys.
 */
#ifndef OL_LOG_H
#define OL_LOG_H

#include <stdint.h>

enum ol_log_level {
    OL_LOG_ERROR = 0,
    OL_LOG_WARN = 1,
    OL_LOG_INFO = 2,
    OL_LOG_DEBUG = 3,
    OL_LOG_TRACE = 4,
};

extern int ol__log_level;

/* Sink: receives one formatted line without a trailing newline. */
typedef void (*ol_log_sink_fn)(void *data, int level, const char *line);

void ol_log_set_level(int level);
void ol_log_set_sink(ol_log_sink_fn fn, void *data);

/* Parse "error|warn|info|debug|trace"; returns the level or -1. */
int ol_log_level_parse(const char *s);
const char *ol_log_level_name(int level);

void ol__log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define ol_log(level, ...)                                                 \
    do {                                                                   \
        if ((level) <= ol__log_level)                                      \
            ol__log((level), __VA_ARGS__);                                 \
    } while (0)

/* A repeating error is logged at most `burst` times per `period_ms`; the
 * next line that gets through says how many were suppressed. */
struct ol_ratelimit {
    uint64_t window_start_ms;
    unsigned count;
    unsigned suppressed;
};

int ol__ratelimit_ok(struct ol_ratelimit *rl, unsigned burst,
                     uint64_t period_ms, unsigned *suppressed);

#define ol_log_rl(level, ...)                                              \
    do {                                                                   \
        static struct ol_ratelimit rl_;                                    \
        unsigned supp_;                                                    \
        if ((level) <= ol__log_level &&                                    \
            ol__ratelimit_ok(&rl_, 5, 10000, &supp_)) {                    \
            if (supp_)                                                     \
                ol__log((level), "(%u similar messages suppressed)",       \
                        supp_);                                            \
            ol__log((level), __VA_ARGS__);                                 \
        }                                                                  \
    } while (0)

/* Monotonic and wall-clock milliseconds. */
uint64_t ol__mono_ms(void);
int64_t ol__wall_ms(void);

#endif
