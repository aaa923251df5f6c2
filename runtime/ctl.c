/*
 * The control socket's server: a libuv unix-socket listener that cuts
 * length-prefixed frames into requests for the daemon's handler (the
 * blocking client is in ctl_client.c).
 *
 * Everything a client sends is input.  A frame's claimed length is checked
 * against OL_CTL_FRAME_MAX as soon as its 4-byte header arrives, and the
 * input buffer only ever grows by bytes actually received.  A body is
 * checked with the bounded msgpack reader before msgpack-c unpacks it; a bad
 * body gets an error reply and the connection keeps serving, an oversized
 * frame gets an error reply and the connection is closed.
 *
 * A request holds a reference on its connection, so a handler may reply
 * long after the client went away (or after the server closed): the reply
 * then finds the connection marked closed and is dropped.
 */
#include "ctl.h"

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

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mpr.h"

#define READ_CHUNK 65536
#define WRITE_BACKLOG_MAX (8u << 20) /* unsent reply bytes before we pause */
#define OP_MAX 64
#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

struct conn {
    uv_pipe_t pipe;
    uv_timer_t idle;     /* closes a connection that sends no request */
    struct ol__ctl *ctl;
    struct conn *prev, *next;
    unsigned refs;       /* the two handles, the request, each write */
    int handles_open;
    int closing;         /* replies to it are dropped from now on */
    int reading;
    int dispatching;     /* inside the handler: input must not move */
    int close_after_write;
    struct ol__ctl_req *busy;
    struct ol__buf in;   /* received, not yet consumed */
    size_t in_off;       /* consumed prefix of `in` */
    size_t in_counted;   /* in.cap as counted in ctl->in_bytes */
    uint64_t idle_since; /* loop time it last became idle */
    char rbuf[READ_CHUNK];
};

struct ol__ctl_req {
    struct conn *conn;
};

struct ol__ctl {
    uv_loop_t *loop;
    uv_pipe_t listener;
    ol__ctl_handler handler;
    void *data;
    char path[SUN_PATH_MAX];
    struct conn *conns;
    unsigned n_conns;
    unsigned handles;    /* open libuv handles: the listener plus conns' */
    struct ol__ctl_limits lim;
    size_t in_bytes;     /* request buffers held, all connections */
    size_t out_bytes;    /* reply bytes queued, all connections */
    int closing;
    void (*close_cb)(void *data);
    void *close_data;
};

struct wreq {
    uv_write_t w;
    struct conn *c;
    uint8_t *frame;
    size_t len;
};

static void process_input(struct conn *c);

/* A client that sends requests without reading the replies is not served
 * further until its replies drain. */
static int backlogged(struct conn *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) >
           WRITE_BACKLOG_MAX;
}

/* Keep ctl->in_bytes equal to the request buffers' total capacity. */
static void in_account(struct conn *c)
{
    struct ol__ctl *ctl = c->ctl;

    if (ctl) {
        ctl->in_bytes -= c->in_counted;
        ctl->in_bytes += c->in.cap;
    }
    c->in_counted = c->in.cap;
}

static void idle_cb(uv_timer_t *t);

/* Between requests a client has lim.idle_ms to send the next one whole. */
static void arm_idle(struct conn *c)
{
    if (c->closing || c->busy)
        return;
    c->idle_since = uv_now(c->ctl->loop);
    uv_timer_start(&c->idle, idle_cb, c->ctl->lim.idle_ms, 0);
}

/* ---- connection lifetime ---- */

static void conn_unref(struct conn *c)
{
    if (--c->refs > 0)
        return;
    ol__buf_close(&c->in);
    free(c);
}

static void ctl_handle_closed(struct ol__ctl *ctl)
{
    void (*cb)(void *) = ctl->close_cb;
    void *data = ctl->close_data;

    if (--ctl->handles > 0 || !ctl->closing)
        return;
    free(ctl);
    if (cb)
        cb(data);
}

/* Each of a connection's two handles holds a reference; the second to
 * close detaches it from the server. */
static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct ol__ctl *ctl = c->ctl;

    /* Replies that come later find c->ctl NULL and are dropped. */
    if (--c->handles_open == 0)
        c->ctl = NULL;
    conn_unref(c);
    ctl_handle_closed(ctl);
}

