/*
 * misbehave - a test agent that ticks on a timer and, after a number of
 * ticks, does one bad thing on every tick, the way a buggy plugin would.
 *
 * Modes: "none" (a well-behaved sibling), "segv" (writes through NULL),
 * "abort", "exit" (exit(3)), "stack" (unbounded recursion), "loop" (spins
 * for ever), "sleep" (sleeps for an hour), "hog" (allocates and touches
 * `hog_mb` MiB more per tick and keeps it), "flood" (sends `flood` messages
 * to itself per tick, counting the sends the host refuses), "workcrash"
 * (hands ol_host.work a function that writes through NULL), and "badargs"
 * (calls every host service with NULL or oversized arguments and records
 * what each returned), "savenull" (save() writes from a NULL pointer),
 * "peek" (opens the file `path` for reading and logs "peek: ok" or
 * "peek: errno N"), and "print" (writes a line to stdout and one holding
 * an escape sequence to stderr, as a plugin's debugging printf would).
 *
 * Every tick is checkpointed, so after a crash the agent resumes at the
 * tick that crashed and crashes again: each crash is one more on record.
 *
 * Built three ways: misbehave.so; misbehave_v2.so, version 2.0.0, where
 * every mode behaves (the fixed build, for upgrade tests); and
 * misbehave_abi7.so, which claims agent ABI 7 (to be refused).
 *
 * Config: {mode: str, after: uint (3), interval_ms: uint (20),
 *          hog_mb: uint (64), flood: uint (1024), path: str}.
 * State:  {ticks, sent, full, got, stops, errs: {service: code, ...}, v},
 * where stops counts STOP events and v is the version of the build that
 * saved it (1 or 2).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#include "entry.h"

static const struct ol_host *host;

#define N_ERRS 12

struct mb {
    char mode[16];
    char path[256];
    uint64_t after, interval_ms, hog_mb, flood;
    uint64_t ticks, sent, full, got, stops;
    int64_t errs[N_ERRS]; /* badargs: what each call returned */
    char **hog;
    size_t n_hog;
};

static const char *const err_names[N_ERRS] = {
    "send_null_to",  "send_null_msg", "send_big",      "send_bad_name",
    "send_not_mp",   "timer_big",     "cancel_none",   "work_null",
    "name_null",     "log_null",      "unused",        "checkpoint",
};

static uint64_t get_u(const msgpack_object *m, const char *k, uint64_t dflt)
{
    const msgpack_object *o = ol_mp_get(m, k);

    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? o->via.u64
                                                           : dflt;
}

static int mb_open(struct ol_agent *a, const void *cfg, size_t len,
                   void **self)
{
    struct mb *m = calloc(1, sizeof *m);
    msgpack_unpacked u;
    const msgpack_object *mode;

    (void)a;
    if (m == NULL)
        return OL_AGENT_ENOMEM;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, cfg, len, NULL) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&u);
        free(m);
        return OL_AGENT_EMALFORMED;
    }
    strcpy(m->mode, "none");
    mode = ol_mp_get(&u.data, "mode");
    if (mode && mode->type == MSGPACK_OBJECT_STR &&
        mode->via.str.size < sizeof m->mode) {
        memcpy(m->mode, mode->via.str.ptr, mode->via.str.size);
        m->mode[mode->via.str.size] = '\0';
    }
    mode = ol_mp_get(&u.data, "path");
    if (mode && mode->type == MSGPACK_OBJECT_STR &&
        mode->via.str.size < sizeof m->path) {
        memcpy(m->path, mode->via.str.ptr, mode->via.str.size);
        m->path[mode->via.str.size] = '\0';
    }
    m->after = get_u(&u.data, "after", 3);
    m->interval_ms = get_u(&u.data, "interval_ms", 20);
    m->hog_mb = get_u(&u.data, "hog_mb", 64);
    m->flood = get_u(&u.data, "flood", 1024);
    msgpack_unpacked_destroy(&u);
    *self = m;
    return 0;
}

static int mb_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    struct mb *m = self;
    msgpack_unpacked u;

    (void)a;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, state, len, NULL) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&u);
        return OL_AGENT_EMALFORMED;
    }
    m->ticks = get_u(&u.data, "ticks", 0);
    m->sent = get_u(&u.data, "sent", 0);
    m->full = get_u(&u.data, "full", 0);
    m->got = get_u(&u.data, "got", 0);
    m->stops = get_u(&u.data, "stops", 0);
    msgpack_unpacked_destroy(&u);
    return 0;
}

static volatile int sink;

/* Deep enough to overflow any stack; the depth check keeps the compiler
 * from calling it infinite. */
static int recurse(int n)
{
    volatile char pad[4096];

    pad[0] = (char)n;
    if (n < 0)
        return 0;
    return recurse(n + 1) + pad[0];
}

static void crash_work(void *arg)
{
    (void)arg;
    *(volatile int *)(uintptr_t)sink = 1;
}

static void quiet_work(void *arg)
{
    (void)arg;
}

static void badargs(struct mb *m, struct ol_agent *a)
{
    static char big[OL_AGENT_MSG_MAX + 16];
    static const uint8_t not_msgpack[] = {0xc1};
    static const uint8_t one[] = {0x01};

    m->errs[0] = host->send(a, NULL, one, 1);
    m->errs[1] = host->send(a, "x", NULL, 10);
    m->errs[2] = host->send(a, "x", big, sizeof big);
    m->errs[3] = host->send(a, "../../etc", one, 1);
    m->errs[4] = host->send(a, "x", not_msgpack, 1);
    m->errs[5] = host->timer_after(a, 1, UINT64_MAX);
    m->errs[6] = host->timer_cancel(a, 0xdeadbeef);
    m->errs[7] = host->work(a, 1, NULL, NULL);
    m->errs[8] = host->name(NULL) == NULL ? -1 : 0;
    host->log(a, OL_AGENT_LOG_INFO, NULL);
    host->log(NULL, OL_AGENT_LOG_INFO, "no agent");
    m->errs[9] = 0;
    m->errs[11] = host->checkpoint(NULL);
}

