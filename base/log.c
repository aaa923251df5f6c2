/*
 * The log: a level filter in front of one sink.  The default sink writes
 * timestamped lines to stderr, which is where the daemon's live log goes
 * (the terminal, or the journal under systemd), as text or as one JSON
 * object per line.
 */
#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int ol__log_level = OL_LOG_INFO;

static const char *const names[] = {"error", "warn", "info", "debug",
                                    "trace"};
static int log_format = OL_LOG_TEXT;

/* Copy `in` to `out` (cap bytes, NUL-terminated), replacing every byte
 * that does not start a valid UTF-8 sequence with '?': JSON strings must
 * be UTF-8, and a plugin may log anything. */
static void utf8_clean(const char *in, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t o = 0;

    while (*p && o + 5 < cap) {
        unsigned n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2
                               : (*p & 0xf0) == 0xe0 ? 3
                               : (*p & 0xf8) == 0xf0 ? 4 : 0;
        unsigned k = 1;

        if (n == 2 && *p < 0xc2)
            n = 0; /* overlong */
        if (n == 4 && *p > 0xf4)
            n = 0;
        while (n > 1 && k < n && (p[k] & 0xc0) == 0x80)
            k++;
        if (n == 3 && k == 3 &&
            ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f)))
            n = 0; /* overlong or a surrogate */
        if (n == 4 && k == 4 &&
            ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f)))
            n = 0;
        if (n == 0 || k != n) {
            out[o++] = '?';
            p++;
            continue;
        }
        memcpy(out + o, p, n);
        o += n;
        p += n;
    }
    out[o] = '\0';
}

static void timestamp(char *out, size_t cap)
{
    char ts[32];
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03ldZ", ts, now.tv_nsec / 1000000);
}

static void json_line(int level, const char *ts, const char *agent,
                      const char *line)
{
    char msg[1200], name[160], out[3000];
    json_t *o = json_object();
    size_t n;

    utf8_clean(line, msg, sizeof msg);
    if (o == NULL)
        return;
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(names[level]));
    json_object_set_new(o, "msg", json_string(msg));
    if (agent) {
        utf8_clean(agent, name, sizeof name);
        json_object_set_new(o, "agent", json_string(name));
    }
    n = json_dumpb(o, out, sizeof out - 1, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (n == 0 || n >= sizeof out - 1)
        return;
    out[n++] = '\n';
    fwrite(out, 1, n, stderr);
}

static void stderr_sink(void *data, int level, const char *agent,
                        const char *line)
{
    char ts[40];

    (void)data;
    timestamp(ts, sizeof ts);
    if (log_format == OL_LOG_JSON)
        json_line(level, ts, agent, line);
    else if (agent)
        fprintf(stderr, "%s %-5s agent '%s': %s\n", ts, names[level], agent,
                line);
    else
        fprintf(stderr, "%s %-5s %s\n", ts, names[level], line);
}

static ol_log_sink_fn sink = stderr_sink;
static void *sink_data;

void ol_log_set_format(int format)
{
    log_format = format == OL_LOG_JSON ? OL_LOG_JSON : OL_LOG_TEXT;
}

int ol_log_format_parse(const char *s)
{
    if (strcmp(s, "text") == 0)
        return OL_LOG_TEXT;
    if (strcmp(s, "json") == 0)
        return OL_LOG_JSON;
    return -1;
}

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

static void vlog(int level, const char *agent, const char *fmt, va_list ap)
{
    char line[2048];

    if (level < OL_LOG_ERROR)
        level = OL_LOG_ERROR;
    if (level > OL_LOG_TRACE)
        level = OL_LOG_TRACE;
    vsnprintf(line, sizeof line, fmt, ap);
    sink(sink_data, level, agent, line);
}

void ol__log(int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(level, NULL, fmt, ap);
    va_end(ap);
}

void ol__log_agent(int level, const char *agent, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(level, agent, fmt, ap);
    va_end(ap);
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
