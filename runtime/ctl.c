/*
 * The control socket's connections: they cut length-prefixed frames into
 * requests for the daemon's handler and write the replies (the listener
 * is in ctl_server.c, the blocking client in ctl_client.c).
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

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mpr.h"
#include "base/pack.h"

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
void ol__ctl_arm_idle(struct conn *c)
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

void ol__ctl_handle_closed(struct ol__ctl *ctl)
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
    ol__ctl_handle_closed(ctl);
}

void ol__ctl_conn_close(struct conn *c)
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
        ol__ctl_conn_close(c);
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
        ol__ctl_conn_close(c);
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
        ol__ctl_conn_close(c);
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
    struct ol__pk_map m;
    struct ol__buf b;
    msgpack_packer pk;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    ol__pk_map_begin(&m, &pk, &b);
    if (refused)
        ol__pk_kv_bool(&m, "refused", 1);
    ol__pk_kv_bool(&m, "ok", 0);
    ol__pk_kv_str(&m, "error", msg);
    ol__pk_kv_str(&m, "code", ol_err_name(code));
    if (ol__pk_map_end(&m) != 0) {
        ol__buf_close(&b);
        ol__ctl_conn_close(c);
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
void ol__ctl_conn_refuse(struct conn *c, const char *msg)
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
    ol__ctl_conn_close(c);
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
        ol__ctl_arm_idle(c);
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
        ol__ctl_read_start(c);
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
        ol__ctl_conn_close(c);
        return;
    }
    if (c->ctl->in_bytes + c->ctl->out_bytes + (size_t)n > c->ctl->lim.budget) {
        char msg[160];

        snprintf(msg, sizeof msg,
                 "the node is holding %zu MiB of control requests and "
                 "replies (the limit); try again",
                 (c->ctl->in_bytes + c->ctl->out_bytes) >> 20);
        ol__ctl_conn_refuse(c, msg);
        return;
    }
    if (ol__buf_append(&c->in, buf->base, (size_t)n) != 0) {
        ol_log_rl(OL_LOG_ERROR, "control: out of memory reading a request");
        ol__ctl_conn_close(c);
        return;
    }
    in_account(c);
    process_input(c);
}

void ol__ctl_read_start(struct conn *c)
{
    if (uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb) != 0) {
        ol__ctl_conn_close(c);
        return;
    }
    c->reading = 1;
}