static void conn_close(struct conn *c)
{
    struct ol__ctl *ctl = c->ctl;

    if (c->closing)
        return;
    c->closing = 1;
    if (c->prev)
        c->prev->next = c->next;
    else
        ctl->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ctl->n_conns--;
    ol__buf_close(&c->in);
    in_account(c);
    uv_close((uv_handle_t *)&c->pipe, conn_closed);
    uv_close((uv_handle_t *)&c->idle, conn_closed);
}

/* ---- writing ---- */

static void write_done(uv_write_t *w, int status)
{
    struct wreq *wr = (struct wreq *)w;
    struct conn *c = wr->c;

    if (c->ctl)
        c->ctl->out_bytes -= wr->len;
    free(wr->frame);
    free(wr);
    if (!c->closing && (status < 0 || c->close_after_write))
        conn_close(c);
    else if (!c->closing && !c->busy && !c->dispatching && !c->reading)
        process_input(c); /* resume a client paused for its backlog */
    conn_unref(c);
}

/* Frame and write `len` bytes; takes nothing from the caller. */
static void conn_write(struct conn *c, const void *p, size_t len)
{
    struct wreq *wr;
    uv_buf_t b;

    if (c->closing)
        return;
    wr = malloc(sizeof *wr);
    if (wr)
        wr->frame = malloc(4 + len);
    if (wr == NULL || wr->frame == NULL) {
        if (wr)
            free(wr);
        ol_log_rl(OL_LOG_ERROR, "control: out of memory for a reply");
        conn_close(c);
        return;
    }
    wr->frame[0] = (uint8_t)(len >> 24);
    wr->frame[1] = (uint8_t)(len >> 16);
    wr->frame[2] = (uint8_t)(len >> 8);
    wr->frame[3] = (uint8_t)len;
    memcpy(wr->frame + 4, p, len);
    wr->c = c;
    wr->len = 4 + len;
    b = uv_buf_init((char *)wr->frame, (unsigned)(4 + len));
    c->refs++;
    if (uv_write(&wr->w, (uv_stream_t *)&c->pipe, &b, 1, write_done) != 0) {
        free(wr->frame);
        free(wr);
        conn_close(c);
        conn_unref(c);
        return;
    }
    c->ctl->out_bytes += wr->len;
}

/* {"ok": false, "error": msg, "code": name}, plus "refused": true when
 * the request was turned away unread (the client may try again). */
static void write_error(struct conn *c, int code, const char *msg,
                        int refused)
{
    struct ol__buf b;
    msgpack_packer pk;
    size_t n = strlen(msg);
    const char *name = ol_err_name(code);

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    if (refused && (msgpack_pack_map(&pk, 4) != 0 ||
                    msgpack_pack_str_with_body(&pk, "refused", 7) != 0 ||
                    msgpack_pack_true(&pk) != 0)) {
        ol__buf_close(&b);
        conn_close(c);
        return;
    }
    if ((!refused && msgpack_pack_map(&pk, 3) != 0) ||
        msgpack_pack_str_with_body(&pk, "ok", 2) != 0 ||
        msgpack_pack_false(&pk) != 0 ||
        msgpack_pack_str_with_body(&pk, "error", 5) != 0 ||
        msgpack_pack_str_with_body(&pk, msg, n) != 0 ||
        msgpack_pack_str_with_body(&pk, "code", 4) != 0 ||
        msgpack_pack_str_with_body(&pk, name, strlen(name)) != 0) {
        ol__buf_close(&b);
        conn_close(c);
        return;
    }
    conn_write(c, b.base, b.len);
    ol__buf_close(&b);
}

static void conn_write_error(struct conn *c, int code, const char *msg)
{
    write_error(c, code, msg, 0);
}

/* Turn a connection away without reading its request: say why, then
 * close.  The client may try again later. */
static void conn_refuse(struct conn *c, const char *msg)
{
    ol_log_rl(OL_LOG_WARN, "control: %s", msg);
    c->close_after_write = 1;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->reading = 0;
    }
    uv_timer_stop(&c->idle);
    write_error(c, OL_EBUSY, msg, 1);
}

