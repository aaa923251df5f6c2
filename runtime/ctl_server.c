/*
 * The control socket's listener: a unix socket of mode 0600 that refuses
 * to replace a live node's, accepts connections up to a limit (closing
 * the one idle longest to make room), and closes with every connection.
 */
#include "ctl_int.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"


/* Make room for a new connection by closing the one that has been idle
 * (no request outstanding) longest.  0 if every other one is busy. */
static int evict_idle(struct ol__ctl *ctl, const struct conn *fresh)
{
    struct conn *victim = NULL;

    for (struct conn *c = ctl->conns; c; c = c->next)
        if (c != fresh && !c->busy && !c->closing &&
            (victim == NULL || c->idle_since < victim->idle_since))
            victim = c;
    if (victim == NULL)
        return 0;
    ol_log_rl(OL_LOG_WARN,
              "control: %u connections open; closing the one idle longest",
              ctl->n_conns);
    ol__ctl_conn_close(victim);
    return 1;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct ol__ctl *ctl = server->data;
    struct conn *c;

    if (status < 0) {
        ol_log_rl(OL_LOG_WARN, "control: accept: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL || uv_pipe_init(ctl->loop, &c->pipe, 0) != 0) {
        free(c);
        ol_log_rl(OL_LOG_ERROR, "control: out of memory accepting");
        return;
    }
    uv_timer_init(ctl->loop, &c->idle);
    c->pipe.data = c;
    c->idle.data = c;
    c->ctl = ctl;
    c->refs = 2;
    c->handles_open = 2;
    c->next = ctl->conns;
    if (ctl->conns)
        ctl->conns->prev = c;
    ctl->conns = c;
    ctl->n_conns++;
    ctl->handles += 2;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        ol__ctl_conn_close(c);
        return;
    }
    if (ctl->n_conns > ctl->lim.max_conns && !evict_idle(ctl, c)) {
        char msg[128];

        snprintf(msg, sizeof msg,
                 "the node is busy: %u control connections are waiting for "
                 "answers (the limit); try again",
                 ctl->lim.max_conns);
        ol__ctl_conn_refuse(c, msg);
        return;
    }
    ol__ctl_arm_idle(c);
    ol__ctl_read_start(c);
}

/* ---- server lifetime ---- */

/* A unix stream socket (with `flags` besides SOCK_CLOEXEC) and the
 * address of `path` (shorter than sun_path, checked by the caller).
 * Returns the fd, or OL_EIO with errmsg set. */
static int unix_socket(const char *path, int flags, struct sockaddr_un *sa,
                       char *errmsg)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);

    if (fd < 0) {
        ol__errf(errmsg, "control socket: socket(): %s", strerror(errno));
        return OL_EIO;
    }
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    memcpy(sa->sun_path, path, strlen(path));
    return fd;
}

/* Is a live server answering on `path`?  1 yes, 0 no (stale or absent), or
 * an OL_E* code with errmsg set. */
static int probe_live(const char *path, char *errmsg)
{
    struct sockaddr_un sa;
    struct stat st;
    int fd, rc, e;

    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        ol__errf(errmsg, "control socket '%s': %s", path, strerror(errno));
        return OL_EIO;
    }
    if (!S_ISSOCK(st.st_mode)) {
        ol__errf(errmsg,
                 "control socket '%s' exists and is not a socket; "
                 "refusing to replace it",
                 path);
        return OL_EEXISTS;
    }
    fd = unix_socket(path, 0, &sa, errmsg);
    if (fd < 0)
        return fd;
    rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    e = errno;
    close(fd);
    if (rc == 0) {
        ol__errf(errmsg,
                 "another node is already running on control socket '%s'",
                 path);
        return 1;
    }
    if (e == ECONNREFUSED || e == ENOENT)
        return 0;
    ol__errf(errmsg, "control socket '%s': connect: %s", path, strerror(e));
    return OL_EIO;
}

/* Create, bind (mode 0600) and listen on a unix socket; returns the fd or
 * an OL_E* code. */
