/*
 * outlast/agent_test.h - a fake host for unit-testing an agent plugin
 * without a daemon.
 *
 * The fake host hands the plugin a struct ol_host of its own, delivers the
 * events a test asks for, and records what the plugin did: messages sent,
 * timers armed, lines logged, work handed over, effects declared, and the
 * state save() wrote after every step.  Like the real host it checks that
 * each saved state is exactly one msgpack object within
 * OL_AGENT_STATE_MAX, refuses sends, timers and effects outside handle(),
 * and checks sent bytes and effect payloads.  Effects are performed only
 * when a test says so (ol_test_perform()).  Nothing is committed or
 * delivered for real: a test reads the records and decides what happens
 * next.
 *
 * It is header-only (static functions; include it in one test file) and
 * needs only agent.h, agent_util.h and msgpack-c, plus -ldl for
 * ol_test_load().  Load the plugin one of two ways:
 *
 *   - link the plugin's .c into the test and pass its entry point:
 *         ol_test_init(&t, ol_agent_entry);
 *     (simplest: one compile line, and a debugger sees everything);
 *   - or dlopen() the built shared object, as outlastd does:
 *         ol_test_load(&t, "./myagent.so");
 *
 * A test, in full:
 *
 *     struct ol_test t;
 *     ol_test_init(&t, ol_agent_entry);
 *     ol_test_open(&t, "a1", NULL, 0);        // empty config
 *     ol_test_start(&t);
 *     ol_test_advance(&t, 5000);              // fires due timers
 *     ol_test_message(&t, "@cli", msg, len);
 *     ol_test_perform(&t, 0, 0, &status);    // effect 0: perform, EFFECT
 *     ... inspect t.sends[i], t.timers[i], t.logs[i], t.state ...
 *     ol_test_reopen(&t);                     // close, open, restore, RESUME
 *     ol_test_close(&t);
 *
 * Functions that run plugin code return what the plugin returned (0 or
 * its negative code), or the fake host's own OL_AGENT_E* code when a
 * check failed; t->errmsg then says what.  Any negative return leaves the
 * instance as the real host would before quarantine: still open, so
 * ol_test_close() frees it.
 *
 * Extending it.  A new event type needs no change here: fill a struct
 * ol_event and pass it to ol_test_event(); a wrapper like ol_test_timer()
 * is a convenience.  A new host service is a function next to the others
 * below and a member in ol_test_host; what it records goes in struct
 * ol_test.
 */
#ifndef OUTLAST_AGENT_TEST_H
#define OUTLAST_AGENT_TEST_H

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OL_TEST_LOG_MAX 256  /* bytes kept of one log line */
#define OL_TEST_WORK_MAX 256 /* work items waiting at once */
#define OL_TEST_EFFECT_MS 10000 /* perform()'s deadline, ms from now */

typedef int (*ol_test_entry_fn)(const struct ol_host *host,
                                const struct ol_agent_vtable **out);

/* A message the plugin sent.  `data` is a copy, owned by the fake host. */
struct ol_test_send {
    char to[OL_AGENT_NAME_MAX + 1];
    char *data;
    size_t len;
};

struct ol_test_timer {
    uint64_t id;
    int64_t due_ms;
};

struct ol_test_log {
    int level;
    char line[OL_TEST_LOG_MAX];
};

struct ol_test_work {
    uint64_t id;
    ol_work_fn fn;
    void *arg;
};

/* An effect the plugin declared, in declaration order.  The key is
 * derived from the agent's name and the effect's index, so it is the same
 * in every run of a test and after ol_test_reopen(). */
struct ol_test_effect {
    uint64_t id;
    char kind[OL_AGENT_KIND_MAX + 1];
    char key[OL_AGENT_KEY_LEN + 1];
    char *payload; /* a copy, owned by the fake host */
    size_t len;
    int status;        /* of its last EFFECT event; -1 before one */
    uint32_t attempts; /* perform() and reconcile() calls */
    char *result;      /* what the last of them wrote (NULL: nothing) */
    size_t result_len;
};

/* One fake host running one agent.  Read its members freely; change only
 * now_ms, node and epoch (they go into the next event). */
