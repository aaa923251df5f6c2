/* Unit tests for the control socket: the server runs its libuv loop in a
 * thread of the test process, the client calls it from the main thread, and
 * raw sockets play the hostile client. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "runtime/ctl.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mpr.h"

static char dir[64], sock[128];
static uv_loop_t loop;
static uv_async_t stop_async;
static uv_timer_t later_timer;
static struct ol__ctl *ctl;
static pthread_t thread;
static struct ol__ctl_req *later_req, *held_req;
static struct ol__ctl_req *parked[8];
static atomic_int n_parked;
static struct ol__ctl_limits limits; /* set before the loop starts */
static atomic_int late_replies, handled, closed;

/* ---- the server side (loop thread) ---- */

static void reply_ok(struct ol__ctl_req *req, const char *op, uint32_t n)
{
    struct ol__buf b;
    msgpack_packer pk;

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "ok", 2);
    msgpack_pack_true(&pk);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_uint32(&pk, n);
    ol__ctl_reply(req, b.base, b.len);
    ol__buf_close(&b);
}

static void later_cb(uv_timer_t *t)
{
    (void)t;
    reply_ok(later_req, "later", 0);
    later_req = NULL;
    atomic_fetch_add(&late_replies, 1);
}

static void handler(void *data, struct ol__ctl_req *req, const char *op,
                    const msgpack_object *args)
{
    (void)data;
    atomic_fetch_add(&handled, 1);
    if (strcmp(op, "echo") == 0) {
        reply_ok(req, op, args->via.map.size);
    } else if (strcmp(op, "big") == 0) {
        static char pad[1 << 20];
        struct ol__buf b;
        msgpack_packer pk;

        ol__buf_init(&b);
        msgpack_packer_init(&pk, &b, ol__buf_write);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "ok", 2);
        msgpack_pack_true(&pk);
        msgpack_pack_str_with_body(&pk, "pad", 3);
        msgpack_pack_bin_with_body(&pk, pad, sizeof pad);
        ol__ctl_reply(req, b.base, b.len);
        ol__buf_close(&b);
    } else if (strcmp(op, "later") == 0) {
        later_req = req;
        uv_timer_start(&later_timer, later_cb, 150, 0);
    } else if (strcmp(op, "hold") == 0) {
        held_req = req; /* answered only after the server has closed */
    } else if (strcmp(op, "park") == 0 && atomic_load(&n_parked) < 8) {
        parked[atomic_fetch_add(&n_parked, 1)] = req; /* likewise */
    } else {
        ol__ctl_reply_error(req, OL_EINVAL, "unknown op '%s'", op);
    }
}

static void server_closed(void *data)
{
    (void)data;
    /* Replies after close must be dropped without touching freed memory. */
    if (held_req)
        reply_ok(held_req, "hold", 0);
    if (later_req)
        reply_ok(later_req, "later", 0);
    held_req = later_req = NULL;
    for (int i = 0; i < atomic_load(&n_parked); i++)
        reply_ok(parked[i], "park", 0);
    atomic_store(&n_parked, 0);
    atomic_store(&closed, 1);
}

static void stop_cb(uv_async_t *a)
{
    ol__ctl_close(ctl, server_closed, NULL);
    uv_close((uv_handle_t *)a, NULL);
    uv_close((uv_handle_t *)&later_timer, NULL);
}

static void *run_loop(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
    return NULL;
}

