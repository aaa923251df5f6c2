/* Unit tests for the resume queue's end: once the node has closed it,
 * effects that still arrive (its replica applies what committed while it
 * closes) must not start its idle handle again.  libuv counts a closing
 * handle that is started as active, and neither finishing the close nor
 * stopping it later takes that back: the node's loop then never ends, and
 * the process stays after logging "stopped" until the watchdog ends it. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <uv.h>

#include "runtime/node.h"
#include "runtime/resume.h"

static struct ol__node *node;

/* In the turn's I/O phase, as a batch of effects arrives: the node closes
 * the queue, and then the effects kick it (ol__node_effects). */
static void close_then_kick(uv_prepare_t *p)
{
    ol__resume_close(node);
    ol__resume_kick(node);
    uv_close((uv_handle_t *)p, NULL);
}

Test(resume, a_kick_after_close_leaves_the_loop_free_to_end)
{
    uv_prepare_t turn;
    uv_loop_t loop;

    node = calloc(1, sizeof *node);
    cr_assert_not_null(node);
    cr_assert_eq(uv_loop_init(&loop), 0);
    node->loop = &loop;
    ol__resume_init(node);
    ol__resume_kick(node);
    cr_assert(uv_loop_alive(&loop), "a kick before the close starts it");

    uv_prepare_init(&loop, &turn);
    uv_prepare_start(&turn, close_then_kick);
    for (int i = 0; i < 4 && uv_loop_alive(&loop); i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    cr_expect_not(uv_loop_alive(&loop),
                  "the loop stays alive with %u handle(s) counted active",
                  loop.active_handles);
    ol__resume_kick(node);
    cr_expect_not(uv_loop_alive(&loop),
                  "a kick after the close left the loop alive");
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_expect_eq(uv_loop_close(&loop), 0);
    free(node);
}