struct ol_test {
    const struct ol_agent_vtable *vt;
    void *dl;      /* from ol_test_load(), or NULL */
    void *self;    /* the instance open() made */
    int opened;
    char name[OL_AGENT_NAME_MAX + 1];
    char *config;  /* a copy of the config given to ol_test_open() */
    size_t config_len;

    int64_t now_ms;   /* the clock now_ms() reads; starts at 1e12 */
    const char *node; /* ol_event.node; "test-node" */
    uint64_t epoch;   /* ol_event.epoch; starts at 1 */
    int in_handle;    /* sends, timers and work are allowed */

    struct ol_test_timer timers[OL_AGENT_TIMERS_MAX]; /* armed now */
    size_t ntimers;
    struct ol_test_send *sends; /* every send since init, in order */
    size_t nsends;
    size_t step_sends;
    struct ol_test_log *logs;   /* every log line since init */
    size_t nlogs;
    struct ol_test_work work[OL_TEST_WORK_MAX]; /* waiting, oldest first */
    size_t nwork;
    unsigned checkpoints;       /* checkpoint() calls */

    char *state;      /* what the last save() wrote; NULL before one */
    size_t state_len;
    char error[OL_AGENT_ERROR_MAX + 1]; /* the plugin's ol_host.error */
    char errmsg[256]; /* why the fake host failed a call */
    struct ol_test_effect *effects; /* every effect since init */
    size_t neffects;
    size_t step_effects;
};

/* ---- the host services ------------------------------------------------ */

static inline struct ol_test *ol_test__of(struct ol_agent *a)
{
    return (struct ol_test *)(void *)a;
}

static inline void *ol_test__grow(void *p, size_t n, size_t size)
{
    /* Grows an array that holds n elements to hold n + 1, in steps of
     * powers of two. */
    if (n == 0 || (n & (n - 1)) == 0) {
        p = realloc(p, (n ? 2 * n : 8) * size);
        if (p == NULL) {
            fprintf(stderr, "agent_test: out of memory\n");
            abort();
        }
    }
    return p;
}

static inline void ol_test__log(struct ol_agent *a, int level,
                                const char *fmt, ...)
{
    struct ol_test *t = ol_test__of(a);
    struct ol_test_log *l;
    va_list ap;

    t->logs = (struct ol_test_log *)ol_test__grow(t->logs, t->nlogs,
                                                  sizeof(*t->logs));
    l = &t->logs[t->nlogs++];
    l->level = level;
    va_start(ap, fmt);
    vsnprintf(l->line, sizeof(l->line), fmt ? fmt : "(null)", ap);
    va_end(ap);
    if (getenv("OL_TEST_VERBOSE") != NULL)
        fprintf(stderr, "[%s] %d %s\n", t->name, level, l->line);
}

static inline const char *ol_test__name(struct ol_agent *a)
{
    return ol_test__of(a)->name;
}

static inline int64_t ol_test__now_ms(struct ol_agent *a)
{
    return ol_test__of(a)->now_ms;
}

static inline int ol_test__timer_at(struct ol_agent *a, uint64_t id,
                                    int64_t ms)
{
    struct ol_test *t = ol_test__of(a);

    if (!t->in_handle)
        return OL_AGENT_ESTATE;
    for (size_t i = 0; i < t->ntimers; i++) {
        if (t->timers[i].id == id) {
            t->timers[i].due_ms = ms;
            return 0;
        }
    }
    if (t->ntimers == OL_AGENT_TIMERS_MAX)
        return OL_AGENT_ETOOBIG;
    t->timers[t->ntimers].id = id;
    t->timers[t->ntimers].due_ms = ms;
    t->ntimers++;
    return 0;
}

static inline int ol_test__timer_after(struct ol_agent *a, uint64_t id,
                                       uint64_t delay_ms)
{
    return ol_test__timer_at(a, id, ol_test__of(a)->now_ms +
                                        (int64_t)delay_ms);
}

static inline int ol_test__timer_cancel(struct ol_agent *a, uint64_t id)
{
    struct ol_test *t = ol_test__of(a);

    for (size_t i = 0; i < t->ntimers; i++) {
        if (t->timers[i].id == id) {
            memmove(&t->timers[i], &t->timers[i + 1],
                    (t->ntimers - i - 1) * sizeof(t->timers[0]));
            t->ntimers--;
            return 0;
        }
    }
    return OL_AGENT_ENOTFOUND;
}

