/*
 * One uv loop for a test binary, with a tick timer that fires every 10 ms
 * so that each turn of the loop returns soon: RUN_UNTIL to wait on a
 * condition with a bound, and open_handles() to count what is still open
 * besides the tick.  Included by test_transport_harness.h and
 * test_transport_raft_harness.h; the includer's setup calls loop_fx_start().
 */
#ifndef OL_TEST_UV_LOOP_FX_H
#define OL_TEST_UV_LOOP_FX_H

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <uv.h>

#include "base/err.h"
#include "base/log.h"

static uv_loop_t loop;
static uv_timer_t tick;

/* Run the loop until `cond` holds or `ms` pass; the tick timer makes each
 * turn of the loop return within 10 ms. */
#define RUN_UNTIL(cond, ms)                                                \
    do {                                                                   \
        uint64_t end_ = ol__mono_ms() + (ms);                              \
        while (!(cond) && ol__mono_ms() < end_)                            \
            uv_run(&loop, UV_RUN_ONCE);                                    \
    } while (0)

/* Ignores SIGPIPE, quiets the log to warnings, and starts the loop with
 * `tick_cb` on the 10 ms tick. */
static void loop_fx_start(uv_timer_cb tick_cb)
{
    signal(SIGPIPE, SIG_IGN);
    ol_log_set_level(OL_LOG_WARN);
    cr_assert_eq(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &tick);
    uv_timer_start(&tick, tick_cb, 10, 10);
}

static void count_handle(uv_handle_t *h, void *arg)
{
    if (h != (uv_handle_t *)&tick)
        (*(int *)arg)++;
}

/* The handles still open on the loop, the tick not counted. */
static int open_handles(void)
{
    int n = 0;

    uv_walk(&loop, count_handle, &n);
    return n;
}

/* "127.0.0.1:port" where nothing listens: a port bound and closed again.
 * (Inline: not every includer uses it.) */
static inline void loop_fx_dead_addr(char *out, size_t size)
{
    static uv_tcp_t probe;
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int len = sizeof ss;

    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &probe);
    cr_assert_eq(uv_tcp_bind(&probe, (struct sockaddr *)&sa, 0), 0);
    uv_tcp_getsockname(&probe, (struct sockaddr *)&ss, &len);
    uv_close((uv_handle_t *)&probe, NULL);
    snprintf(out, size, "127.0.0.1:%d",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
}

/* Closes the tick and the loop, which must have nothing else open. */
static void loop_fx_close(void)
{
    uv_close((uv_handle_t *)&tick, NULL);
    /* Only the tick is left to close, so this returns at once; with
     * anything else still open it could wait forever. */
    if (open_handles() == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&loop), 0, "handles left open");
}

#endif
