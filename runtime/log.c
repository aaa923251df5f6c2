/*
 * The log: a level filter in front of one sink.  The default sink writes
 * timestamped lines to stderr, which is where the daemon's live log goes.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int ol__log_level = OL_LOG_INFO;

static const char *const names[] = {"error", "warn", "info", "debug",
                                    "trace"};

static void stderr_sink(void *data, int level, const char *line)
{
    char ts[32];
    struct timespec now;
    struct tm tm;

    (void)data;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %-5s %s\n", ts, now.tv_nsec / 1000000,
            names[level], line);
}

static ol_log_sink_fn sink = stderr_sink;
static void *sink_data;

void ol_log_set_level(int level)
{
    if (level < OL_LOG_ERROR)
        level = OL_LOG_ERROR;
    if (level > OL_LOG_TRACE)
        level = OL_LOG_TRACE;
    ol__log_level = level;
}

void ol_log_set_sink(ol_log_sink_fn fn, void *data)
{
    sink = fn ? fn : stderr_sink;
    sink_data = data;
}

int ol_log_level_parse(const char *s)
{
    for (int i = 0; i <= OL_LOG_TRACE; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    if (strcmp(s, "warning") == 0)
        return OL_LOG_WARN;
    return -1;
}

const char *ol_log_level_name(int level)
{
    if (level < 0 || level > OL_LOG_TRACE)
        return "?";
    return names[level];
}

void ol__log(int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    if (level < OL_LOG_ERROR)
        level = OL_LOG_ERROR;
    if (level > OL_LOG_TRACE)
        level = OL_LOG_TRACE;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    sink(sink_data, level, line);
}

int ol__ratelimit_ok(struct ol_ratelimit *rl, unsigned burst,
                     uint64_t period_ms, unsigned *suppressed)
{
    uint64_t now = ol__mono_ms();

    *suppressed = 0;
    if (now - rl->window_start_ms >= period_ms) {
        *suppressed = rl->suppressed;
        rl->window_start_ms = now;
        rl->count = 0;
        rl->suppressed = 0;
    }
    if (rl->count < burst) {
        rl->count++;
        return 1;
    }
    rl->suppressed++;
    return 0;
}

uint64_t ol__mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t ol__wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
