/*
 * Logging.  ol_log() checks the level before it formats anything; only the
 * daemon chooses the sink and the format.  Log ids and sequence numbers,
 * never payloads or keys.
 *
 * Two formats go to stderr: text ("2026-01-02T03:04:05.678Z info  msg")
 * and JSON, one object per line:
 *   {"ts": "2026-01-02T03:04:05.678Z", "level": "info", "msg": "...",
 *    "agent": "name"}          ("agent" only on an agent's own lines)
 * Any thread may log: a line is formatted on the caller's stack and
 * written with one call.
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

enum ol_log_format {
    OL_LOG_TEXT = 0,
    OL_LOG_JSON = 1,
};

/* Sink: receives one formatted message without a trailing newline, and the
 * agent it is about (NULL for the node's own lines). */
typedef void (*ol_log_sink_fn)(void *data, int level, const char *agent,
                               const char *line);

void ol_log_set_level(int level);
void ol_log_set_sink(ol_log_sink_fn fn, void *data);
/* The default sink's format (OL_LOG_TEXT or OL_LOG_JSON). */
void ol_log_set_format(int format);

/* Parse "text|json"; returns the format or -1. */
int ol_log_format_parse(const char *s);

/* Parse "error|warn|info|debug|trace"; returns the level or -1. */
int ol_log_level_parse(const char *s);
const char *ol_log_level_name(int level);

void ol__log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A line about one agent (JSON puts the name in its own field). */
void ol__log_agent(int level, const char *agent, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