static inline int ol_test__send(struct ol_agent *a, const char *to,
                                const void *msg, size_t len)
{
    struct ol_test *t = ol_test__of(a);
    struct ol_test_send *s;
    msgpack_unpacked u;

    if (!t->in_handle)
        return OL_AGENT_ESTATE;
    if (to == NULL || to[0] == '\0' || strlen(to) > OL_AGENT_NAME_MAX)
        return OL_AGENT_EINVAL;
    if (len > OL_AGENT_MSG_MAX || t->step_sends == OL_AGENT_OUTBOX_MAX)
        return OL_AGENT_ETOOBIG;
    if (ol_mp_unpack(&u, msg, len) != 0)
        return OL_AGENT_EMALFORMED;
    msgpack_unpacked_destroy(&u);
    t->sends = (struct ol_test_send *)ol_test__grow(t->sends, t->nsends,
                                                    sizeof(*t->sends));
    s = &t->sends[t->nsends];
    s->data = (char *)malloc(len);
    if (s->data == NULL)
        return OL_AGENT_ENOMEM;
    memcpy(s->data, msg, len);
    s->len = len;
    strcpy(s->to, to);
    t->nsends++;
    t->step_sends++;
    return 0;
}

static inline int ol_test__checkpoint(struct ol_agent *a)
{
    struct ol_test *t = ol_test__of(a);

    if (!t->in_handle)
        return OL_AGENT_ESTATE;
    t->checkpoints++;
    return 0;
}

static inline int ol_test__work(struct ol_agent *a, uint64_t id, ol_work_fn fn,
                                void *arg)
{
    struct ol_test *t = ol_test__of(a);

    if (fn == NULL)
        return OL_AGENT_EINVAL;
    if (!t->in_handle)
        return OL_AGENT_ESTATE;
    if (t->nwork == OL_TEST_WORK_MAX)
        return OL_AGENT_ETOOBIG;
    t->work[t->nwork].id = id;
    t->work[t->nwork].fn = fn;
    t->work[t->nwork].arg = arg;
    t->nwork++;
    return 0;
}

static inline int ol_test__error(struct ol_agent *a, const char *fmt, ...)
{
    struct ol_test *t = ol_test__of(a);
    va_list ap;

    if (fmt == NULL)
        return OL_AGENT_EINVAL;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof(t->error), fmt, ap);
    va_end(ap);
    return 0;
}

/* A 32-hex-digit key from the name and index: two FNV-1a hashes. */
static inline void ol_test__key(const char *name, size_t i, char *out)
{
    uint64_t h[2] = {0xcbf29ce484222325u, 0x84222325cbf29ce4u};
    char buf[OL_AGENT_NAME_MAX + 24];

    snprintf(buf, sizeof(buf), "%s/%zu", name, i);
    for (int k = 0; k < 2; k++)
        for (const char *p = buf; *p; p++)
            h[k] = (h[k] ^ (unsigned char)*p) * 0x100000001b3u;
    snprintf(out, OL_AGENT_KEY_LEN + 1, "%016llx%016llx",
             (unsigned long long)h[0], (unsigned long long)h[1]);
}

