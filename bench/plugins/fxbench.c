/*
 * fxbench - the effects benchmark's agent, kind "fxbench".
 *
 * A message {"run": N} (1..FX_RUN_MAX) starts a run of N cycles; the
 * agent times each cycle itself with CLOCK_MONOTONIC (one clock for its
 * host process and its work-pool threads) and keeps the samples in its
 * instance, not in its state, so the checkpoints it measures stay small.
 * When the run ends, the step that takes the last sample puts them all
 * in its state, where `outlast show NAME --json` (the benchmark's
 * "show") finds them.  A message that comes while a run is going is
 * ignored.
 *
 * mode "effect" (the default): a cycle is one effect's round trip.
 *   t0  a step declares one effect (kind "bench.noop", payload {n: id});
 *       the step's checkpoint records the intent;
 *   t1  perform() starts, on a work-pool thread, after that checkpoint
 *       committed: the local no-op service.  It writes {a: t1, b: t2}
 *       (monotonic ns) and returns OL_EFFECT_DONE at once;
 *   t3  the EFFECT step begins; its checkpoint records the outcome, and
 *       it arms timer 1 with delay 0;
 *   t4  the TIMER step begins.  An agent takes no step while its
 *       checkpoint is in flight, so this is after the outcome committed.
 *       The sample is [t4-t0, t1-t0, t2-t1, t3-t2, t4-t3], and this step
 *       declares the next cycle's effect (its t0 is t4).
 * mode "plain": a cycle is one plain step and its checkpoint.  Each step
 *   asks for a checkpoint and arms timer 1 with delay 0, so the next step
 *   begins once that checkpoint has committed; the sample is the time
 *   between the two steps' starts, [t-t_prev, 0, 0, 0, 0].
 *
 * Samples are microseconds.  A resumed agent (a restart) drops a run in
 * progress: its clock readings mean nothing in another process.
 *
 * Config: {mode: "effect" | "plain" (default "effect")}.
 * State:  {runs: uint, left: uint, failed: uint, retried: uint (effects
 *          that took more than one attempt), next: uint,
 *          samples: [[uint x 5]] (only once a run has ended)}.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#define FX_RUN_MAX 100000
#define FX_TIMER 1
#define FX_KIND "bench.noop"
#define FX_COLS 5

static const struct ol_host *host;

enum { PH_IDLE, PH_OUTCOME, PH_COMMIT };

struct fxbench {
    bool plain;
    int phase;
    uint64_t runs, left, failed, retried, next;
    uint64_t t0, t1, t2, t3; /* this cycle's readings, ns */
    uint32_t (*smp)[FX_COLS];
    uint32_t n, cap;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Microseconds from a to b (0 when b is before a). */
