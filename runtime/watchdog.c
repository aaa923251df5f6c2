/*
 * The watchdog thread (see watchdog.h).  It polls ten times a second; the
 * only things it touches are atomics, the mark page and, on its way out,
 * write(2) and _exit(2), all of which are safe while the loop thread is
 * stuck anywhere.
 */
#include "watchdog.h"
#include "hostapi.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"

#define POLL_MS 100

struct ol__watchdog {
    pthread_t tid;
    struct ol__mark *mark;
    uint32_t stop_ms;
    int64_t stop_at;  /* monotonic ms a stop was asked for; 0: none */
    int quit;
};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *msg)
{
    (void)!write(2, msg, strlen(msg));
}

/* Put a step that ran too long on record for the next start. */
static void record(struct ol__mark *m, const struct ol__mark_slot *s,
                   const char *then)
{
    int i;

    for (i = 0; i < OL_MARK_REPORTS && m->reports[i].used; i++)
        ;
    if (i < OL_MARK_REPORTS) {
        struct ol__mark_report *r = &m->reports[i];

        memset(r, 0, sizeof *r);
        snprintf(r->name, sizeof r->name, "%s", s->name);
        r->epoch = s->epoch;
        r->req = ((uint64_t)mono_ms() << 16) ^ (uint64_t)getpid() ^
                 ((uint64_t)i << 60) ^ 0x5a5a5a5a5a5aull;
        if (s->phase == OL_MARK_HANDLE)
            snprintf(r->reason, sizeof r->reason,
                     "ran %u ms in handle() of a %s event; %s",
                     s->deadline_ms, ol__event_name((int)s->event), then);
        else
            snprintf(r->reason, sizeof r->reason, "ran %u ms in %s; %s",
                     s->deadline_ms, ol__mark_phase_name(s->phase), then);
        __atomic_store_n(&r->used, 1, __ATOMIC_RELEASE);
    }
    /* The slot's step is on record now; the restart must not count it
     * twice. */
    m->crash_sig = -1;
}

static void overran(struct ol__mark *m, const struct ol__mark_slot *s)
{
    char line[400];

    record(m, s, "past its step deadline, the node was ended");
    snprintf(line, sizeof line,
             "outlastd: agent '%s' ran past its step deadline (%u ms) in "
             "plugin code inside the node; exiting so it can be counted "
             "and the node restarted\n",
             s->name, s->deadline_ms);
    say(line);
    _exit(OL_WATCHDOG_EXIT);
}

static void *run(void *arg)
{
    struct ol__watchdog *w = arg;

    while (!__atomic_load_n(&w->quit, __ATOMIC_ACQUIRE)) {
        struct timespec ts = {0, POLL_MS * 1000000L};
        int64_t now = mono_ms(), stop = __atomic_load_n(&w->stop_at,
                                                        __ATOMIC_ACQUIRE);
        struct ol__mark_slot s;

        if (stop && now - stop > (int64_t)w->stop_ms) {
            if (w->mark && ol__mark_read(&w->mark->main, &s) == 0 &&
                s.phase != OL_MARK_IDLE && s.name[0]) {
                /* Stuck in plugin code: that agent is on record for it. */
                s.deadline_ms = (uint32_t)(now - s.started_ms);
                record(w->mark, &s, "the node had to stop");
            }
            say("outlastd: still running long after the stop signal; "
                "exiting now\n");
            _exit(1);
        }
        if (w->mark && ol__mark_read(&w->mark->main, &s) == 0 &&
            s.phase != OL_MARK_IDLE && s.deadline_ms &&
            now - s.started_ms > (int64_t)s.deadline_ms)
            overran(w->mark, &s);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int ol__watchdog_start(struct ol__mark *mark, uint32_t stop_ms,
                       struct ol__watchdog **out)
{
    struct ol__watchdog *w = calloc(1, sizeof *w);

    if (w == NULL)
        return OL_ENOMEM;
    w->mark = mark;
    w->stop_ms = stop_ms;
    if (pthread_create(&w->tid, NULL, run, w) != 0) {
        free(w);
        return OL_EIO;
    }
    *out = w;
    return 0;
}

void ol__watchdog_stopping(struct ol__watchdog *w)
{
    int64_t zero = 0;

    if (w)
        __atomic_compare_exchange_n(&w->stop_at, &zero, mono_ms(), 0,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

void ol__watchdog_destroy(struct ol__watchdog *w)
{
    if (w == NULL)
        return;
    __atomic_store_n(&w->quit, 1, __ATOMIC_RELEASE);
    pthread_join(w->tid, NULL);
    free(w);
}