static void setup(void)
{
    char err[OL_ERRMSG_SIZE];

    ol_log_set_level(OL_LOG_ERROR);
    snprintf(dir, sizeof dir, "/tmp/ol-ctl-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(sock, sizeof sock, "%s/control.sock", dir);
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(uv_async_init(&loop, &stop_async, stop_cb), 0);
    cr_assert_eq(uv_timer_init(&loop, &later_timer), 0);
    cr_assert_eq(ol__ctl_start(&loop, sock, handler, NULL, &ctl, err), 0,
                 "%s", err);
    ol__ctl_set_limits(ctl, &limits);
    cr_assert_eq(pthread_create(&thread, NULL, run_loop, NULL), 0);
}

static void teardown(void)
{
    char cmd[128];

    uv_async_send(&stop_async);
    pthread_join(thread, NULL);
    cr_expect_eq(atomic_load(&closed), 1, "close callback did not run");
    cr_expect_eq(uv_loop_close(&loop), 0, "handles left open");
    cr_expect_eq(access(sock, F_OK), -1, "socket file left behind");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(ctl, .init = setup, .fini = teardown, .timeout = 30);

/* ---- client helpers ---- */

static void pack_req(struct ol__buf *b, const char *op, int extra)
{
    msgpack_packer pk;

    ol__buf_init(b);
    msgpack_packer_init(&pk, b, ol__buf_write);
    msgpack_pack_map(&pk, 1 + (uint32_t)extra);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, op, strlen(op));
    for (int i = 0; i < extra; i++) {
        msgpack_pack_int(&pk, i);
        msgpack_pack_nil(&pk);
    }
}

/* Call and return the unpacked response (caller destroys). */
static int call(const char *op, int extra, msgpack_unpacked *u, void **raw)
{
    struct ol__buf b;
    char err[OL_ERRMSG_SIZE];
    size_t len = 0, off = 0;
    int rv;

    pack_req(&b, op, extra);
    rv = ol__ctl_call(sock, b.base, b.len, raw, &len, 5000, err);
    ol__buf_close(&b);
    if (rv != 0)
        return rv;
    msgpack_unpacked_init(u);
    cr_assert_eq(msgpack_unpack_next(u, *raw, len, &off),
                 MSGPACK_UNPACK_SUCCESS);
    return 0;
}

static const msgpack_object *get(const msgpack_object *m, const char *k)
{
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (m->via.map.ptr[i].key.via.str.size == strlen(k) &&
            memcmp(m->via.map.ptr[i].key.via.str.ptr, k, strlen(k)) == 0)
            return &m->via.map.ptr[i].val;
    return NULL;
}

static int str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR &&
           o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static void expect_echo_works(void)
{
    msgpack_unpacked u;
    void *raw;

    cr_assert_eq(call("echo", 2, &u, &raw), 0, "server stopped serving");
    cr_assert_eq(get(&u.data, "ok")->via.boolean, true);
    cr_assert(str_is(get(&u.data, "op"), "echo"));
    cr_assert_eq(get(&u.data, "n")->via.u64, 3);
    msgpack_unpacked_destroy(&u);
    free(raw);
}

static int dial(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_frame(int fd, const void *p, uint32_t len)
{
    uint8_t h[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16),
                    (uint8_t)(len >> 8), (uint8_t)len};

    cr_assert_eq(send(fd, h, 4, MSG_NOSIGNAL), 4);
    if (len)
        cr_assert_eq(send(fd, p, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Read one response frame with a 5 s deadline; returns its length or -1 on
 * EOF.  The body goes to buf. */
static ssize_t recv_frame(int fd, uint8_t *buf, size_t cap)
{
    uint8_t h[4];
    size_t got = 0, want = 4;
    uint8_t *dst = h;

    for (int phase = 0; phase < 2; phase++) {
        while (got < want) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            ssize_t r;

            cr_assert_eq(poll(&p, 1, 5000), 1, "no response in time");
            r = recv(fd, dst + got, want - got, 0);
            if (r == 0)
                return -1;
            cr_assert(r > 0, "recv: %s", strerror(errno));
            got += (size_t)r;
        }
        if (phase == 0) {
            want = (size_t)h[0] << 24 | (size_t)h[1] << 16 |
                   (size_t)h[2] << 8 | h[3];
            cr_assert(want <= cap);
            dst = buf;
            got = 0;
        }
    }
    return (ssize_t)want;
}

static void expect_error(int fd, const char *code)
{
    uint8_t buf[4096];
    msgpack_unpacked u;
    size_t off = 0;
    ssize_t n = recv_frame(fd, buf, sizeof buf);

    cr_assert(n > 0, "connection closed without an error reply");
    cr_assert_eq(ol__mp_check(buf, (size_t)n, NULL), 0);
    msgpack_unpacked_init(&u);
    cr_assert_eq(msgpack_unpack_next(&u, (char *)buf, (size_t)n, &off),
                 MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(get(&u.data, "ok")->via.boolean, false);
    cr_assert(str_is(get(&u.data, "code"), code), "wrong code");
    cr_assert(get(&u.data, "error")->via.str.size > 0);
    msgpack_unpacked_destroy(&u);
}

/* ---- tests ---- */

Test(ctl, round_trip)
{
    expect_echo_works();
    expect_echo_works();
}

Test(ctl, unknown_op_gets_an_error_reply)
{
    msgpack_unpacked u;
    void *raw;

    cr_assert_eq(call("nope", 0, &u, &raw), 0);
    cr_assert_eq(get(&u.data, "ok")->via.boolean, false);
    cr_assert(str_is(get(&u.data, "code"), "OL_EINVAL"));
    msgpack_unpacked_destroy(&u);
    free(raw);
}

Test(ctl, several_requests_on_one_connection_in_order)
{
    struct ol__buf a, b;
    uint8_t buf[256];
    int fd = dial();

    pack_req(&a, "echo", 0);
    pack_req(&b, "echo", 1);
    /* Pipelined: both frames in one write. */
    send_frame(fd, a.base, (uint32_t)a.len);
    send_frame(fd, b.base, (uint32_t)b.len);
    cr_assert(recv_frame(fd, buf, sizeof buf) > 0);
    cr_assert(recv_frame(fd, buf, sizeof buf) > 0);
    send_frame(fd, a.base, (uint32_t)a.len);
    cr_assert(recv_frame(fd, buf, sizeof buf) > 0);
    close(fd);
    ol__buf_close(&a);
    ol__buf_close(&b);
}

Test(ctl, socket_file_is_mode_0600)
{
    struct stat st;

    cr_assert_eq(stat(sock, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0600, "mode %o", st.st_mode & 0777);
}

Test(ctl, oversized_frame_is_refused_from_its_header)
{
    static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    uint8_t h[4];
    uint8_t buf[64];
    int fd = dial();

    /* Only the header is sent: the refusal must come without waiting for
     * (or allocating) the 4 GiB body. */
    cr_assert_eq(send(fd, huge, 4, MSG_NOSIGNAL), 4);
    expect_error(fd, "OL_ETOOBIG");
    cr_assert_eq(recv_frame(fd, buf, sizeof buf), -1, "connection kept open");
    close(fd);
    /* Just over the limit. */
    fd = dial();
    h[0] = (uint8_t)((OL_CTL_FRAME_MAX + 1) >> 24);
    h[1] = (uint8_t)((OL_CTL_FRAME_MAX + 1) >> 16);
    h[2] = (uint8_t)((OL_CTL_FRAME_MAX + 1) >> 8);
    h[3] = (uint8_t)(OL_CTL_FRAME_MAX + 1);
    cr_assert_eq(send(fd, h, 4, MSG_NOSIGNAL), 4);
    expect_error(fd, "OL_ETOOBIG");
    close(fd);
    expect_echo_works();
}

Test(ctl, garbage_gets_an_error_and_the_server_keeps_serving)
{
    static const uint8_t not_msgpack[] = {0xc1};
    static const uint8_t truncated[] = {0x82, 0xa2, 'o'};
    static const uint8_t array[] = {0x91, 0x01};
    static const uint8_t no_op[] = {0x81, 0xa1, 'x', 0x01};
    static const uint8_t op_not_str[] = {0x81, 0xa2, 'o', 'p', 0x05};
    struct ol__buf ok;
    uint8_t buf[256];
    int fd = dial();

    send_frame(fd, not_msgpack, sizeof not_msgpack);
    expect_error(fd, "OL_EMALFORMED");
    send_frame(fd, truncated, sizeof truncated);
    expect_error(fd, "OL_EMALFORMED");
    send_frame(fd, array, sizeof array);
    expect_error(fd, "OL_EMALFORMED");
    send_frame(fd, no_op, sizeof no_op);
    expect_error(fd, "OL_EMALFORMED");
    send_frame(fd, op_not_str, sizeof op_not_str);
    expect_error(fd, "OL_EMALFORMED");
    send_frame(fd, NULL, 0);
    expect_error(fd, "OL_EMALFORMED");
    /* The same connection still serves a good request. */
    pack_req(&ok, "echo", 0);
    send_frame(fd, ok.base, (uint32_t)ok.len);
    cr_assert(recv_frame(fd, buf, sizeof buf) > 0);
    ol__buf_close(&ok);
    close(fd);

    /* Random bytes, then a hang-up in the middle of a frame. */
    fd = dial();
    srand(7);
    for (int i = 0; i < 64; i++) {
        uint8_t junk[32];

        for (size_t j = 0; j < sizeof junk; j++)
            junk[j] = (uint8_t)rand();
        send_frame(fd, junk, sizeof junk);
        cr_assert(recv_frame(fd, buf, sizeof buf) > 0);
    }
    cr_assert_eq(send(fd, "\x00\x00\x01\x00\x82", 5, MSG_NOSIGNAL), 5);
    close(fd);
    expect_echo_works();
}

Test(ctl, reply_after_the_client_hung_up_is_harmless)
{
    struct ol__buf b;
    int fd = dial();

    pack_req(&b, "later", 0);
    send_frame(fd, b.base, (uint32_t)b.len);
    ol__buf_close(&b);
    /* Hang up before the handler replies (150 ms later). */
    while (atomic_load(&handled) == 0)
        usleep(1000);
    close(fd);
    for (int i = 0; i < 500 && atomic_load(&late_replies) == 0; i++)
        usleep(10000);
    cr_assert_eq(atomic_load(&late_replies), 1);
    expect_echo_works();
}

Test(ctl, requests_pending_at_close_are_dropped_safely)
{
    struct ol__buf b;
    int fd = dial();

    pack_req(&b, "hold", 0);
    send_frame(fd, b.base, (uint32_t)b.len);
    ol__buf_close(&b);
    while (atomic_load(&handled) == 0)
        usleep(1000);
    /* teardown closes the server; server_closed() then replies. */
    close(fd);
}

Test(ctl, client_times_out_and_reports_missing_sockets)
{
    char err[OL_ERRMSG_SIZE], missing[160];
    struct ol__buf b;
    void *raw;
    size_t len;

    pack_req(&b, "hold", 0);
    cr_assert_eq(ol__ctl_call(sock, b.base, b.len, &raw, &len, 200, err),
                 OL_ETIMEOUT);
    snprintf(missing, sizeof missing, "%s/none.sock", dir);
    cr_assert_eq(ol__ctl_call(missing, b.base, b.len, &raw, &len, 200, err),
                 OL_ENOTFOUND);
    cr_assert(strstr(err, "none.sock") != NULL, "%s", err);
    ol__buf_close(&b);
}

Test(ctl, a_second_server_refuses_a_live_socket)
{
    char err[OL_ERRMSG_SIZE];
    struct ol__ctl *other = NULL;
    uv_loop_t l2;

    cr_assert_eq(uv_loop_init(&l2), 0);
    cr_assert_eq(ol__ctl_start(&l2, sock, handler, NULL, &other, err),
                 OL_EEXISTS);
    cr_assert(strstr(err, "already running") != NULL, "%s", err);
    cr_assert_null(other);
    cr_assert_eq(uv_loop_close(&l2), 0);
    expect_echo_works();
}

Test(ctl, a_stale_socket_file_is_replaced)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char err[OL_ERRMSG_SIZE], stale[160], plain[160];
    struct ol__ctl *other = NULL;
    uv_loop_t l2;
    int fd;

    /* A socket file nobody listens on, as a killed node leaves it. */
    snprintf(stale, sizeof stale, "%s/stale.sock", dir);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", stale);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    cr_assert_eq(uv_loop_init(&l2), 0);
    cr_assert_eq(ol__ctl_start(&l2, stale, handler, NULL, &other, err), 0,
                 "%s", err);
    ol__ctl_close(other, NULL, NULL);
    uv_run(&l2, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&l2), 0);
    /* A regular file in the way is not deleted. */
    snprintf(plain, sizeof plain, "%s/plain", dir);
    fclose(fopen(plain, "w"));
    cr_assert_eq(uv_loop_init(&l2), 0);
    cr_assert_eq(ol__ctl_start(&l2, plain, handler, NULL, &other, err),
                 OL_EEXISTS);
    cr_assert_eq(access(plain, F_OK), 0);
    cr_assert_eq(uv_loop_close(&l2), 0);
}

Test(ctl, a_client_that_does_not_read_is_paused_then_served)
{
    static uint8_t buf[(1 << 20) + 64];
    struct ol__buf b;
    int fd = dial(), n = 40;

    pack_req(&b, "big", 0);
    /* 40 MiB of replies asked for before reading any of them. */
    for (int i = 0; i < n; i++)
        send_frame(fd, b.base, (uint32_t)b.len);
    ol__buf_close(&b);
    usleep(200000);
    expect_echo_works(); /* other clients are still served meanwhile */
    for (int i = 0; i < n; i++)
        cr_assert(recv_frame(fd, buf, sizeof buf) > (1 << 20),
                  "reply %d missing", i);
    close(fd);
}

Test(ctl, an_oversized_header_behind_a_pending_request_is_refused_later)
{
    static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
    static uint8_t junk[1 << 16];
    uint8_t buf[256];
    struct ol__buf b;
    int fd = dial();

    pack_req(&b, "later", 0);
    send_frame(fd, b.base, (uint32_t)b.len);
    ol__buf_close(&b);
    cr_assert_eq(send(fd, huge, 4, MSG_NOSIGNAL), 4);
    /* The server stops reading instead of buffering this. */
    for (int i = 0; i < 4; i++)
        send(fd, junk, sizeof junk, MSG_NOSIGNAL | MSG_DONTWAIT);
    cr_assert(recv_frame(fd, buf, sizeof buf) > 0, "no reply to 'later'");
    expect_error(fd, "OL_ETOOBIG");
    close(fd);
    expect_echo_works();
}

/* ---- limits: idle clients, busy servers, buffer budget ---- */

static int64_t ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Until now 64 clients that connected and sent nothing locked every other
 * client out, and the CLI then said no node was running. */
Test(ctl, idle_connections_do_not_lock_clients_out)
{
    int fds[OL_CTL_MAX_CONNS + 4];

    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        fds[i] = dial();
    usleep(50000);
    expect_echo_works();
    expect_echo_works();
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        close(fds[i]);
}

static void short_idle(void)
{
    limits.idle_ms = 200;
    limits.max_conns = 2;
    limits.budget = 1u << 20;
    setup();
}

static void limits_teardown(void)
{
    teardown();
    memset(&limits, 0, sizeof limits);
}

TestSuite(ctl_limits, .init = short_idle, .fini = limits_teardown,
          .timeout = 30);

Test(ctl_limits, a_silent_client_is_closed_after_the_idle_timeout)
{
    uint8_t buf[64];
    int64_t t0 = ms_now();
    int fd = dial();

    /* Half a header, then nothing. */
    cr_assert_eq(send(fd, "\x00\x00", 2, MSG_NOSIGNAL), 2);
    cr_assert_eq(recv_frame(fd, buf, sizeof buf), -1, "not closed");
    cr_expect_geq(ms_now() - t0, 150);
    close(fd);
    expect_echo_works();
}

Test(ctl_limits, a_waiting_request_is_never_timed_out)
{
    struct ol__buf b;
    uint8_t buf[256];
    int fd = dial();

    pack_req(&b, "later", 0);
    usleep(100000);
    send_frame(fd, b.base, (uint32_t)b.len); /* answered 150 ms later */
    ol__buf_close(&b);
    cr_assert(recv_frame(fd, buf, sizeof buf) > 0, "closed while waiting");
    close(fd);
}

Test(ctl_limits, busy_is_told_apart_from_not_running)
{
    char err[OL_ERRMSG_SIZE];
    struct ol__buf b;
    void *raw = NULL;
    size_t len = 0;
    int fds[2];
    int64_t t0;

    /* Both connections wait for answers, so none can be closed to make
     * room: the next client is refused as busy, not cut off. */
    pack_req(&b, "park", 0);
    for (int i = 0; i < 2; i++) {
        fds[i] = dial();
        send_frame(fds[i], b.base, (uint32_t)b.len);
    }
    while (atomic_load(&n_parked) < 2)
        usleep(1000);
    t0 = ms_now();
    cr_assert_eq(ol__ctl_call(sock, b.base, b.len, &raw, &len, 400, err),
                 OL_EBUSY, "%s", err);
    cr_expect(strstr(err, "busy") != NULL, "%s", err);
    cr_expect_geq(ms_now() - t0, 300, "gave up before its deadline");
    ol__buf_close(&b);
    for (int i = 0; i < 2; i++)
        close(fds[i]);
}

Test(ctl_limits, the_buffer_budget_is_shared_and_refusals_are_busy)
{
    static uint8_t big[(1u << 20) + 1024];
    char err[OL_ERRMSG_SIZE];
    struct ol__buf b;
    msgpack_packer pk;
    void *raw = NULL;
    size_t len = 0;

    /* One request larger than the whole budget can never be held. */
    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "op", 2);
    msgpack_pack_str_with_body(&pk, "echo", 4);
    msgpack_pack_str_with_body(&pk, "pad", 3);
    msgpack_pack_bin_with_body(&pk, big, sizeof big);
    cr_assert_eq(ol__ctl_call(sock, b.base, b.len, &raw, &len, 300, err),
                 OL_EBUSY, "%s", err);
    cr_expect(strstr(err, "MiB of control requests") != NULL, "%s", err);
    ol__buf_close(&b);
    expect_echo_works();
}
