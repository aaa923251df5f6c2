/*
 * Internals shared by http.c (the server: sockets, tokens, routes) and
 * http_loop.c (the hand-off to the loop and the cached observation).
 */
#ifndef OL_HTTP_INT_H
#define OL_HTTP_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <sodium.h>
#include <sqlite3.h>

#include "base/err.h"
#include "http.h"
#include "obs.h"

enum job_kind {
    JOB_OBS = 1,
    JOB_LOGS = 2,
};

struct job {
    struct job *next;
    struct ol__http *h;
    int kind;
    int refs; /* request thread + loop; under h->mu */
    int done;
    /* JOB_OBS: in rows (a copy: the loop may read them after the request
     * thread gave up), out obs */
    struct ol__obs_row *rows;
    uint32_t n_rows;
    struct ol__obs obs;
    int rv;
    /* JOB_LOGS */
    char name[OL_NAME_MAX + 1];
    uint64_t after;
    uint32_t limit;
    int status;
    char errmsg[OL_ERRMSG_SIZE];
    void *mp; /* malloc'd copy of the answer */
    size_t mp_len;
};

struct ol__http {
    uv_loop_t *loop;
    struct ol__node *node;
    struct MHD_Daemon *mhd;
    uv_async_t async;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *queue;
    int closing;
    int has_token;
    uint8_t token_hash[crypto_generichash_BYTES];
    char addr[64];
    char db_path[PATH_MAX];
    pthread_mutex_t db_mu;
    sqlite3 *db;
    uint64_t loop_us;          /* loop CPU time spent on jobs */
    uint64_t jobs;             /* jobs the loop answered (loop thread) */
    _Atomic uint64_t requests; /* requests answered (any thread) */
    struct {                   /* the last answers, under mu */
        uint64_t at_us;        /* when built; 0: never */
        int building;
        char *metrics, *status;
        size_t metrics_len, status_len;
    } snap;
    void (*close_cb)(void *data);
    void *close_data;
};

/* The loop's side: answer queued jobs (the uv_async_t callback). */
void ol__http_async_cb(uv_async_t *a);

/* On a request thread: hand `j` to the loop and wait.  Returns 1 when the
 * loop answered; 0 on timeout or shutdown.  Either way `j` must then be
 * released with ol__http_job_release(). */
int ol__http_job_run(struct ol__http *h, struct job *j);
void ol__http_job_release(struct ol__http *h, struct job *j);
/* The loop is done with `j` (any thread). */
void ol__http_job_finish(struct job *j);

/*
 * A copy of the cached answer (`metrics` text or the status JSON),
 * malloc'd, built anew when older than OL_HTTP_CACHE_MS; NULL when the
 * node did not answer in time.
 */
char *ol__http_snapshot(struct ol__http *h, int want_metrics, size_t *len);

#endif
