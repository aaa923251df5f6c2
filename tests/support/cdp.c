/*
 * The DevTools client for tests: see cdp.h.  Replies are matched by id;
 * events and other replies that arrive meanwhile are dropped.
 */
#include "cdp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *cdp_browser(void)
{
    static const char *const paths[] = {"/usr/bin/chromium",
                                        "/usr/lib/chromium/chromium", NULL};

    for (int i = 0; paths[i]; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

int cdp_start(struct cdp *c, const char *log_path, char *why, size_t cap)
{
    const char *bin = cdp_browser();
    int to_browser[2], from_browser[2];
    char udd[200];
    pid_t pid;

    memset(c, 0, sizeof *c);
    c->pid = -1;
    c->wfd = c->rfd = -1;
    if (bin == NULL) {
        snprintf(why, cap, "no chromium installed (Debian package chromium)");
        return -1;
    }
    snprintf(c->profile, sizeof c->profile, "/tmp/ol-cdp-XXXXXX");
    if (mkdtemp(c->profile) == NULL) {
        snprintf(why, cap, "mkdtemp: %s", strerror(errno));
        return -1;
    }
    snprintf(c->log, sizeof c->log, "%s", log_path);
    if (pipe2(to_browser, O_CLOEXEC) != 0 ||
        pipe2(from_browser, O_CLOEXEC) != 0) {
        snprintf(why, cap, "pipe: %s", strerror(errno));
        return -1;
    }
    snprintf(udd, sizeof udd, "--user-data-dir=%s", c->profile);
    pid = fork();
    if (pid < 0) {
        snprintf(why, cap, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int a = dup(to_browser[0]), b = dup(from_browser[1]);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (logfd >= 0) {
            dup2(logfd, 1);
            dup2(logfd, 2);
        }
        /* dup2 clears close-on-exec on 3 and 4. */
        if (a < 0 || b < 0 || dup2(a, 3) < 0 || dup2(b, 4) < 0)
            _exit(126);
        execl(bin, bin, "--headless", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--no-default-browser-check",
              "--disable-extensions", "--disable-dev-shm-usage",
              "--hide-scrollbars", "--mute-audio", udd,
              "--remote-debugging-pipe", "about:blank", (char *)NULL);
        _exit(127);
    }
    close(to_browser[0]);
    close(from_browser[1]);
    c->pid = pid;
    c->wfd = to_browser[1];
    c->rfd = from_browser[0];
    c->next_id = 1;
    return 0;
}

static int send_msg(struct cdp *c, json_t *msg)
{
    char *s = json_dumps(msg, JSON_COMPACT);
    size_t n, off = 0;
    int rv = 0;

    json_decref(msg);
    if (s == NULL)
        return -1;
    n = strlen(s) + 1; /* the NUL is the separator */
    while (off < n) {
        ssize_t w = write(c->wfd, s + off, n - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rv = -1;
            break;
        }
        off += (size_t)w;
    }
    free(s);
    return rv;
}

/* The next whole message, or NULL after the deadline. */
static json_t *next_msg(struct cdp *c, uint64_t deadline)
{
    for (;;) {
        char *nul = c->len ? memchr(c->buf, '\0', c->len) : NULL;
        struct pollfd p = {c->rfd, POLLIN, 0};
        uint64_t now;
        ssize_t n;

        if (nul) {
            size_t mlen = (size_t)(nul - c->buf);
            json_t *j = json_loadb(c->buf, mlen, 0, NULL);

            memmove(c->buf, nul + 1, c->len - mlen - 1);
            c->len -= mlen + 1;
            if (j)
                return j;
            continue;
        }
        now = now_ms();
        if (now >= deadline)
            return NULL;
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            continue;
        if (c->cap - c->len < 65536) {
            size_t cap = c->cap ? c->cap * 2 : 1 << 20;
            char *nb = realloc(c->buf, cap);

            if (nb == NULL)
                return NULL;
            c->buf = nb;
            c->cap = cap;
        }
        n = read(c->rfd, c->buf + c->len, c->cap - c->len);
        if (n <= 0)
            return NULL; /* the browser is gone */
        c->len += (size_t)n;
    }
}

json_t *cdp_call(struct cdp *c, const char *method, json_t *params,
                 int on_page, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    int id = c->next_id++;
    json_t *msg = json_object();

    json_object_set_new(msg, "id", json_integer(id));
    json_object_set_new(msg, "method", json_string(method));
    json_object_set_new(msg, "params", params ? params : json_object());
    if (on_page)
        json_object_set_new(msg, "sessionId", json_string(c->session));
    if (send_msg(c, msg) != 0)
        return NULL;
    for (;;) {
        json_t *m = next_msg(c, deadline), *res;

        if (m == NULL)
            return NULL;
        if (json_integer_value(json_object_get(m, "id")) != id) {
            json_decref(m);
            continue;
        }
        res = json_object_get(m, "result");
        if (res)
            json_incref(res);
        else {
            char *e = json_dumps(json_object_get(m, "error"), JSON_COMPACT);

            fprintf(stderr, "cdp: %s failed: %s\n", method, e ? e : "?");
            free(e);
        }
        json_decref(m);
        return res;
    }
}

int cdp_open(struct cdp *c, const char *url, int width, int height)
{
    json_t *r = cdp_call(c, "Target.createTarget",
                         json_pack("{s:s}", "url", "about:blank"),
                         0, 30000);
    const char *tid, *sid;
    char target[128];

    if (r == NULL || (tid = json_string_value(json_object_get(
                          r, "targetId"))) == NULL) {
        json_decref(r);
        return -1;
    }
    snprintf(target, sizeof target, "%s", tid);
    json_decref(r);
    r = cdp_call(c, "Target.attachToTarget",
                 json_pack("{s:s, s:b}", "targetId", target, "flatten", 1), 0,
                 30000);
    if (r == NULL ||
        (sid = json_string_value(json_object_get(r, "sessionId"))) == NULL) {
        json_decref(r);
        return -1;
    }
    snprintf(c->session, sizeof c->session, "%s", sid);
    json_decref(r);
    r = cdp_call(c, "Emulation.setDeviceMetricsOverride",
                 json_pack("{s:i, s:i, s:f, s:b}", "width", width, "height",
                           height, "deviceScaleFactor", 1.0, "mobile", 0),
                 1, 30000);
    json_decref(r);
    r = cdp_call(c, "Page.navigate", json_pack("{s:s}", "url", url), 1,
                 30000);
    if (r == NULL)
        return -1;
    json_decref(r);
    return 0;
}

char *cdp_eval(struct cdp *c, const char *expr, int timeout_ms)
{
    json_t *r = cdp_call(c, "Runtime.evaluate",
                         json_pack("{s:s, s:b}", "expression", expr,
                                   "returnByValue", 1),
                         1, timeout_ms);
    const char *v;
    char *out = NULL;

    v = r ? json_string_value(
                json_object_get(json_object_get(r, "result"), "value"))
          : NULL;
    if (v)
        out = strdup(v);
    json_decref(r);
    return out;
}

int cdp_screenshot(struct cdp *c, const char *path)
{
    json_t *r = cdp_call(c, "Page.captureScreenshot",
                         json_pack("{s:s, s:b}", "format", "png",
                                   "captureBeyondViewport", 1),
                         1, 30000);
    const char *b64 = r ? json_string_value(json_object_get(r, "data"))
                        : NULL;
    unsigned char *png;
    size_t len = 0, max;
    FILE *f;
    int rv = -1;

    if (b64 == NULL) {
        json_decref(r);
        return -1;
    }
    max = strlen(b64) / 4 * 3 + 3;
    png = malloc(max);
    if (png && sodium_base642bin(png, max, b64, strlen(b64), NULL, &len,
                                 NULL, sodium_base64_VARIANT_ORIGINAL) == 0 &&
        (f = fopen(path, "wb")) != NULL) {
        rv = fwrite(png, 1, len, f) == len ? 0 : -1;
        if (fclose(f) != 0)
            rv = -1;
    }
    free(png);
    json_decref(r);
    return rv;
}

void cdp_close(struct cdp *c)
{
    char cmd[200];

    if (c->pid > 0) {
        json_t *r = cdp_call(c, "Browser.close", NULL, 0, 5000);
        uint64_t end = now_ms() + 10000;
        int st;

        int reaped = 0;

        json_decref(r);
        while (!reaped && now_ms() < end) {
            struct timespec ts = {0, 50000000};

            if (waitpid(c->pid, &st, WNOHANG) == c->pid)
                reaped = 1;
            else
                nanosleep(&ts, NULL);
        }
        if (!reaped) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, &st, 0);
        }
        c->pid = -1;
    }
    if (c->wfd >= 0)
        close(c->wfd);
    if (c->rfd >= 0)
        close(c->rfd);
    c->wfd = c->rfd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
    if (c->profile[0] && getenv("OL_KEEP_TMP") == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->profile);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", c->profile);
    }
    c->profile[0] = '\0';
}