static inline int ol_test__effect(struct ol_agent *a, uint64_t id,
                                  const char *kind, const void *payload,
                                  size_t len)
{
    struct ol_test *t = ol_test__of(a);
    struct ol_test_effect *e;
    size_t klen = kind != NULL ? strlen(kind) : 0, waiting = 0;
    msgpack_unpacked u;

    if (!t->in_handle)
        return OL_AGENT_ESTATE;
    if (!OL_VTABLE_HAS(t->vt, perform) || t->vt->perform == NULL)
        return OL_AGENT_ENOTSUP;
    if (klen == 0 || klen > OL_AGENT_KIND_MAX ||
        strspn(kind, "abcdefghijklmnopqrstuvwxyz0123456789._-") != klen)
        return OL_AGENT_EINVAL;
    for (size_t i = 0; i < t->neffects; i++)
        waiting += t->effects[i].status < 0;
    if (len > OL_AGENT_EFFECT_MAX || waiting == OL_AGENT_EFFECTS_MAX)
        return OL_AGENT_ETOOBIG;
    if (ol_mp_unpack(&u, payload, len) != 0)
        return OL_AGENT_EMALFORMED;
    msgpack_unpacked_destroy(&u);
    t->effects = (struct ol_test_effect *)ol_test__grow(
        t->effects, t->neffects, sizeof(*t->effects));
    e = &t->effects[t->neffects];
    memset(e, 0, sizeof(*e));
    if ((e->payload = (char *)malloc(len)) == NULL)
        return OL_AGENT_ENOMEM;
    memcpy(e->payload, payload, len);
    e->len = len;
    e->id = id;
    e->status = -1;
    strcpy(e->kind, kind);
    ol_test__key(t->name, t->neffects, e->key);
    t->neffects++;
    t->step_effects++;
    return 0;
}

static inline const char *ol_test__version(void)
{
    return OL_VERSION_STRING;
}

/* The fake host's table.  Static, like the real one: it outlives the
 * plugin. */
static inline const struct ol_host *ol_test_host(void)
{
    static const struct ol_host host = {
        .abi = OL_AGENT_ABI,
        .size = sizeof(struct ol_host),
        .log = ol_test__log,
        .name = ol_test__name,
        .now_ms = ol_test__now_ms,
        .timer_after = ol_test__timer_after,
        .timer_at = ol_test__timer_at,
        .timer_cancel = ol_test__timer_cancel,
        .send = ol_test__send,
        .checkpoint = ol_test__checkpoint,
        .work = ol_test__work,
        .error = ol_test__error,
        .version = ol_test__version,
        .effect = ol_test__effect,
    };
    return &host;
}

/* ---- loading and lifecycle -------------------------------------------- */

static inline int ol_test__fail(struct ol_test *t, int rv, const char *what)
{
    snprintf(t->errmsg, sizeof(t->errmsg), "%s", what);
    return rv;
}

static inline int ol_test__state_err(struct ol_test *t)
{
    return ol_test__fail(t, OL_AGENT_ESTATE,
                         t->vt == NULL ? "no plugin loaded"
                         : t->opened   ? "an instance is already open"
                                       : "no open instance");
}

/* Sets up t and calls the plugin's entry point with the fake host's
 * table.  Returns 0, the entry's error, or OL_AGENT_EINVAL when the vtable
 * it gave is NULL, of another ABI, or lacks a required function. */
static inline int ol_test_init(struct ol_test *t, ol_test_entry_fn entry)
{
    const struct ol_agent_vtable *vt = NULL;
    int rv;

    memset(t, 0, sizeof(*t));
    t->now_ms = 1000000000000;
    t->node = "test-node";
    t->epoch = 1;
    if (entry == NULL)
        return ol_test__fail(t, OL_AGENT_EINVAL, "no entry point");
    if ((rv = entry(ol_test_host(), &vt)) != 0)
        return ol_test__fail(t, rv, "ol_agent_entry() refused the host");
    if (vt == NULL || vt->abi != OL_AGENT_ABI || vt->open == NULL ||
        vt->restore == NULL || vt->handle == NULL || vt->save == NULL)
        return ol_test__fail(t, OL_AGENT_EINVAL,
                             "vtable is NULL, of another abi, or incomplete");
    t->vt = vt;
    return 0;
}

/* ol_test_init() with the entry point of the shared object at `path`,
 * dlopen()ed as outlastd does.  ol_test_close() dlclose()s it. */
static inline int ol_test_load(struct ol_test *t, const char *path)
{
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    union {
        void *p;
        ol_test_entry_fn fn;
    } entry;
    int rv;

    if (dl == NULL) {
        memset(t, 0, sizeof(*t));
        snprintf(t->errmsg, sizeof(t->errmsg), "dlopen: %s", dlerror());
        return OL_AGENT_ENOTFOUND;
    }
    entry.p = dlsym(dl, OL_AGENT_ENTRY_SYMBOL);
    rv = ol_test_init(t, entry.fn);
    t->dl = dl;
    return rv;
}

