/*
 * outlast/agent_test.h - a fake host for unit-testing an agent plugin
 * without a daemon.
 *
 * The fake host hands the plugin a struct ol_host of its own, delivers the
 * events a test asks for, and records what the plugin did: messages sent,
 * timers armed, lines logged, work handed over, and the state save() wrote
 * after every step.  Like the real host it checks that each saved state is
 * exactly one msgpack object within OL_AGENT_STATE_MAX, refuses sends and
 * timers outside handle(), and checks sent bytes.  Nothing is committed or
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

#include <msgpack.h>
#include <outlast/agent.h>
#include <outlast/agent_util.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OL_TEST_LOG_MAX 256  /* bytes kept of one log line */
#define OL_TEST_WORK_MAX 256 /* work items waiting at once */

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
    rv = t->vt->handle(t->self, (struct ol_agent *)(void *)t, ev);
    t->in_handle = 0;
    if (rv != 0) {
        /* The step records nothing: its sends would never leave. */
        while (t->step_sends > 0) {
            free(t->sends[--t->nsends].data);
            t->step_sends--;
        }
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

/*
 * What a restart does: close() the instance, open() it again with the
 * same config, restore() the last saved state, and deliver RESUME with
 * the epoch bumped.  Armed timers survive (they are in the checkpoint);
 * work waiting is dropped, as in-flight work is.  If restore() fails, the
 * instance stays open and ol_test_close() closes it, as the real host
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
