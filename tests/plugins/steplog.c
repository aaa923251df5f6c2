/*
 * steplog - a test agent that writes down every step it takes, for the
 * nemesis tests (tests/support/nemesis.h).
 *
 * Every event appends one line to <dir>/<node>.steplog, where <node> is
 * the name of the node the step runs on (ol_event.node) and <dir> comes
 * from the config (or the OL_STEPLOG_DIR environment variable):
 *
 *   A=<agent> E=<epoch> S=<seq> N=<node> ev=<event> k=<step> x=<extra>
 *   mono=<ns> boot=<ns> real=<ns> tmono=<ns>
 *
 * (one line).  `E` is the epoch the step runs under (the host fills
 * ol_event.epoch for every event).  `S` is the seq of the checkpoint the
 * step ends in: the agent asks for a checkpoint after every step, and the
 * host takes no step while one is in flight, so step after step the seqs
 * run on by one from 1 after START and from the restored seq + 1 after
 * RESUME.  `k` counts the agent's steps over its whole life (it is state,
 * so a resumed agent carries on from its last committed count).  `x` is
 * the message number for a message, the timer id for a timer, the
 * restored seq for a resume, else 0.  `mono`, `boot` and `real` are
 * CLOCK_MONOTONIC, CLOCK_BOOTTIME and CLOCK_REALTIME as the process reads
 * them through libc (what the node itself sees, shims included); `tmono`
 * is CLOCK_MONOTONIC read with the system call, which no LD_PRELOAD shim
 * sees: on one machine it is one clock for every process, so the checker
 * orders steps of different nodes by it.  Each line is written with one
 * write() to a file opened O_APPEND, so lines of agents sharing a file
 * never interleave, and a line is in the file as soon as the step ran
 * (even if the node is killed right after).
 *
 * Messages {"n": K} (K >= 1) are recorded in a bitmap, as a ledger would:
 * a number seen a second time is a duplicate and is listed in `dups` (at
 * most DUPS_MAX are kept; `ndups` counts them all).  The committed state
 * is what the checker reads: a step that never committed is replayed after
 * a resume and counts once.
 *
 * Config: {dir: str, interval_ms: uint 1..60000 (25)}.
 * State:  {k: uint, seq: uint, ticks: uint, msgs: uint, other: uint,
 *          got: bin (bit K-1 set: message K seen), ndups: uint,
 *          dups: [uint]}.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#include "entry.h"

#define TICK_TIMER 1
#define INTERVAL_DEFAULT 25
#define INTERVAL_MAX 60000
#define N_MAX (1u << 20) /* highest message number recorded */
#define DUPS_MAX 256
#define DIR_MAX 400

static const struct ol_host *host;

struct steplog {
    uint64_t interval_ms;
    char dir[DIR_MAX];
    int fd;            /* the node's step log; -1 until the first event */
    uint64_t next_seq; /* seq of the checkpoint the next step ends in */
    /* State. */
    uint64_t k, seq, ticks, msgs, other, ndups;
    uint8_t *got;
    size_t got_len;
    uint64_t dups[DUPS_MAX];
    size_t n_dups;
};

static int64_t clock_ns(clockid_t id, int raw)
{
    struct timespec ts = {0, 0};

    if (raw)
        syscall(SYS_clock_gettime, id, &ts);
    else
        clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int steplog_open(struct ol_agent *a, const void *config, size_t len,
                        void **self)
{
    const msgpack_object *dir, *iv;
    const char *env = getenv("OL_STEPLOG_DIR");
    struct steplog *s;
    msgpack_unpacked u;
    bool ok = true;

    if (ol_mp_unpack(&u, config, len) != 0)
        return OL_AGENT_EINVAL;
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        msgpack_unpacked_destroy(&u);
        return OL_AGENT_ENOMEM;
    }
    s->fd = -1;
    s->interval_ms = INTERVAL_DEFAULT;
    s->next_seq = 1;
    dir = ol_mp_get(&u.data, "dir");
    iv = ol_mp_get(&u.data, "interval_ms");
    if (iv && (!ol_mp_uint(iv, &s->interval_ms) || s->interval_ms < 1 ||
               s->interval_ms > INTERVAL_MAX))
        ok = false;
    if (dir && dir->type == MSGPACK_OBJECT_STR && dir->via.str.size > 0 &&
        dir->via.str.size < DIR_MAX &&
        memchr(dir->via.str.ptr, '\0', dir->via.str.size) == NULL)
        memcpy(s->dir, dir->via.str.ptr, dir->via.str.size);
    else if (dir == NULL && env && env[0] && strlen(env) < DIR_MAX)
        snprintf(s->dir, sizeof s->dir, "%s", env);
    else
        ok = false;
    msgpack_unpacked_destroy(&u);
    if (!ok) {
        host->log(a, OL_AGENT_LOG_ERROR,
                  "config: needs 'dir' (a directory; or OL_STEPLOG_DIR) and "
                  "an optional 'interval_ms' in 1..%d",
                  INTERVAL_MAX);
        free(s);
        return OL_AGENT_EINVAL;
    }
    *self = s;
    return 0;
}

