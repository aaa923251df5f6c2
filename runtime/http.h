/*
 * The node's HTTP endpoint ([http] in the config), served with
 * libmicrohttpd on threads of its own:
 *
 *   GET /              the status page (HTML, with /status.js and
 *                      /status.css; no data in them, no external assets)
 *   GET /metrics       Prometheus text format 0.0.4
 *   GET /api/status    the page's data as JSON (see status_json.c)
 *   GET /api/logs?agent=NAME[&after=SEQ][&limit=N]
 *                      an agent's log lines as JSON, from whichever node
 *                      hosts it (as `outlast logs`)
 *   GET /healthz       "ok" once the node's loop answers (no data)
 *
 * Read-only: any other method gets 405.  When a token is configured,
 * /metrics and /api/ need "Authorization: Bearer TOKEN" (401 otherwise);
 * the page and /healthz carry no data and need none.  Every answer has
 * Cache-Control: no-store and X-Content-Type-Options: nosniff; the page
 * has a Content-Security-Policy that allows only its own origin.
 *
 * Threads: node state belongs to the loop thread.  A request thread asks
 * the loop for what it needs through a uv_async_t and waits for the answer
 * (at most OL_HTTP_WAIT_MS, then 503); the loop only copies counters (see
 * obs.h).  Database reads run on the request thread with a read-only
 * connection of the endpoint's own.  /metrics and /api/status come from one
 * observation that is built at most once per OL_HTTP_CACHE_MS, however
 * many clients ask: an answer is at most that old.
 */
#ifndef OL_HTTP_H
#define OL_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define OL_HTTP_WAIT_MS 5000
#define OL_HTTP_CONN_MAX 32     /* connections at once */
#define OL_HTTP_PER_IP_MAX 16
#define OL_HTTP_ROWS_MAX 500    /* agents listed on the page */
#define OL_HTTP_CACHE_MS 1000   /* /metrics and /api/status are built at
                                   most once per this interval */

struct ol__node;
struct ol__http;

struct ol__http_config {
    const char *listen;      /* "host:port", "[v6]:port"; port 0 picks one */
    const char *token_file;  /* NULL or "": no token */
    const char *db_path;     /* the node's database, opened read-only */
};

/*
 * Bind, read the token (a file of mode 0600 or stricter, at least 16
 * characters; surrounding whitespace is ignored) and start serving.
 * Returns 0, OL_EIO (cannot bind, with the reason), OL_EUNAUTH (the token
 * file is readable by others, or empty or short) or OL_ENOMEM, with errmsg
 * (OL_ERRMSG_SIZE) set; nothing is left running on failure.
 */
int ol__http_start(uv_loop_t *loop, struct ol__node *node,
                   const struct ol__http_config *cfg, struct ol__http **out,
                   char *errmsg);

/* The bound address, "host:port". */
void ol__http_address(const struct ol__http *h, char *out, size_t cap);

/* On the loop thread: requests answered, and the jobs the loop did for
 * them with the CPU time they took it (what serving costs the loop). */
void ol__http_counters(const struct ol__http *h, uint64_t *requests,
                       uint64_t *jobs, uint64_t *loop_us);

/* Stop serving (waits for request threads to finish; a waiting request
 * gets 503), then close the loop handle; `cb` fires once everything is
 * freed.  NULL-safe (then `cb` fires at once). */
void ol__http_close(struct ol__http *h, void (*cb)(void *data), void *data);

/* The embedded page assets (page_assets.c, generated from runtime/page/). */
struct ol__asset {
    const char *path;
    const char *type;
    const unsigned char *data;
    size_t len;
};
extern const struct ol__asset ol__assets[];
extern const size_t ol__n_assets;

#endif
