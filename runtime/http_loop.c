/*
 * The HTTP endpoint's hand-off to the loop (see http.h): jobs that a
 * request thread queues and the loop answers, and the cached observation
 * that /metrics and /api/status are served from.
 *
 * A request that needs the loop becomes a job: the request thread queues
 * it, wakes the loop with uv_async_send() and waits on a condition
 * variable.  The loop fills the job (copies, see obs.h; or starts a log
 * fetch that may finish later) and marks it done.  A job has two owners,
 * the request thread and the loop; whichever lets go last frees it, so a
 * request that timed out, or a server that is closing, never leaves the
 * loop writing into freed memory.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "http_int.h"
#include "node.h"
#include "logs.h"

/* ---- jobs ---- */

static void job_free(struct job *j)
{
    ol__obs_free(&j->obs);
    free(j->rows);
    free(j->mp);
    free(j);
}

/* The loop is done with `j`. */
void ol__http_job_finish(struct job *j)
{
    struct ol__http *h = j->h;
    int last;

    pthread_mutex_lock(&h->mu);
    j->done = 1;
    last = --j->refs == 0;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (last)
        job_free(j);
}

static void logs_done(void *data, int status, const char *errmsg,
                      const void *map, size_t len)
{
    struct job *j = data;

    j->status = status;
    if (status == 0) {
        j->mp = malloc(len ? len : 1);
        if (j->mp) {
            memcpy(j->mp, map, len);
            j->mp_len = len;
        } else {
            j->status = OL_ENOMEM;
            snprintf(j->errmsg, sizeof j->errmsg, "out of memory");
        }
    } else {
        snprintf(j->errmsg, sizeof j->errmsg, "%s", errmsg);
    }
    ol__http_job_finish(j);
}

/* CPU time of the calling thread: what a job costs the loop, whatever
 * else the machine is doing. */
static uint64_t thread_cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void ol__http_async_cb(uv_async_t *a)
{
    struct ol__http *h = a->data;
    struct job *list, *next, *rev = NULL;

    pthread_mutex_lock(&h->mu);
    list = h->queue;
    h->queue = NULL;
    pthread_mutex_unlock(&h->mu);
    /* The queue was pushed newest first; answer oldest first. */
    while (list) {
        next = list->next;
        list->next = rev;
        rev = list;
        list = next;
    }
    for (list = rev; list; list = next) {
        uint64_t t0 = thread_cpu_us();

        next = list->next;
        h->jobs++;
        if (list->kind == JOB_OBS) {
            list->rv = ol__obs_collect(h->node, &list->obs, list->rows,
                                       list->n_rows);
            ol__http_job_finish(list);
        } else {
            ol__logs_fetch(h->node, list->name, list->after, list->limit,
                           logs_done, list);
        }
        h->loop_us += thread_cpu_us() - t0;
    }
}

/* On a request thread: hand `j` to the loop and wait.  Returns 1 when the
 * loop answered; 0 on timeout or shutdown.  Either way `j` must then be
 * released with ol__http_job_release(). */
int ol__http_job_run(struct ol__http *h, struct job *j)
{
    struct timespec until;
    int done;

    j->h = h;
    j->refs = 2;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += OL_HTTP_WAIT_MS / 1000;
    until.tv_nsec += (long)(OL_HTTP_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->mu);
    if (h->closing) {
        j->refs = 1; /* the loop never sees it */
        pthread_mutex_unlock(&h->mu);
        return 0;
    }
    j->next = h->queue;
    h->queue = j;
    pthread_mutex_unlock(&h->mu);
    uv_async_send(&h->async);
    pthread_mutex_lock(&h->mu);
    while (!j->done && !h->closing)
        if (pthread_cond_timedwait(&h->cv, &h->mu, &until) == ETIMEDOUT)
            break;
    done = j->done;
    pthread_mutex_unlock(&h->mu);
    return done;
}

void ol__http_job_release(struct ol__http *h, struct job *j)
{
    int last;

    pthread_mutex_lock(&h->mu);
    last = --j->refs == 0;
    pthread_mutex_unlock(&h->mu);
    if (last)
        job_free(j);
}