/* Calls save() into t->state and checks the bytes as the host does. */
static inline int ol_test_save(struct ol_test *t)
{
    msgpack_sbuffer sb;
    struct ol_sink sink;
    msgpack_unpacked u;
    int rv;

    if (!t->opened)
        return ol_test__state_err(t);
    msgpack_sbuffer_init(&sb);
    sink.data = &sb;
    sink.write = msgpack_sbuffer_write;
    rv = t->vt->save(t->self, (struct ol_agent *)(void *)t, &sink);
    if (rv == 0 && sb.size > OL_AGENT_STATE_MAX)
        rv = ol_test__fail(t, OL_AGENT_ETOOBIG, "save: state too big");
    else if (rv == 0 && ol_mp_unpack(&u, sb.data, sb.size) != 0)
        rv = ol_test__fail(t, OL_AGENT_EMALFORMED,
                           "save: not one msgpack object");
    else if (rv == 0)
        msgpack_unpacked_destroy(&u);
    else
        ol_test__fail(t, rv, "save() failed");
    if (rv != 0) {
        msgpack_sbuffer_destroy(&sb);
        return rv;
    }
    free(t->state);
    t->state_len = sb.size;
    t->state = msgpack_sbuffer_release(&sb);
    return 0;
}

/* Calls open() for the agent `name` with `config` (msgpack bytes; NULL
 * for an empty map).  The config is copied for ol_test_reopen().  When
 * open() fails the instance is not open and close() is never called for
 * it, as in the real host. */
static inline int ol_test_open(struct ol_test *t, const char *name,
                               const void *config, size_t len)
{
    static const char empty_map = (char)0x80;
    int rv;

    if (t->vt == NULL || t->opened)
        return ol_test__state_err(t);
    if (config == NULL) {
        config = &empty_map;
        len = 1;
    }
    if (name != t->name)
        snprintf(t->name, sizeof(t->name), "%s", name);
    if (config != t->config) {
        free(t->config);
        t->config = (char *)malloc(len);
        if (t->config == NULL)
            return OL_AGENT_ENOMEM;
        memcpy(t->config, config, len);
        t->config_len = len;
    }
    t->error[0] = '\0';
    rv = t->vt->open((struct ol_agent *)(void *)t, t->config, len, &t->self);
    if (rv != 0)
        return ol_test__fail(t, rv, "open() failed");
    t->opened = 1;
    return 0;
}

/* Calls restore() with state bytes (t->state to restore what was saved). */
static inline int ol_test_restore(struct ol_test *t, const void *state,
                                  size_t len)
{
    int rv;

    if (!t->opened)
        return ol_test__state_err(t);
    t->error[0] = '\0';
    rv = t->vt->restore(t->self, (struct ol_agent *)(void *)t, state, len);
    return rv != 0 ? ol_test__fail(t, rv, "restore() failed") : 0;
}

/* Calls close() if the instance is open; the records stay. */
static inline void ol_test_close_instance(struct ol_test *t)
{
    if (t->opened && t->vt->close != NULL)
        t->vt->close(t->self);
    t->opened = 0;
    t->self = NULL;
}

/* Closes the instance and frees every record; dlclose()s the plugin. */
static inline void ol_test_close(struct ol_test *t)
{
    if (t->vt != NULL)
        ol_test_close_instance(t);
    for (size_t i = 0; i < t->nsends; i++)
        free(t->sends[i].data);
    free(t->sends);
    for (size_t i = 0; i < t->neffects; i++) {
        free(t->effects[i].payload);
        free(t->effects[i].result);
    }
    free(t->effects);
    free(t->logs);
    free(t->state);
    free(t->config);
    if (t->dl != NULL)
        dlclose(t->dl);
    memset(t, 0, sizeof(*t));
}

/* ---- events ------------------------------------------------------------ */

/* Delivers one event: fills ev->size and, when zero, ev->now_ms, node and
 * epoch; calls handle(), then save().  Any event type may be passed.  When
 * handle() fails the sends of the step are taken back from t->sends (the
 * real host would never deliver them) and save() is not called. */