static void steplog_close(void *self)
{
    struct steplog *s = self;

    if (s->fd >= 0)
        close(s->fd);
    free(s->got);
    free(s);
}

static const char *event_name(uint32_t type)
{
    static const char *const names[] = {"?",       "start", "resume",
                                        "timer",   "message", "stop",
                                        "work"};

    return type < sizeof names / sizeof names[0] ? names[type] : "?";
}

/* Opens <dir>/<node>.steplog at the first event, which names the node. */
static int log_open(struct steplog *s, struct ol_agent *a, const char *node)
{
    char path[DIR_MAX + 96];

    if (s->fd >= 0)
        return 0;
    snprintf(path, sizeof path, "%s/%s.steplog", s->dir,
             node && node[0] ? node : "unknown");
    s->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (s->fd < 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "open %s: %s", path,
                  strerror(errno));
        return OL_AGENT_EINVAL;
    }
    return 0;
}

static int log_step(struct steplog *s, struct ol_agent *a,
                    const struct ol_event *ev, uint64_t extra)
{
    char line[512];
    int n;

    if (log_open(s, a, ev->node) != 0)
        return OL_AGENT_EINVAL;
    n = snprintf(line, sizeof line,
                 "A=%s E=%" PRIu64 " S=%" PRIu64 " N=%s ev=%s k=%" PRIu64
                 " x=%" PRIu64 " mono=%" PRId64 " boot=%" PRId64
                 " real=%" PRId64 " tmono=%" PRId64 "\n",
                 host->name(a), ev->epoch, s->next_seq,
                 ev->node ? ev->node : "unknown", event_name(ev->type), s->k,
                 extra, clock_ns(CLOCK_MONOTONIC, 0),
                 clock_ns(CLOCK_BOOTTIME, 0), clock_ns(CLOCK_REALTIME, 0),
                 clock_ns(CLOCK_MONOTONIC, 1));
    if (n <= 0 || (size_t)n >= sizeof line ||
        write(s->fd, line, (size_t)n) != n) {
        host->log(a, OL_AGENT_LOG_ERROR, "step log: write failed");
        return OL_AGENT_EINVAL;
    }
    return 0;
}

/* Records message number n; 0 if it is new, 1 for a duplicate. */
static int record(struct steplog *s, uint64_t n)
{
    size_t byte = (size_t)((n - 1) / 8);
    uint8_t bit = (uint8_t)(1u << ((n - 1) % 8));

    if (byte >= s->got_len) {
        size_t len = byte + 1 > s->got_len * 2 ? byte + 1 : s->got_len * 2;
        uint8_t *g = realloc(s->got, len);

        if (g == NULL)
            return -1;
        memset(g + s->got_len, 0, len - s->got_len);
        s->got = g;
        s->got_len = len;
    }
    if (s->got[byte] & bit) {
        if (s->n_dups < DUPS_MAX)
            s->dups[s->n_dups++] = n;
        s->ndups++;
        return 1;
    }
    s->got[byte] |= bit;
    return 0;
}

/* The message's number, or 0 if it carries none. */
static uint64_t message_n(const struct ol_event *ev)
{
    msgpack_unpacked u;
    uint64_t n = 0;

    if (ev->data == NULL || ol_mp_unpack(&u, ev->data, ev->len) != 0)
        return 0;
    if (!ol_mp_uint(ol_mp_get(&u.data, "n"), &n) || n > N_MAX)
        n = 0;
    msgpack_unpacked_destroy(&u);
    return n;
}