static sqlite3 *db_get(struct ol__http *h)
{
    if (h->db == NULL) {
        if (sqlite3_open_v2(h->db_path, &h->db, SQLITE_OPEN_READONLY,
                            NULL) != SQLITE_OK) {
            sqlite3_close(h->db);
            h->db = NULL;
            return NULL;
        }
        sqlite3_busy_timeout(h->db, 1000);
    }
    return h->db;
}

/* Read the database, then ask the loop for the rest. */
static struct job *observe(struct ol__http *h, uint32_t rows_max,
                           struct ol__obs_db *d)
{
    struct job *j = calloc(1, sizeof *j);

    pthread_mutex_lock(&h->db_mu);
    ol__obs_db_read(db_get(h), h->db_path, rows_max, d);
    pthread_mutex_unlock(&h->db_mu);
    if (j == NULL)
        return NULL;
    j->kind = JOB_OBS;
    if (d->n_rows) {
        j->rows = malloc(d->n_rows * sizeof *j->rows);
        if (j->rows == NULL) {
            free(j);
            return NULL;
        }
        memcpy(j->rows, d->rows, d->n_rows * sizeof *j->rows);
        j->n_rows = d->n_rows;
    }
    if (!ol__http_job_run(h, j) || j->rv != 0) {
        ol__http_job_release(h, j);
        return NULL;
    }
    return j;
}

/* Build both answers from one observation into the cache.  0 or -1. */
static int build_snapshot(struct ol__http *h)
{
    struct ol__obs_db d;
    struct ol__buf b;
    struct job *j = observe(h, OL_HTTP_ROWS_MAX, &d);
    json_t *js;
    char *status = NULL;
    uint8_t *metrics = NULL;
    size_t mlen = 0;

    if (j == NULL) {
        ol__obs_db_free(&d);
        return -1;
    }
    ol__buf_init(&b);
    /* NUL-terminated like the status JSON: ol__http_snapshot() copies
     * either answer with its terminator. */
    if (ol__metrics_text(&j->obs, &d, &b) == 0 &&
        ol__buf_append(&b, "", 1) == 0) {
        metrics = ol__buf_steal(&b, &mlen);
        mlen--;
    }
    ol__buf_close(&b);
    js = ol__status_json(&j->obs, &d);
    if (js)
        status = json_dumps(js, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(js);
    ol__http_job_release(h, j);
    ol__obs_db_free(&d);
    if (metrics == NULL || status == NULL) {
        free(metrics);
        free(status);
        return -1;
    }
    pthread_mutex_lock(&h->mu);
    free(h->snap.metrics);
    free(h->snap.status);
    h->snap.metrics = (char *)metrics;
    h->snap.metrics_len = mlen;
    h->snap.status = status;
    h->snap.status_len = strlen(status);
    h->snap.at_us = ol__now_us();
    pthread_mutex_unlock(&h->mu);
    return 0;
}

/*
 * A copy of the cached answer (`metrics` or the status JSON), built anew
 * when it is older than OL_HTTP_CACHE_MS.  Requests that arrive while one
 * builds wait for it, so any number of scrapers and open pages cost the
 * node one observation per interval.  NULL when the node did not answer.
 */
char *ol__http_snapshot(struct ol__http *h, int want_metrics, size_t *len)
{
    uint64_t deadline = ol__now_us() + (uint64_t)OL_HTTP_WAIT_MS * 1000;
    char *out = NULL;

    pthread_mutex_lock(&h->mu);
    for (;;) {
        uint64_t now = ol__now_us();

        if (h->snap.at_us && now - h->snap.at_us <
                                 (uint64_t)OL_HTTP_CACHE_MS * 1000) {
            const char *src = want_metrics ? h->snap.metrics : h->snap.status;

            *len = want_metrics ? h->snap.metrics_len : h->snap.status_len;
            out = malloc(*len + 1);
            if (out)
                memcpy(out, src, *len + 1);
            break;
        }
        if (h->closing || now >= deadline)
            break;
        if (!h->snap.building) {
            int rv;

            h->snap.building = 1;
            pthread_mutex_unlock(&h->mu);
            rv = build_snapshot(h);
            pthread_mutex_lock(&h->mu);
            h->snap.building = 0;
            pthread_cond_broadcast(&h->cv);
            if (rv != 0)
                break;
            continue;
        }
        {
            struct timespec until;

            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&h->cv, &h->mu, &until);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return out;
}
