/*
 * slow_work - a test agent that keeps the host's thread pool busy.
 *
 * On START and RESUME it hands `jobs` work items to ol_host.work(); each
 * sleeps `sleep_ms` on a pool thread.  Every OL_EVENT_WORK counts one
 * completion and, until `max` completions (0: no limit), starts another
 * item, so `jobs` items stay in flight.  A message {"work": K} starts K more.
 * After STOP it starts nothing, so close() is not held up.
 * Tests use it to check that slow work never blocks the event loop (other
 * agents keep ticking), that every accepted item gets its WORK event before
 * close(), and that work in flight at a crash is simply started again after
 * the resume.  Every WORK event is written to stderr (which reaches the
 * daemon's log from either kind of host, even after the agent closed) with
 * the epoch the work started under and whether it came back fenced (the
 * agent no longer runs here): "slow_work: work N (S ms): epoch E fenced F".
 *
 * Config: {jobs: uint, 1..64 (1), sleep_ms: uint, 0..10000 (50),
 *          max: uint (0)}.
 * State:  {completions: uint, started: uint}.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#include "entry.h"

#define JOBS_MAX 64
#define SLEEP_MAX 10000

static const struct ol_host *host;

struct slow {
    uint64_t jobs, sleep_ms, max;
    uint64_t completions; /* WORK events seen, over the agent's life */
    uint64_t started;     /* items accepted by the host, ditto */
    uint64_t inflight;    /* not state: in-flight work dies with a crash */
    bool stopping;        /* STOP seen: start nothing more */
};

/* The only thing a pool thread touches. */
struct item {
    uint64_t sleep_ms;
};

/* Reads an optional uint in lo..hi under `key`; false if mistyped. */
static bool opt_u64(const msgpack_object *m, const char *key, uint64_t lo,
                    uint64_t hi, uint64_t *v)
{
    const msgpack_object *o = ol_mp_get(m, key);

    if (o == NULL)
        return true;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 < lo ||
        o->via.u64 > hi)
        return false;
    *v = o->via.u64;
    return true;
}

static void sleep_fn(void *arg)
{
    const struct item *it = arg;
    struct timespec ts = {
        .tv_sec = (time_t)(it->sleep_ms / 1000),
        .tv_nsec = (long)(it->sleep_ms % 1000) * 1000000L,
    };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int slow_open(struct ol_agent *a, const void *config, size_t len,
                     void **self)
{
    struct slow *s;
    msgpack_unpacked u;
    bool ok;
    int rv;

    if ((s = tp_open_begin(config, len, sizeof(*s), &u, &rv)) == NULL)
        return rv;
    s->jobs = 1;
    s->sleep_ms = 50;
    ok = (u.data.type == MSGPACK_OBJECT_MAP ||
          u.data.type == MSGPACK_OBJECT_NIL) &&
         opt_u64(&u.data, "jobs", 1, JOBS_MAX, &s->jobs) &&
         opt_u64(&u.data, "sleep_ms", 0, SLEEP_MAX, &s->sleep_ms) &&
         opt_u64(&u.data, "max", 0, UINT64_MAX, &s->max);
    return tp_open_end(host, a, &u, ok, s, self,
                       "want {jobs: 1..%d, sleep_ms: 0..%d, max: uint}",
                       JOBS_MAX, SLEEP_MAX);
}

static void slow_close(void *self)
{
    free(self);
}

static int submit(struct slow *s, struct ol_agent *a)
{
    struct item *it;
    int rv;

    if (s->stopping ||
        (s->max != 0 && s->completions + s->inflight >= s->max))
        return 0;
    it = malloc(sizeof(*it));
    if (it == NULL)
        return OL_AGENT_ENOMEM;
    it->sleep_ms = s->sleep_ms;
    rv = host->work(a, s->started + 1, sleep_fn, it);
    if (rv != 0) {
        free(it); /* on error fn never runs and no event follows */
        host->log(a, OL_AGENT_LOG_ERROR, "work: error %d", rv);
        return rv;
    }
    s->started++;
    s->inflight++;
    return 0;
}

static int submit_n(struct slow *s, struct ol_agent *a, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        int rv = submit(s, a);
        if (rv != 0)
            return rv;
    }
    return 0;
}

static int slow_handle(void *self, struct ol_agent *a,
                       const struct ol_event *ev)
{
    struct slow *s = self;
    const msgpack_object *k;
    msgpack_unpacked u;
    uint64_t n = 0;

    switch (ev->type) {
    case OL_EVENT_START:
    case OL_EVENT_RESUME:
        return submit_n(s, a, s->jobs);
    case OL_EVENT_WORK:
        if (ev->size >= offsetof(struct ol_event, fenced) + sizeof(int))
            fprintf(stderr, "slow_work: work %llu (%llu ms): epoch %llu "
                            "fenced %d\n",
                    (unsigned long long)ev->work_id,
                    (unsigned long long)s->sleep_ms,
                    (unsigned long long)ev->work_epoch, ev->fenced);
        free(ev->work_arg);
        if (ev->fenced)
            return 0; /* the result is not ours to act on any more */
        if (s->inflight > 0)
            s->inflight--;
        s->completions++;
        return submit(s, a);
    case OL_EVENT_MESSAGE:
        if (ol_mp_unpack(&u, ev->data, ev->len) != 0)
            return 0;
        k = ol_mp_get(&u.data, "work");
        if (k != NULL && k->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            k->via.u64 <= JOBS_MAX)
            n = k->via.u64;
        else
            host->log(a, OL_AGENT_LOG_WARN,
                      "message from '%s': want {work: 0..%d}; ignored",
                      ev->from, JOBS_MAX);
        msgpack_unpacked_destroy(&u);
        return submit_n(s, a, n);
    case OL_EVENT_STOP:
        s->stopping = true;
        return 0;
    default:
        return 0;
    }
}

static int slow_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    const struct slow *s = self;
    msgpack_packer pk;

    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 2) ||
        msgpack_pack_str_with_body(&pk, "completions", 11) ||
        msgpack_pack_uint64(&pk, s->completions) ||
        msgpack_pack_str_with_body(&pk, "started", 7) ||
        msgpack_pack_uint64(&pk, s->started))
        return OL_AGENT_ETOOBIG;
    return 0;
}

static int slow_restore(void *self, struct ol_agent *a, const void *state,
                        size_t len)
{
    struct slow *s = self;
    const msgpack_object *c, *st;
    msgpack_unpacked u;
    bool ok;

    if (ol_mp_unpack(&u, state, len) != 0)
        return OL_AGENT_EMALFORMED;
    c = ol_mp_get(&u.data, "completions");
    st = ol_mp_get(&u.data, "started");
    ok = c != NULL && c->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
         st != NULL && st->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (ok) {
        s->completions = c->via.u64;
        s->started = st->via.u64;
    }
    msgpack_unpacked_destroy(&u);
    return ok ? 0 : OL_AGENT_EMALFORMED;
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "slow_work",
    .version = "0",
    .open = slow_open,
    .restore = slow_restore,
    .handle = slow_handle,
    .save = slow_save,
    .close = slow_close,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, work))
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vtable;
    return 0;
}