static int steplog_handle(void *self, struct ol_agent *a,
                          const struct ol_event *ev)
{
    struct steplog *s = self;
    uint64_t extra = 0, n = 0;
    int rv;

    if (ev->type == OL_EVENT_START)
        s->next_seq = 1;
    else if (ev->type == OL_EVENT_RESUME)
        s->next_seq = ev->seq + 1;
    if (ev->type == OL_EVENT_MESSAGE)
        extra = n = message_n(ev);
    else if (ev->type == OL_EVENT_TIMER)
        extra = ev->timer_id;
    else if (ev->type == OL_EVENT_RESUME)
        extra = ev->seq;
    s->k++;
    s->seq = s->next_seq;
    rv = log_step(s, a, ev, extra);
    s->next_seq++;
    if (rv != 0)
        return rv;
    switch (ev->type) {
    case OL_EVENT_START:
    case OL_EVENT_RESUME:
        rv = host->timer_after(a, TICK_TIMER, s->interval_ms);
        break;
    case OL_EVENT_TIMER:
        s->ticks++;
        if (ev->timer_id == TICK_TIMER)
            rv = host->timer_after(a, TICK_TIMER, s->interval_ms);
        break;
    case OL_EVENT_MESSAGE:
        if (n == 0)
            s->other++;
        else if (record(s, n) < 0)
            return OL_AGENT_ENOMEM;
        s->msgs++;
        break;
    default:
        break;
    }
    if (rv != 0)
        return rv;
    return host->checkpoint(a);
}

static int pack_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
    return ol_mp_pack_str(pk, key) || msgpack_pack_uint64(pk, v);
}

static int steplog_save(void *self, struct ol_agent *a,
                        const struct ol_sink *out)
{
    const struct steplog *s = self;
    msgpack_packer pk;

    (void)a;
    msgpack_packer_init(&pk, out->data, out->write);
    if (msgpack_pack_map(&pk, 8) || pack_u64(&pk, "k", s->k) ||
        pack_u64(&pk, "seq", s->seq) || pack_u64(&pk, "ticks", s->ticks) ||
        pack_u64(&pk, "msgs", s->msgs) || pack_u64(&pk, "other", s->other) ||
        pack_u64(&pk, "ndups", s->ndups) || ol_mp_pack_str(&pk, "got") ||
        msgpack_pack_bin_with_body(&pk, s->got, s->got_len) ||
        ol_mp_pack_str(&pk, "dups") ||
        msgpack_pack_array(&pk, (uint32_t)s->n_dups))
        return OL_AGENT_ETOOBIG;
    for (size_t i = 0; i < s->n_dups; i++)
        if (msgpack_pack_uint64(&pk, s->dups[i]))
            return OL_AGENT_ETOOBIG;
    return 0;
}

static int restore_from(void *self, const msgpack_object *st)
{
    struct steplog *s = self;
    const msgpack_object *got = ol_mp_get(st, "got"), *dups = ol_mp_get(st, "dups");

    if (!ol_mp_uint(ol_mp_get(st, "k"), &s->k) ||
        !ol_mp_uint(ol_mp_get(st, "seq"), &s->seq) ||
        !ol_mp_uint(ol_mp_get(st, "ticks"), &s->ticks) ||
        !ol_mp_uint(ol_mp_get(st, "msgs"), &s->msgs) ||
        !ol_mp_uint(ol_mp_get(st, "other"), &s->other) ||
        !ol_mp_uint(ol_mp_get(st, "ndups"), &s->ndups) || got == NULL ||
        got->type != MSGPACK_OBJECT_BIN || got->via.bin.size > N_MAX / 8 ||
        dups == NULL || dups->type != MSGPACK_OBJECT_ARRAY ||
        dups->via.array.size > DUPS_MAX)
        return OL_AGENT_EMALFORMED;
    free(s->got);
    s->got = NULL;
    s->got_len = got->via.bin.size;
    if (s->got_len) {
        s->got = malloc(s->got_len);
        if (s->got == NULL)
            return OL_AGENT_ENOMEM;
        memcpy(s->got, got->via.bin.ptr, s->got_len);
    }
    s->n_dups = 0;
    for (uint32_t i = 0; i < dups->via.array.size; i++)
        if (!ol_mp_uint(&dups->via.array.ptr[i], &s->dups[s->n_dups++]))
            return OL_AGENT_EMALFORMED;
    return 0;
}

static int steplog_restore(void *self, struct ol_agent *a, const void *state,
                           size_t len)
{
    return tp_restore(host, a, self, state, len, restore_from);
}

TP_PLUGIN("steplog", "1", steplog)