static uint32_t us(uint64_t a, uint64_t b)
{
    uint64_t d = b > a ? (b - a) / 1000 : 0;

    return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

static int fx_open(struct ol_agent *a, const void *config, size_t len,
                   void **self)
{
    struct fxbench *s;
    msgpack_unpacked u;
    const msgpack_object *m;
    bool ok = true;

    if (ol_mp_unpack(&u, config, len) != 0) {
        host->error(a, "config: not one msgpack object");
        return OL_AGENT_EINVAL;
    }
    m = ol_mp_get(&u.data, "mode");
    if (m != NULL && !ol_mp_str_eq(m, "effect") && !ol_mp_str_eq(m, "plain"))
        ok = false;
    s = ok ? calloc(1, sizeof *s) : NULL;
    if (s != NULL) {
        s->plain = m != NULL && ol_mp_str_eq(m, "plain");
        s->next = 1;
    }
    msgpack_unpacked_destroy(&u);
    if (!ok) {
        host->error(a, "config: 'mode' must be \"effect\" or \"plain\"");
        return OL_AGENT_EINVAL;
    }
    if (s == NULL)
        return OL_AGENT_ENOMEM;
    *self = s;
    return 0;
}

static int fx_restore(void *self, struct ol_agent *a, const void *state,
                      size_t len)
{
    struct fxbench *s = self;
    msgpack_unpacked u;
    bool ok;

    if (ol_mp_unpack(&u, state, len) != 0)
        return OL_AGENT_EMALFORMED;
    ok = ol_mp_uint(ol_mp_get(&u.data, "runs"), &s->runs) &&
         ol_mp_uint(ol_mp_get(&u.data, "failed"), &s->failed) &&
         ol_mp_uint(ol_mp_get(&u.data, "retried"), &s->retried) &&
         ol_mp_uint(ol_mp_get(&u.data, "next"), &s->next);
    msgpack_unpacked_destroy(&u);
    if (!ok) {
        host->error(a, "state: want {runs, left, failed, retried, next}");
        return OL_AGENT_EMALFORMED;
    }
    /* A run in progress is lost (see above). */
    s->left = 0;
    s->phase = PH_IDLE;
    return 0;
}

/* The start of a cycle, at time `t`. */
static int begin(struct fxbench *s, struct ol_agent *a, uint64_t t)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int rv;

    s->t0 = t;
    if (s->plain) {
        s->phase = PH_COMMIT;
        rv = host->checkpoint(a);
        return rv ? rv : host->timer_after(a, FX_TIMER, 0);
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    ol_mp_pack_str(&pk, "n");
    msgpack_pack_uint64(&pk, s->next);
    rv = host->effect(a, s->next, FX_KIND, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (rv != 0) {
        host->log(a, OL_AGENT_LOG_ERROR, "effect %" PRIu64 ": %d", s->next,
                  rv);
        return rv;
    }
    s->next++;
    s->phase = PH_OUTCOME;
    return 0;
}

/* {"run": N}: a new run of N cycles. */
static int on_message(struct fxbench *s, struct ol_agent *a,
                      const struct ol_event *ev, uint64_t t)
{
    msgpack_unpacked u;
    uint64_t n = 0;
    bool ok;

    if (ol_mp_unpack(&u, ev->data, ev->len) != 0)
        return 0;
    ok = ol_mp_uint(ol_mp_get(&u.data, "run"), &n);
    msgpack_unpacked_destroy(&u);
    if (!ok || n == 0 || n > FX_RUN_MAX || s->phase != PH_IDLE) {
        host->log(a, OL_AGENT_LOG_WARN, "ignored a message: want "
                  "{run: 1..%d} while no run is going", FX_RUN_MAX);
        return 0;
    }
    if (n > s->cap) {
        uint32_t (*p)[FX_COLS] = realloc(s->smp, n * sizeof *p);

        if (p == NULL)
            return OL_AGENT_ENOMEM;
        s->smp = p;
        s->cap = (uint32_t)n;
    }
    s->runs++;
    s->left = n;
    s->n = 0;
    return begin(s, a, t);
}

/* The outcome of this cycle's effect: perform()'s readings. */
static int on_effect(struct fxbench *s, struct ol_agent *a,
                     const struct ol_event *ev, uint64_t t)
{
    msgpack_unpacked u;

    if (s->phase != PH_OUTCOME || ev->effect_id + 1 != s->next)
        return 0;
    s->t1 = s->t2 = 0;
    if (ev->effect_attempts > 1)
        s->retried++;
    if (ev->effect_status != OL_EFFECT_DONE) {
        s->failed++;
        host->log(a, OL_AGENT_LOG_WARN, "effect %" PRIu64 " failed: %s",
                  ev->effect_id, ev->reason ? ev->reason : "(perform)");
    } else if (ol_mp_unpack(&u, ev->data, ev->len) == 0) {
        ol_mp_uint(ol_mp_get(&u.data, "a"), &s->t1);
        ol_mp_uint(ol_mp_get(&u.data, "b"), &s->t2);
        msgpack_unpacked_destroy(&u);
    }
    s->t3 = t;
    s->phase = PH_COMMIT;
    return host->timer_after(a, FX_TIMER, 0);
}

/* The step after the cycle's last checkpoint committed: the sample. */
static int on_timer(struct fxbench *s, struct ol_agent *a, uint64_t t)
{
    uint32_t *r;

    if (s->phase != PH_COMMIT || s->n >= s->cap)
        return 0;
    r = s->smp[s->n++];
    r[0] = us(s->t0, t);
    if (s->plain) {
        r[1] = r[2] = r[3] = r[4] = 0;
    } else {
        r[1] = us(s->t0, s->t1);
        r[2] = us(s->t1, s->t2);
        r[3] = us(s->t2, s->t3);
        r[4] = us(s->t3, t);
    }
    if (--s->left > 0)
        return begin(s, a, t);
    s->phase = PH_IDLE;
    return 0;
}

static int fx_handle(void *self, struct ol_agent *a, const struct ol_event *ev)
{
    struct fxbench *s = self;
    uint64_t t = mono_ns();

    switch (ev->type) {
    case OL_EVENT_MESSAGE:
        return on_message(s, a, ev, t);
    case OL_EVENT_EFFECT:
        return OL_EVENT_HAS(ev, effect_attempts) ? on_effect(s, a, ev, t) : 0;
    case OL_EVENT_TIMER:
        return ev->timer_id == FX_TIMER ? on_timer(s, a, t) : 0;
    default:
        return 0;
    }
}

static int fx_save(void *self, struct ol_agent *a, const struct ol_sink *out)
{
    const struct fxbench *s = self;
    bool ended = s->phase == PH_IDLE && s->n > 0;
    msgpack_packer pk;
    int rv;

    (void)a;
    msgpack_packer_init(&pk, out->data, out->write);
    msgpack_pack_map(&pk, ended ? 6 : 5);
    ol_mp_pack_str(&pk, "runs");
    msgpack_pack_uint64(&pk, s->runs);
    ol_mp_pack_str(&pk, "left");
    msgpack_pack_uint64(&pk, s->left);
    ol_mp_pack_str(&pk, "failed");
    msgpack_pack_uint64(&pk, s->failed);
    ol_mp_pack_str(&pk, "retried");
    msgpack_pack_uint64(&pk, s->retried);
    ol_mp_pack_str(&pk, "next");
    if (msgpack_pack_uint64(&pk, s->next) != 0)
        return OL_AGENT_ETOOBIG;
    if (!ended)
        return 0;
    ol_mp_pack_str(&pk, "samples");
    rv = msgpack_pack_array(&pk, s->n);
    for (uint32_t i = 0; rv == 0 && i < s->n; i++) {
        rv = msgpack_pack_array(&pk, FX_COLS);
        for (int c = 0; rv == 0 && c < FX_COLS; c++)
            rv = msgpack_pack_uint32(&pk, s->smp[i][c]);
    }
    return rv == 0 ? 0 : OL_AGENT_ETOOBIG;
}

static void fx_close(void *self)
{
    struct fxbench *s = self;

    if (s == NULL)
        return;
    free(s->smp);
    free(s);
}

/* The local no-op service: answer at once with the clock readings. */
static int fx_perform(const struct ol_effect *e, const struct ol_sink *res)
{
    uint64_t t1 = mono_ns();
    msgpack_packer pk;

    (void)e;
    msgpack_packer_init(&pk, res->data, res->write);
    msgpack_pack_map(&pk, 2);
    ol_mp_pack_str(&pk, "a");
    msgpack_pack_uint64(&pk, t1);
    ol_mp_pack_str(&pk, "b");
    msgpack_pack_uint64(&pk, mono_ns());
    return OL_EFFECT_DONE;
}

static const struct ol_agent_vtable vtable = {
    .abi = OL_AGENT_ABI,
    .size = sizeof(struct ol_agent_vtable),
    .kind = "fxbench",
    .version = "1.0.0",
    .open = fx_open,
    .restore = fx_restore,
    .handle = fx_handle,
    .save = fx_save,
    .close = fx_close,
    .perform = fx_perform,
};

OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *h,
                                   const struct ol_agent_vtable **out)
{
    if (h == NULL || h->abi != OL_AGENT_ABI || !OL_HOST_HAS(h, effect))
        return OL_AGENT_EINVAL;
    host = h;
    *out = &vtable;
    return 0;
}
