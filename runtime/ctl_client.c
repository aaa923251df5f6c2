/*
 * The control socket's client: one blocking call (connect, send a frame,
 * read the response frame) with a deadline, for the CLI.  Plain sockets and
 * poll(2); no event loop.  The response is checked to be one msgpack value
 * before the caller sees it.
 */
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/mpr.h"

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for `events` on fd until the deadline (-1: none). */
static int wait_fd(int fd, short events, int64_t deadline, char *errmsg)
{
    struct pollfd p = {.fd = fd, .events = events};

    for (;;) {
        int left = -1, rc;

        if (deadline >= 0) {
            int64_t d = deadline - now_ms();

            if (d <= 0)
                goto timeout;
            left = d > 0x7fffffff ? 0x7fffffff : (int)d;
        }
        rc = poll(&p, 1, left);
        if (rc > 0)
            return 0;
        if (rc == 0)
            goto timeout;
        if (errno != EINTR) {
            ol__errf(errmsg, "control socket: poll: %s", strerror(errno));
            return OL_ECONN;
        }
    }
timeout:
    ol__errf(errmsg, "no response from the node within the timeout");
    return OL_ETIMEOUT;
}

static int send_all(int fd, const uint8_t *p, size_t n, int64_t deadline,
                    char *errmsg)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            int rv = wait_fd(fd, POLLOUT, deadline, errmsg);

            if (rv != 0)
                return rv;
            continue;
        }
        ol__errf(errmsg, "control socket: send: %s", strerror(errno));
        return OL_ECONN;
    }
    return 0;
}

static int recv_all(int fd, uint8_t *p, size_t n, int64_t deadline,
                    char *errmsg)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);

        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r == 0) {
            ol__errf(errmsg, "the node closed the connection before it "
                             "replied");
            return OL_ECANCELED;
        }
        if (errno == EAGAIN || errno == EINTR) {
            int rv = wait_fd(fd, POLLIN, deadline, errmsg);

            if (rv != 0)
                return rv;
            continue;
        }
        ol__errf(errmsg, "control socket: recv: %s", strerror(errno));
        return OL_ECONN;
    }
    return 0;
}

static int dial(const char *path, int64_t deadline, char *errmsg)
{
    struct sockaddr_un sa;
    int fd, e;

    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    for (;;) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            ol__errf(errmsg, "control socket: socket(): %s",
                     strerror(errno));
            return OL_ECONN;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        e = errno;
        close(fd);
        /* On a unix socket EAGAIN means the node's listen backlog is full
         * and nothing was started: try again shortly, until the deadline. */
        if (e != EAGAIN && e != EINTR)
            break;
        if (deadline >= 0 && now_ms() >= deadline) {
            ol__errf(errmsg, "control socket '%s' is busy (its backlog is "
                             "full) and did not accept in time",
                     path);
            return OL_EBUSY;
        }
        usleep(5000);
    }
    if (e == ENOENT) {
        ol__errf(errmsg, "no control socket at '%s'", path);
        return OL_ENOTFOUND;
    }
    if (e == ECONNREFUSED) {
        ol__errf(errmsg, "nothing is listening on control socket '%s' "
                         "(left over from a node that stopped)",
                 path);
        return OL_ECONN;
    }
    ol__errf(errmsg, "connect to control socket '%s': %s", path,
             strerror(e));
    return OL_ECONN;
}

/* Is this response the server turning the request away unread?  Then
 * `why` gets its message. */
static int refused(const uint8_t *p, size_t n, char *why, size_t cap)
{
    struct ol__mpr r;
    uint32_t pairs;
    int yes = 0;

    ol__mpr_init(&r, p, n);
    if (ol__mpr_map(&r, &pairs) != 0)
        return 0;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k;
        uint32_t klen;
        bool b;

        if (ol__mpr_str(&r, &k, &klen) != 0)
            return 0;
        if (klen == 7 && memcmp(k, "refused", 7) == 0) {
            if (ol__mpr_bool(&r, &b) != 0)
                return 0;
            yes = b;
        } else if (klen == 5 && memcmp(k, "error", 5) == 0) {
            if (ol__mpr_strcpy(&r, why, cap) != 0)
                return 0;
        } else if (ol__mpr_skip(&r) != 0) {
            return 0;
        }
    }
    return yes;
}