static inline int ol_test_event(struct ol_test *t, struct ol_event *ev)
{
    int rv;

    if (!t->opened)
        return ol_test__state_err(t);
    ev->size = sizeof(*ev);
    if (ev->now_ms == 0)
        ev->now_ms = t->now_ms;
    if (ev->node == NULL)
        ev->node = t->node;
    if (ev->epoch == 0)
        ev->epoch = t->epoch;
    t->in_handle = 1;
    t->step_sends = 0;
    t->step_effects = 0;
    rv = t->vt->handle(t->self, (struct ol_agent *)(void *)t, ev);
    t->in_handle = 0;
    if (rv != 0) {
        /* The step records nothing: its sends would never leave. */
        while (t->step_sends > 0) {
            free(t->sends[--t->nsends].data);
            t->step_sends--;
        }
        for (; t->step_effects > 0; t->step_effects--)
            free(t->effects[--t->neffects].payload);
        return ol_test__fail(t, rv, "handle() failed");
    }
    return ol_test_save(t);
}

static inline int ol_test_start(struct ol_test *t)
{
    struct ol_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = OL_EVENT_START;
    return ol_test_event(t, &ev);
}

/* A MESSAGE from `from` (an agent name, or "@cli"). */
static inline int ol_test_message(struct ol_test *t, const char *from,
                                  const void *data, size_t len)
{
    struct ol_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = OL_EVENT_MESSAGE;
    ev.from = from;
    ev.data = data;
    ev.len = len;
    return ol_test_event(t, &ev);
}

/* A CONFIG event: the operator gave the agent a new config (one msgpack
 * map), as `outlast config` does. */
static inline int ol_test_config(struct ol_test *t, const void *config,
                                 size_t len)
{
    struct ol_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = OL_EVENT_CONFIG;
    ev.from = OL_AGENT_CONFIG_SENDER;
    ev.data = config;
    ev.len = len;
    return ol_test_event(t, &ev);
}

/* A BOUNCE event: message `data` that the agent sent to `to` could not be
 * delivered, for `reason` ("no such agent", ...). */
static inline int ol_test_bounce(struct ol_test *t, const char *to,
                                 const char *reason, const void *data,
                                 size_t len)
{
    struct ol_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = OL_EVENT_BOUNCE;
    ev.from = OL_AGENT_BOUNCE_SENDER;
    ev.to = to;
    ev.reason = reason;
    ev.data = data;
    ev.len = len;
    return ol_test_event(t, &ev);
}

static inline int ol_test_stop(struct ol_test *t, int final)
{
    struct ol_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.type = OL_EVENT_STOP;
    ev.final = final;
    return ol_test_event(t, &ev);
}

/* The armed timer `id`, or NULL. */
static inline struct ol_test_timer *ol_test_timer_find(struct ol_test *t,
                                                       uint64_t id)
{
    for (size_t i = 0; i < t->ntimers; i++)
        if (t->timers[i].id == id)
            return &t->timers[i];
    return NULL;
}

/* Fires the armed timer `id` now, whatever its due time: disarms it and
 * delivers its TIMER event.  OL_AGENT_ENOTFOUND if it is not armed. */
static inline int ol_test_timer(struct ol_test *t, uint64_t id)
{
    struct ol_test_timer *tm = ol_test_timer_find(t, id);
    struct ol_event ev;

    if (tm == NULL)
        return ol_test__fail(t, OL_AGENT_ENOTFOUND, "no such timer");
    memset(&ev, 0, sizeof(ev));
    ev.type = OL_EVENT_TIMER;
    ev.timer_id = id;
    ev.due_ms = tm->due_ms;
    ol_test__timer_cancel((struct ol_agent *)(void *)t, id);
    return ol_test_event(t, &ev);
}

/* Moves the clock forward by `ms`, firing every timer that falls due on
 * the way at its due time, earliest first (a handler may arm more).  At
 * most `max` timers fire; *fired (may be NULL) says how many did.  Stops
 * at the first failing step. */
