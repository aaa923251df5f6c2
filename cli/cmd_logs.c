/*
 * `outlast logs NAME [-f]`: an agent's own log lines, from whichever node
 * hosts it (the node asked forwards to the host over the cluster).  Lines
 * carry numbers that rise by one per line, so following asks only for what
 * came after the last line shown, notices lines the ring dropped before
 * they were read, and starts over when the agent moves to another node or
 * its node restarts (a ring with another id).
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "record/ckpt.h"
#include "base/err.h"
#include "base/log.h"
#include "cli.h"

#define FETCH_MAX 1000

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* One "logs" call; 0 with r holding the answer, or an exit code. */
static int fetch(struct ol__cli *c, const char *name, uint64_t after,
                 uint32_t limit, struct ol__cli_resp *r,
                 const msgpack_object **logs)
{
    struct ol__cli_req q;
    int rv;

    ol__cli_req_open(&q, "logs");
    ol__pk_kv_str(&q.m, "name", name);
    ol__pk_kv_uint(&q.m, "after", after);
    ol__pk_kv_uint(&q.m, "limit", limit);
    rv = ol__cli_req_send(c, &q, r);
    if (rv != 0)
        return rv;
    *logs = ol__mp_get(r->root, "logs");
    if (*logs == NULL || (*logs)->type != MSGPACK_OBJECT_MAP) {
        ol__cli_resp_free(r);
        return ol__cli_fail(c, OL_EXIT_FAIL, "OL_EMALFORMED",
                            "the node's answer has no logs");
    }
    return 0;
}

static void iso_ms(int64_t ms, char *out, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    char ts[32];

    gmtime_r(&s, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", ts, (int)(ms % 1000));
}

/* Print the lines; returns the highest seq printed (or `after`). */
static uint64_t print_lines(const struct ol__cli *c, const msgpack_object *l,
                            uint64_t after)
{
    const msgpack_object *lines = ol__mp_get(l, "lines");
    char name[80];
    uint64_t node = ol__mp_getu(l, "node");

    ol__mp_gets(l, "name", name, sizeof name);
    if (lines == NULL || lines->type != MSGPACK_OBJECT_ARRAY)
        return after;
    for (uint32_t i = 0; i < lines->via.array.size; i++) {
        const msgpack_object *ln = &lines->via.array.ptr[i];
        uint64_t seq = ol__mp_getu(ln, "seq");
        char ts[40], level[16], text[1100];

        if (seq <= after)
            continue;
        after = seq;
        if (c->json) {
            char *j = ol__cli_compact_json(ln);

            if (j) {
                /* One object per line: {seq, time_ms, level, text} plus
                 * where it came from. */
                printf("{\"agent\":\"%s\",\"node\":%" PRIu64 ",%s\n", name,
                       node, j + 1);
                free(j);
            }
            continue;
        }
        iso_ms(ol__mp_geti(ln, "time_ms"), ts, sizeof ts);
        printf("%s %-5s %s\n", ts, ol__mp_gets(ln, "level", level,
                                               sizeof level),
               ol__mp_gets(ln, "text", text, sizeof text));
    }
    fflush(stdout);
    return after;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Keep printing new lines until interrupted or past t_end (0: never);
 * `ring` and `after` say where the first lines left off. */
static void follow_lines(struct ol__cli *c, const char *name, uint64_t ring,
                         uint64_t after, uint64_t interval, uint64_t t_end)
{
    const msgpack_object *l;
    struct ol__cli_resp r;
    uint64_t first;

    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    while (!interrupted && (!t_end || (uint64_t)ol__wall_ms() < t_end)) {
        sleep_ms((unsigned)interval);
        if (interrupted)
            break;
        if (fetch(c, name, after, FETCH_MAX, &r, &l) != 0)
            continue; /* the error is printed; the agent may be moving */
        if (ol__mp_getu(l, "ring") != ring) {
            ring = ol__mp_getu(l, "ring");
            if (!c->json)
                printf("-- now on node %" PRIu64 ", epoch %" PRIu64 " --\n",
                       ol__mp_getu(l, "node"), ol__mp_getu(l, "epoch"));
            after = 0;
            ol__cli_resp_free(&r);
            if (fetch(c, name, 0, FETCH_MAX, &r, &l) != 0)
                continue;
        }
        first = ol__mp_getu(l, "first");
        if (first > after + 1 && !c->json)
            printf("-- %" PRIu64 " line(s) dropped before they were read --\n",
                   first - after - 1);
        after = print_lines(c, l, after);
        ol__cli_resp_free(&r);
    }
}

/* The seq after which the ring's last `lines` lines start. */
static int start_after(struct ol__cli *c, const char *name, uint64_t lines,
                       uint64_t *after)
{
    const msgpack_object *l;
    struct ol__cli_resp r;
    uint64_t next, first;
    int rv;

    if ((rv = fetch(c, name, UINT64_MAX - 1, 1, &r, &l)) != 0)
        return rv;
    next = ol__mp_getu(l, "next");
    first = ol__mp_getu(l, "first");
    ol__cli_resp_free(&r);
    *after = next > lines + 1 ? next - 1 - lines : 0;
    if (*after + 1 < first)
        *after = first ? first - 1 : 0;
    return 0;
}

int ol__cmd_logs(struct ol__cli *c)
{
    const char *pos[1], *s_lines = NULL, *s_interval = NULL,
                                *s_duration = NULL;
    int follow = 0, n, rv;
    const struct ol__cli_opt opts[] = {
        {.name = "--follow", .flag = &follow},
        {.name = "-f", .flag = &follow},
        {.name = "--lines", .value = &s_lines},
        {.name = "-n", .value = &s_lines},
        {.name = "--interval", .value = &s_interval},
        {.name = "--duration", .value = &s_duration},
        {0},
    };
    uint64_t lines = 50, interval = 500, duration = 0, ring, after;
    const msgpack_object *l;
    struct ol__cli_resp r;
    const char *name;

    if ((rv = ol__cli_parse(c, opts, pos, 1, 1, &n)) != 0 ||
        (rv = ol__cli_need_node(c)) != 0)
        return rv;
    name = pos[0];
    if (!ol__name_valid(name))
        return ol__cli_usage_err(c, "'%s' is not a valid agent name", name);
    if ((s_lines && ol__cli_parse_u64(s_lines, 100000, &lines) != 0) ||
        (s_interval && (ol__cli_parse_u64(s_interval, 60000, &interval) != 0 ||
                        interval < 50)) ||
        (s_duration && ol__cli_parse_u64(s_duration, UINT32_MAX,
                                         &duration) != 0))
        return ol__cli_usage_err(c,
                                 "--lines takes 0-100000, --interval 50-60000 "
                                 "(ms), --duration a number of ms");
    /* Where the ring stands, then its last `lines` lines. */
    if ((rv = start_after(c, name, lines, &after)) != 0 ||
        (rv = fetch(c, name, after, FETCH_MAX, &r, &l)) != 0)
        return rv;
    if (c->json && !follow) {
        rv = ol__cli_print_json(l);
        ol__cli_resp_free(&r);
        return rv;
    }
    ring = ol__mp_getu(l, "ring");
    after = print_lines(c, l, after);
    ol__cli_resp_free(&r);
    if (follow)
        follow_lines(c, name, ring, after, interval,
                     duration ? (uint64_t)ol__wall_ms() + duration : 0);
    return 0;
}
