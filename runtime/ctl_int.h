/*
 * The control server's insides, shared by ctl.c (connections, reading
 * and replies) and ctl_server.c (the listener and its lifetime).
 */
#ifndef OL_CTL_INT_H
#define OL_CTL_INT_H

#include <sys/un.h>
#include <uv.h>

#include "base/buf.h"
#include "ctl.h"

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

/* ctl.c */
void ol__ctl_conn_close(struct conn *c);
/* Turn a connection away without reading its request: say why, then
 * close.  The client may try again later. */
void ol__ctl_conn_refuse(struct conn *c, const char *msg);
/* Between requests a client has lim.idle_ms to send the next one whole. */
void ol__ctl_arm_idle(struct conn *c);
void ol__ctl_read_start(struct conn *c);
/* One of the server's handles closed: the last frees it. */
void ol__ctl_handle_closed(struct ol__ctl *ctl);

#endif