static inline int ol_test_advance_n(struct ol_test *t, int64_t ms,
                                    unsigned max, unsigned *fired)
{
    int64_t end = t->now_ms + ms;
    unsigned n = 0;
    int rv = 0;

    while (n < max && rv == 0) {
        struct ol_test_timer *first = NULL;
        for (size_t i = 0; i < t->ntimers; i++)
            if (first == NULL || t->timers[i].due_ms < first->due_ms)
                first = &t->timers[i];
        if (first == NULL || first->due_ms > end)
            break;
        if (first->due_ms > t->now_ms)
            t->now_ms = first->due_ms;
        rv = ol_test_timer(t, first->id);
        n++;
    }
    if (rv == 0 && t->now_ms < end)
        t->now_ms = end;
    if (fired != NULL)
        *fired = n;
    return rv;
}

/* ol_test_advance_n() with at most 100000 timers. */
static inline int ol_test_advance(struct ol_test *t, int64_t ms)
{
    return ol_test_advance_n(t, ms, 100000, NULL);
}

/* Runs the oldest waiting work item's fn on this thread, then delivers its
 * WORK event (with `fenced` as given).  OL_AGENT_ENOTFOUND if none waits. */
static inline int ol_test_work(struct ol_test *t, int fenced)
{
    struct ol_test_work w;
    struct ol_event ev;

    if (t->nwork == 0)
        return ol_test__fail(t, OL_AGENT_ENOTFOUND, "no work waiting");
    w = t->work[0];
    memmove(&t->work[0], &t->work[1], --t->nwork * sizeof(t->work[0]));
    if (!fenced)
        w.fn(w.arg);
    memset(&ev, 0, sizeof(ev));
    ev.type = OL_EVENT_WORK;
    ev.work_id = w.id;
    ev.work_arg = w.arg;
    ev.work_epoch = t->epoch;
    ev.fenced = fenced;
    return ol_test_event(t, &ev);
}

/* Delivers the EFFECT event of effect i (an index in t->effects) with
 * `status` (OL_EFFECT_DONE or OL_EFFECT_FAILED), `reason` (may be NULL)
 * and `result` (len bytes, copied first; may be NULL), as the runtime
 * does once the effect has its outcome.  OL_AGENT_ENOTFOUND: no effect i. */
static inline int ol_test_effect_event(struct ol_test *t, size_t i,
                                       int status, const char *reason,
                                       const void *result, size_t len)
{
    char key[OL_AGENT_KEY_LEN + 1], *copy = NULL;
    struct ol_event ev;
    int rv;

    if (i >= t->neffects)
        return ol_test__fail(t, OL_AGENT_ENOTFOUND, "no such effect");
    if (len > 0 && (copy = (char *)malloc(len)) == NULL)
        return OL_AGENT_ENOMEM;
    if (len > 0)
        memcpy(copy, result, len); /* handle() may move t->effects */
    strcpy(key, t->effects[i].key);
    t->effects[i].status = status;
    memset(&ev, 0, sizeof(ev));
    ev.type = OL_EVENT_EFFECT;
    ev.effect_id = t->effects[i].id;
    ev.effect_key = key;
    ev.effect_status = status;
    ev.effect_attempts = t->effects[i].attempts;
    ev.reason = reason;
    ev.data = copy;
    ev.len = len;
    rv = ol_test_event(t, &ev);
    free(copy);
    return rv;
}

/* Calls perform() for effect i on this thread (reconcile() instead when
 * `reconcile` is set and the plugin has one), as the runtime does once
 * the declaring step committed: under t->epoch, with a deadline
 * OL_TEST_EFFECT_MS of real wall clock ahead, in_doubt set for
 * reconcile().  Its return goes to *status and what it wrote to the
 * effect's result; no event follows.  Returns 0, OL_AGENT_ENOTFOUND (no
 * effect i), OL_AGENT_ETOOBIG (result over OL_AGENT_EFFECT_MAX) or
 * OL_AGENT_EMALFORMED (a result that is not one msgpack object). */