static int bind_socket(const char *path, char *errmsg)
{
    struct sockaddr_un sa;
    const char *what;
    mode_t old;
    int fd, rc, e;

    fd = unix_socket(path, SOCK_NONBLOCK, &sa, errmsg);
    if (fd < 0)
        return fd;
    /* The umask closes the window between bind() and chmod() in which the
     * socket file would carry the default permissions. */
    old = umask(077);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    e = errno;
    umask(old);
    if (rc != 0) {
        ol__errf(errmsg, "control socket '%s': bind: %s", path, strerror(e));
        close(fd);
        return ol__err_from_errno(e);
    }
    rc = chmod(path, 0600);
    what = "chmod";
    if (rc == 0) {
        rc = listen(fd, 16);
        what = "listen";
    }
    if (rc != 0) {
        e = errno;
        ol__errf(errmsg, "control socket '%s': %s: %s", path, what,
                 strerror(e));
        close(fd);
        unlink(path);
        return OL_EIO;
    }
    return fd;
}

static void listener_closed(uv_handle_t *h)
{
    ol__ctl_handle_closed(h->data);
}

int ol__ctl_start(uv_loop_t *loop, const char *path, ol__ctl_handler h,
                  void *data, struct ol__ctl **out, char *errmsg)
{
    struct ol__ctl *ctl;
    struct sigaction sa;
    int fd, rv;

    *out = NULL;
    if (path == NULL || path[0] == '\0') {
        ol__errf(errmsg, "control socket: no path given");
        return OL_EINVAL;
    }
    if (strlen(path) >= SUN_PATH_MAX) {
        ol__errf(errmsg, "control socket path '%s' is longer than %zu bytes",
                 path, SUN_PATH_MAX - 1);
        return OL_EINVAL;
    }
    rv = probe_live(path, errmsg);
    if (rv == 1)
        return OL_EEXISTS;
    if (rv < 0)
        return rv;
    if (unlink(path) != 0 && errno != ENOENT) {
        ol__errf(errmsg, "remove stale control socket '%s': %s", path,
                 strerror(errno));
        return OL_EIO;
    }
    /* A reply written to a client that has hung up must not kill the
     * process; libuv writes with plain write(2). */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    fd = bind_socket(path, errmsg);
    if (fd < 0)
        return fd;
    ctl = calloc(1, sizeof *ctl);
    if (ctl == NULL) {
        close(fd);
        unlink(path);
        ol__errf(errmsg, "control socket: out of memory");
        return OL_ENOMEM;
    }
    ctl->loop = loop;
    ctl->handler = h;
    ctl->data = data;
    ctl->lim.idle_ms = OL_CTL_IDLE_MS;
    ctl->lim.budget = OL_CTL_BUDGET;
    ctl->lim.max_conns = OL_CTL_MAX_CONNS;
    snprintf(ctl->path, sizeof ctl->path, "%s", path);
    if (uv_pipe_init(loop, &ctl->listener, 0) != 0) {
        close(fd);
        unlink(path);
        free(ctl);
        ol__errf(errmsg, "control socket: uv_pipe_init failed");
        return OL_EIO;
    }
    ctl->listener.data = ctl;
    ctl->handles = 1;
    rv = uv_pipe_open(&ctl->listener, fd);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&ctl->listener, 128, on_connection);
    if (rv != 0) {
        ol__errf(errmsg, "control socket '%s': listen: %s", path,
                 uv_strerror(rv));
        /* The handle is in the loop now; it is freed when it has closed. */
        ctl->closing = 1;
        uv_close((uv_handle_t *)&ctl->listener, listener_closed);
        unlink(path);
        return OL_EIO;
    }
    *out = ctl;
    return 0;
}

void ol__ctl_set_limits(struct ol__ctl *ctl, const struct ol__ctl_limits *l)
{
    if (l->idle_ms)
        ctl->lim.idle_ms = l->idle_ms;
    if (l->budget)
        ctl->lim.budget = l->budget;
    if (l->max_conns)
        ctl->lim.max_conns = l->max_conns;
}

void ol__ctl_close(struct ol__ctl *ctl, void (*cb)(void *data), void *data)
{
    if (ctl == NULL || ctl->closing)
        return;
    ctl->closing = 1;
    ctl->close_cb = cb;
    ctl->close_data = data;
    unlink(ctl->path);
    while (ctl->conns)
        ol__ctl_conn_close(ctl->conns);
    uv_close((uv_handle_t *)&ctl->listener, listener_closed);
}