static void idle_cb(uv_timer_t *t)
{
    struct conn *c = t->data;

    if (c->busy || c->closing)
        return;
    ol_log_rl(OL_LOG_DEBUG,
              "control: closing a connection that sent no complete request "
              "in %u ms",
              c->ctl->lim.idle_ms);
    conn_close(c);
}

/* ---- replies ---- */

/* Detach a finished request from its connection; returns the connection
 * if a reply can still be written to it. */
static struct conn *req_finish(struct ol__ctl_req *req)
{
    struct conn *c = req->conn;

    free(req);
    if (c->closing) {
        conn_unref(c);
        return NULL;
    }
    c->busy = NULL;
    return c;
}

/* After a reply: drop the request's reference and serve what is queued. */
static void req_release(struct conn *c)
{
    int closing = c->closing;

    conn_unref(c); /* the handle's reference keeps c alive if open */
    if (!closing && !c->dispatching)
        process_input(c);
}

void ol__ctl_reply(struct ol__ctl_req *req, const void *map, size_t len)
{
    struct conn *c = req_finish(req);

    if (c == NULL)
        return;
    if (len > OL_CTL_FRAME_MAX) {
        char msg[96];

        snprintf(msg, sizeof msg, "response of %zu bytes is over the %u-byte "
                 "frame limit", len, OL_CTL_FRAME_MAX);
        conn_write_error(c, OL_ETOOBIG, msg);
    } else {
        conn_write(c, map, len);
    }
    req_release(c);
}

void ol__ctl_reply_error(struct ol__ctl_req *req, int code, const char *fmt,
                         ...)
{
    char msg[OL_ERRMSG_SIZE];
    struct conn *c = req_finish(req);
    va_list ap;

    if (c == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    conn_write_error(c, code, msg);
    req_release(c);
}

/* ---- reading ---- */

/* Find the string value of "op" in a request map. */
static int find_op(const msgpack_object *m, char op[OP_MAX])
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        const msgpack_object *v = &m->via.map.ptr[i].val;

        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != 2 ||
            memcmp(k->via.str.ptr, "op", 2) != 0)
            continue;
        if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
            v->via.str.size >= OP_MAX ||
            memchr(v->via.str.ptr, '\0', v->via.str.size))
            return OL_EMALFORMED;
        memcpy(op, v->via.str.ptr, v->via.str.size);
        op[v->via.str.size] = '\0';
        return 0;
    }
    return OL_ENOTFOUND;
}

/* One complete frame body: check it, unpack it, hand it to the handler. */
static void dispatch(struct conn *c, const uint8_t *p, size_t n)
{
    msgpack_unpacked u;
    struct ol__ctl_req *req;
    char msg[128], op[OP_MAX];
    size_t off = 0, bad = 0;
    int rc;

    if (n == 0) {
        conn_write_error(c, OL_EMALFORMED, "request frame is empty");
        return;
    }
    if (ol__mp_check(p, n, &bad) != 0) {
        snprintf(msg, sizeof msg,
                 "request is not one msgpack value (bad byte at offset %zu)",
                 bad);
        conn_write_error(c, OL_EMALFORMED, msg);
        return;
    }
    msgpack_unpacked_init(&u);
    rc = msgpack_unpack_next(&u, (const char *)p, n, &off);
    if (rc != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&u);
        conn_write_error(c, OL_ETOOBIG,
                         "request nests deeper than the 32 levels the node "
                         "reads");
        return;
    }
    if (u.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy(&u);
        conn_write_error(c, OL_EMALFORMED, "request is not a map");
        return;
    }
    rc = find_op(&u.data, op);
    if (rc != 0) {
        msgpack_unpacked_destroy(&u);
        conn_write_error(c, OL_EMALFORMED,
                         rc == OL_ENOTFOUND
                             ? "request has no 'op'"
                             : "request 'op' is not a short string");
        return;
    }
    req = malloc(sizeof *req);
    if (req == NULL) {
        msgpack_unpacked_destroy(&u);
        conn_write_error(c, OL_ENOMEM, "out of memory");
        return;
    }
    req->conn = c;
    c->refs++;
    c->busy = req;
    uv_timer_stop(&c->idle);
    c->ctl->handler(c->ctl->data, req, op, &u.data);
    msgpack_unpacked_destroy(&u);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static void read_start(struct conn *c);