static inline int ol_test_effect_call(struct ol_test *t, size_t i,
                                      int reconcile, int *status)
{
    struct ol_test_effect *e = i < t->neffects ? &t->effects[i] : NULL;
    int (*fn)(const struct ol_effect *, const struct ol_sink *);
    struct ol_effect oe;
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    struct ol_sink sink = {&sb, msgpack_sbuffer_write};

    if (e == NULL)
        return ol_test__fail(t, OL_AGENT_ENOTFOUND, "no such effect");
    fn = reconcile && t->vt->reconcile != NULL ? t->vt->reconcile
                                               : t->vt->perform;
    memset(&oe, 0, sizeof(oe));
    oe.size = sizeof(oe);
    oe.agent = t->name;
    oe.node = t->node;
    oe.effect_id = e->id;
    oe.key = e->key;
    oe.kind = e->kind;
    oe.payload = e->payload;
    oe.len = e->len;
    oe.epoch = t->epoch;
    oe.deadline_ms = (int64_t)time(NULL) * 1000 + OL_TEST_EFFECT_MS;
    oe.attempt = ++e->attempts;
    oe.in_doubt = reconcile != 0;
    msgpack_sbuffer_init(&sb);
    *status = fn(&oe, &sink);
    free(e->result);
    e->result_len = sb.size;
    e->result = msgpack_sbuffer_release(&sb);
    if (e->result_len > OL_AGENT_EFFECT_MAX)
        return ol_test__fail(t, OL_AGENT_ETOOBIG, "effect result too big");
    if (e->result_len > 0 && ol_mp_unpack(&u, e->result, e->result_len) != 0)
        return ol_test__fail(t, OL_AGENT_EMALFORMED,
                             "effect result: not one msgpack object");
    if (e->result_len > 0)
        msgpack_unpacked_destroy(&u);
    return 0;
}

/* ol_test_effect_call(), then, when it says OL_EFFECT_DONE or
 * OL_EFFECT_FAILED, the EFFECT event with that outcome and result (any
 * other status than RETRY and UNKNOWN counts as RETRY: no event).
 * Returns the first failure of the two. */
static inline int ol_test_perform(struct ol_test *t, size_t i, int reconcile,
                                  int *status)
{
    int rv = ol_test_effect_call(t, i, reconcile, status);

    if (rv != 0 || (*status != OL_EFFECT_DONE && *status != OL_EFFECT_FAILED))
        return rv;
    return ol_test_effect_event(t, i, *status, NULL, t->effects[i].result,
                                t->effects[i].result_len);
}

/*
 * What a restart does: close() the instance, open() it again with the
 * same config, restore() the last saved state, and deliver RESUME with
 * the epoch bumped.  Armed timers and declared effects survive (they are
 * in the checkpoint); work waiting is dropped, as in-flight work is.  If
 * restore() fails, the instance stays open and ol_test_close() closes it,
 * as the real host
 * calls close() after a failed restore().  t->state is kept until the
 * RESUME step saves anew.
 */
static inline int ol_test_reopen(struct ol_test *t)
{
    struct ol_event ev;
    int rv;

    if (t->state == NULL)
        return ol_test__fail(t, OL_AGENT_ESTATE, "nothing saved yet");
    ol_test_close_instance(t);
    t->nwork = 0;
    rv = ol_test_open(t, t->name, t->config, t->config_len);
    if (rv == 0)
        rv = ol_test_restore(t, t->state, t->state_len);
    if (rv != 0)
        return rv;
    memset(&ev, 0, sizeof(ev));
    ev.type = OL_EVENT_RESUME;
    ev.prev_node = t->node;
    ev.epoch = ++t->epoch;
    return ol_test_event(t, &ev);
}

/* The last message sent to `to` (NULL: to anyone), or NULL. */
static inline const struct ol_test_send *
ol_test_last_send(const struct ol_test *t, const char *to)
{
    for (size_t i = t->nsends; i > 0; i--)
        if (to == NULL || strcmp(t->sends[i - 1].to, to) == 0)
            return &t->sends[i - 1];
    return NULL;
}

/* Unpacks the last saved state into u (destroy it after). */
static inline int ol_test_state(const struct ol_test *t, msgpack_unpacked *u)
{
    return ol_mp_unpack(u, t->state, t->state_len);
}

/* True when some log line contains `needle`. */
static inline int ol_test_logged(const struct ol_test *t, const char *needle)
{
    for (size_t i = 0; i < t->nlogs; i++)
        if (strstr(t->logs[i].line, needle) != NULL)
            return 1;
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif /* OUTLAST_AGENT_TEST_H */