#ifdef MISBEHAVE_V2
#define VERSION "2.0.0"
#define V 2
#else
#define VERSION "1.0.0"
#define V 1
#endif
#ifndef MISBEHAVE_ABI
#define MISBEHAVE_ABI OL_AGENT_ABI
#endif

static void misbehave(struct mb *m, struct ol_agent *a)
{
    if (V == 2)
        return; /* the fixed build */
    if (strcmp(m->mode, "segv") == 0) {
        *(volatile int *)(uintptr_t)sink = 1;
    } else if (strcmp(m->mode, "abort") == 0) {
        abort();
    } else if (strcmp(m->mode, "exit") == 0) {
        exit(3);
    } else if (strcmp(m->mode, "stack") == 0) {
        sink = recurse(0);
    } else if (strcmp(m->mode, "loop") == 0) {
        for (;;)
            sink++;
    } else if (strcmp(m->mode, "sleep") == 0) {
        for (;;)
            sleep(3600); /* a signal ends one sleep, not the hang */
    } else if (strcmp(m->mode, "hog") == 0) {
        size_t n = (size_t)m->hog_mb << 20;
        char **h = realloc(m->hog, (m->n_hog + 1) * sizeof *h);
        char *p = malloc(n);

        /* A plugin that does not check: NULL is written through. */
        if (h)
            m->hog = h;
        memset(p, 1, n);
        if (h)
            m->hog[m->n_hog++] = p;
    } else if (strcmp(m->mode, "flood") == 0) {
        for (uint64_t i = 0; i < m->flood; i++) {
            uint8_t msg[1] = {0x01};
            int rv = host->send(a, host->name(a), msg, 1);

            if (rv == 0)
                m->sent++;
            else if (rv == OL_AGENT_EFULL)
                m->full++;
            else
                break;
        }
    } else if (strcmp(m->mode, "workcrash") == 0) {
        host->work(a, m->ticks, crash_work, NULL);
    } else if (strcmp(m->mode, "badargs") == 0) {
        badargs(m, a);
    } else if (strcmp(m->mode, "work") == 0) {
        host->work(a, m->ticks, quiet_work, NULL);
    } else if (strcmp(m->mode, "print") == 0) {
        printf("stdout line %llu\n", (unsigned long long)m->ticks);
        fflush(stdout);
        fprintf(stderr, "stderr \033[31mline\n");
    } else if (strcmp(m->mode, "peek") == 0) {
        int fd = open(m->path, O_RDONLY | O_CLOEXEC);

        if (fd >= 0) {
            close(fd);
            host->log(a, OL_AGENT_LOG_INFO, "peek: ok");
        } else {
            host->log(a, OL_AGENT_LOG_INFO, "peek: errno %d", errno);
        }
    }
}

static int mb_handle(void *self, struct ol_agent *a, const struct ol_event *e)
{
    struct mb *m = self;

    switch (e->type) {
    case OL_EVENT_START:
    case OL_EVENT_RESUME:
        return host->timer_after(a, 1, m->interval_ms);
    case OL_EVENT_TIMER:
        m->ticks++;
        if (m->ticks > m->after)
            misbehave(m, a);
        return host->timer_after(a, 1, m->interval_ms);
    case OL_EVENT_MESSAGE:
        m->got++;
        return 0;
    case OL_EVENT_STOP:
        m->stops++;
        return 0;
    default:
        return 0;
    }
}

static int mb_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    struct mb *m = self;
    msgpack_packer pk;

    (void)a;
    msgpack_packer_init(&pk, out->data, out->write);
    msgpack_pack_map(&pk, 7);
    msgpack_pack_str_with_body(&pk, "stops", 5);
    msgpack_pack_uint64(&pk, m->stops);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint32(&pk, V);
    msgpack_pack_str_with_body(&pk, "ticks", 5);
    msgpack_pack_uint64(&pk, m->ticks);
    msgpack_pack_str_with_body(&pk, "sent", 4);
    msgpack_pack_uint64(&pk, m->sent);
    msgpack_pack_str_with_body(&pk, "full", 4);
    msgpack_pack_uint64(&pk, m->full);
    msgpack_pack_str_with_body(&pk, "got", 3);
    msgpack_pack_uint64(&pk, m->got);
    msgpack_pack_str_with_body(&pk, "errs", 4);
    msgpack_pack_map(&pk, N_ERRS);
    for (int i = 0; i < N_ERRS; i++) {
        msgpack_pack_str_with_body(&pk, err_names[i], strlen(err_names[i]));
        msgpack_pack_int64(&pk, m->errs[i]);
    }
    if (strcmp(m->mode, "savenull") == 0 && m->ticks > m->after)
        /* A write from NULL must be refused, not followed. */
        return out->write(out->data, NULL, 16);
    return 0;
}

static void mb_close(void *self)
{
    struct mb *m = self;

    for (size_t i = 0; i < m->n_hog; i++)
        free(m->hog[i]);
    free(m->hog);
    free(m);
}

TP_VTABLE_ABI(MISBEHAVE_ABI, "misbehave", VERSION, mb_open, mb_restore,
              mb_handle, mb_save, mb_close)