/* One attempt: connect, send, read one response frame. */
static int call_once(const char *path, const void *req, size_t len,
                     int64_t deadline, uint8_t **out, uint32_t *out_len,
                     char *errmsg)
{
    uint8_t hdr[4];
    uint8_t *body = NULL;
    uint32_t n;
    size_t bad = 0;
    int fd, rv;

    fd = dial(path, deadline, errmsg);
    if (fd < 0)
        return fd;
    hdr[0] = (uint8_t)(len >> 24);
    hdr[1] = (uint8_t)(len >> 16);
    hdr[2] = (uint8_t)(len >> 8);
    hdr[3] = (uint8_t)len;
    rv = send_all(fd, hdr, 4, deadline, errmsg);
    if (rv == 0)
        rv = send_all(fd, req, len, deadline, errmsg);
    /* A busy node may have closed the connection right after its refusal:
     * the refusal is still there to read. */
    if (rv == OL_ECONN)
        rv = 0;
    if (rv == 0)
        rv = recv_all(fd, hdr, 4, deadline, errmsg);
    if (rv != 0)
        goto out;
    n = be32(hdr);
    if (n == 0 || n > OL_CTL_FRAME_MAX) {
        ol__errf(errmsg, "the node sent a response frame of %u bytes", n);
        rv = OL_EMALFORMED;
        goto out;
    }
    body = malloc(n);
    if (body == NULL) {
        ol__errf(errmsg, "out of memory for a %u-byte response", n);
        rv = OL_ENOMEM;
        goto out;
    }
    rv = recv_all(fd, body, n, deadline, errmsg);
    if (rv != 0)
        goto out;
    if (ol__mp_check(body, n, &bad) != 0) {
        ol__errf(errmsg, "the node's response is not msgpack (bad byte at "
                         "offset %zu)", bad);
        rv = OL_EMALFORMED;
        goto out;
    }
    *out = body;
    *out_len = n;
    body = NULL;
out:
    free(body);
    close(fd);
    return rv;
}

int ol__ctl_call(const char *path, const void *req, size_t len, void **resp,
                 size_t *resp_len, int timeout_ms, char *errmsg)
{
    int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;
    int backoff_ms = 10, rv;
    char why[OL_ERRMSG_SIZE];
    uint8_t *body;
    uint32_t n;

    *resp = NULL;
    *resp_len = 0;
    if (strlen(path) >= SUN_PATH_MAX) {
        ol__errf(errmsg, "control socket path '%s' is longer than %zu bytes",
                 path, SUN_PATH_MAX - 1);
        return OL_EINVAL;
    }
    if (len > OL_CTL_FRAME_MAX) {
        ol__errf(errmsg, "request of %zu bytes is over the %u-byte limit",
                 len, OL_CTL_FRAME_MAX);
        return OL_ETOOBIG;
    }
    for (;;) {
        rv = call_once(path, req, len, deadline, &body, &n, errmsg);
        if (rv != 0)
            return rv;
        why[0] = '\0';
        if (!refused(body, n, why, sizeof why))
            break;
        free(body);
        if (deadline >= 0 && now_ms() + backoff_ms >= deadline) {
            ol__errf(errmsg, "%s", why[0] ? why : "the node is busy");
            return OL_EBUSY;
        }
        usleep((useconds_t)backoff_ms * 1000);
        if (backoff_ms < 200)
            backoff_ms *= 2;
    }
    *resp = body;
    *resp_len = n;
    return 0;
}