/* Serve complete frames from the input while no request is outstanding. */
static void process_input(struct conn *c)
{
    c->dispatching = 1;
    while (!c->closing && c->busy == NULL && !backlogged(c)) {
        size_t avail = c->in.len - c->in_off;
        const uint8_t *p = c->in.base + c->in_off;
        uint32_t flen;

        if (avail < 4)
            break;
        flen = be32(p);
        if (flen > OL_CTL_FRAME_MAX) {
            char msg[96];

            snprintf(msg, sizeof msg,
                     "request frame of %u bytes is over the %u-byte limit",
                     flen, OL_CTL_FRAME_MAX);
            ol_log_rl(OL_LOG_WARN, "control: %s", msg);
            c->close_after_write = 1;
            conn_write_error(c, OL_ETOOBIG, msg);
            uv_read_stop((uv_stream_t *)&c->pipe);
            c->reading = 0;
            break;
        }
        if (avail - 4 < flen)
            break;
        c->in_off += 4 + (size_t)flen;
        dispatch(c, p + 4, flen);
    }
    c->dispatching = 0;
    if (c->closing || c->close_after_write)
        return;
    /* Compact: drop the consumed prefix (no msgpack object points into it
     * any more), and release a large idle buffer. */
    if (c->in_off == c->in.len) {
        if (c->in.cap > (1u << 20))
            ol__buf_close(&c->in);
        else
            ol__buf_reset(&c->in);
    } else if (c->in_off > 0) {
        memmove(c->in.base, c->in.base + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
    }
    c->in_off = 0;
    in_account(c);
    if (c->busy == NULL && !uv_is_active((uv_handle_t *)&c->idle))
        arm_idle(c);
    /* While a request is outstanding keep reading (to notice a client that
     * hangs up) until a whole further frame is queued, or its header claims
     * more than the limit (refused once the reply has gone). */
    if (backlogged(c) ||
        (c->busy && c->in.len >= 4 &&
         (be32(c->in.base) > OL_CTL_FRAME_MAX ||
          c->in.len - 4 >= be32(c->in.base)))) {
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->pipe);
            c->reading = 0;
        }
    } else if (!c->reading) {
        read_start(c);
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;

    (void)suggested;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;

    if (n == 0)
        return;
    if (n < 0) {
        if (n != UV_EOF)
            ol_log_rl(OL_LOG_DEBUG, "control: read: %s", uv_strerror((int)n));
        conn_close(c);
        return;
    }
    if (c->ctl->in_bytes + c->ctl->out_bytes + (size_t)n > c->ctl->lim.budget) {
        char msg[160];

        snprintf(msg, sizeof msg,
                 "the node is holding %zu MiB of control requests and "
                 "replies (the limit); try again",
                 (c->ctl->in_bytes + c->ctl->out_bytes) >> 20);
        conn_refuse(c, msg);
        return;
    }
    if (ol__buf_append(&c->in, buf->base, (size_t)n) != 0) {
        ol_log_rl(OL_LOG_ERROR, "control: out of memory reading a request");
        conn_close(c);
        return;
    }
    in_account(c);
    process_input(c);
}

static void read_start(struct conn *c)
{
    if (uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb) != 0) {
        conn_close(c);
        return;
    }
    c->reading = 1;
}

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
    conn_close(victim);
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
        conn_close(c);
        return;
    }
    if (ctl->n_conns > ctl->lim.max_conns && !evict_idle(ctl, c)) {
        char msg[128];

        snprintf(msg, sizeof msg,
                 "the node is busy: %u control connections are waiting for "
                 "answers (the limit); try again",
                 ctl->lim.max_conns);
        conn_refuse(c, msg);
        return;
    }
    arm_idle(c);
    read_start(c);
}

/* ---- server lifetime ---- */

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
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ol__errf(errmsg, "control socket: socket(): %s", strerror(errno));
        return OL_EIO;
    }
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
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

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        ol__errf(errmsg, "control socket: socket(): %s", strerror(errno));
        return OL_EIO;
    }
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
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
    ctl_handle_closed(h->data);
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
        conn_close(ctl->conns);
    uv_close((uv_handle_t *)&ctl->listener, listener_closed);
}
