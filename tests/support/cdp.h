/*
 * A real browser for the integration tests: Debian's headless Chromium,
 * driven over the Chrome DevTools Protocol on a pipe
 * (--remote-debugging-pipe: JSON messages separated by NUL bytes on file
 * descriptors 3 and 4), so no WebSocket and no port.  A fresh profile
 * directory each time; nothing is fetched from the network.
 */
#ifndef OL_TEST_CDP_H
#define OL_TEST_CDP_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

struct cdp {
    pid_t pid;
    int wfd, rfd;      /* to the browser, from it */
    char *buf;         /* bytes read and not yet split into messages */
    size_t len, cap;
    int next_id;
    char session[128]; /* the attached page's session */
    char profile[128]; /* --user-data-dir, removed by cdp_close */
    char log[256];     /* the browser's stderr */
};

/* The browser's path, or NULL when none is installed. */
const char *cdp_browser(void);

/* Start the browser; 0, or -1 with why (cap bytes) set. */
int cdp_start(struct cdp *c, const char *log_path, char *why, size_t cap);

/* Open `url` in a new page of width x height and attach to it. */
int cdp_open(struct cdp *c, const char *url, int width, int height);

/* Call `method` (on the page when `on_page`) with `params` (stolen; NULL
 * for none); the result object (new reference), or NULL on error or after
 * timeout_ms. */
json_t *cdp_call(struct cdp *c, const char *method, json_t *params,
                 int on_page, int timeout_ms);

/* Evaluate a JavaScript expression that yields a string; malloc'd result
 * or NULL. */
char *cdp_eval(struct cdp *c, const char *expr, int timeout_ms);

/* Save a PNG of the page; 0 or -1. */
int cdp_screenshot(struct cdp *c, const char *path);

/* Close the browser (SIGKILL after a grace period) and remove the
 * profile.  Safe to call twice. */
void cdp_close(struct cdp *c);

#endif
