/* Unit tests for the plugin work pool and step marks: work runs on the
 * pool's own threads with its agent marked, completions are handed back,
 * and a pool whose worker never returns can still be let go. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/mark.h"
#include "runtime/wpool.h"

static struct ol__mark mark;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int notified;
static volatile int release;

static void notify(void *data)
{
    (void)data;
    pthread_mutex_lock(&mu);
    notified++;
    pthread_mutex_unlock(&mu);
}

struct job {
    pthread_t ran_on;
    uint32_t seen_phase;
    uint32_t seen_slot;
    int index;
};

static void run(void *arg)
{
    struct job *j = arg;

    j->ran_on = pthread_self();
    /* The worker's slot names this work while it runs. */
    for (int i = 0; i < OL_MARK_WORKERS; i++) {
        struct ol__mark_slot s;

        if (ol__mark_read(&mark.worker[i], &s) == 0 &&
            s.phase == OL_MARK_WORK && s.slot == 40u + (uint32_t)j->index) {
            j->seen_phase = s.phase;
            j->seen_slot = s.slot;
        }
    }
}

Test(wpool, work_runs_off_the_caller_with_its_agent_marked)
{
    struct ol__wpool *p;
    struct job jobs[16];
    struct ol__witem *it;
    int done = 0;

    ol__mark_init(&mark);
    cr_assert_eq(ol__wpool_create(3, &mark, notify, NULL, &p), 0);
    for (int i = 0; i < 16; i++) {
        it = calloc(1, sizeof *it);
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].index = i;
        it->fn = run;
        it->arg = &jobs[i];
        it->slot = 40u + (uint32_t)i;
        ol__wpool_submit(p, it);
    }
    for (int tries = 0; done < 16 && tries < 5000; tries++) {
        struct ol__witem *next;

        for (it = ol__wpool_take(p); it; it = next) {
            next = it->next;
            done++;
            free(it);
        }
        usleep(1000);
    }
    cr_assert_eq(done, 16);
    for (int i = 0; i < 16; i++) {
        cr_expect(!pthread_equal(jobs[i].ran_on, pthread_self()));
        cr_expect_eq(jobs[i].seen_phase, OL_MARK_WORK);
        cr_expect_eq(jobs[i].seen_slot, 40u + (uint32_t)i);
    }
    cr_expect_geq(notified, 1);
    cr_expect_eq(ol__wpool_busy(p), 0);
    ol__wpool_destroy(p);
}

static void stuck(void *arg)
{
    (void)arg;
    while (!release)
        usleep(1000);
}

Test(wpool, a_worker_that_never_returns_does_not_hold_up_destroy)
{
    struct ol__wpool *p;
    struct ol__witem *it = calloc(1, sizeof *it);

    cr_assert_eq(ol__wpool_create(1, NULL, NULL, NULL, &p), 0);
    it->fn = stuck;
    ol__wpool_submit(p, it);
    usleep(20000);
    ol__wpool_destroy(p); /* returns after its grace period */
    release = 1;
    usleep(20000); /* let the worker finish and free the pool */
}

Test(wpool, marks_read_consistently)
{
    struct ol__mark_slot s;

    ol__mark_init(&mark);
    ol__mark_begin(&mark.main, OL_MARK_HANDLE, 3, 4, 5);
    cr_assert_eq(ol__mark_read(&mark.main, &s), 0);
    cr_expect_eq(s.phase, OL_MARK_HANDLE);
    cr_expect_eq(s.slot, 3);
    cr_expect_eq(s.gen, 4);
    cr_expect_eq(s.event, 5);
    ol__mark_end(&mark.main);
    cr_assert_eq(ol__mark_read(&mark.main, &s), 0);
    cr_expect_eq(s.phase, OL_MARK_IDLE);
    /* A slot caught mid-write is not read. */
    mark.main.count++;
    cr_expect_neq(ol__mark_read(&mark.main, &s), 0);
    mark.main.count++;
}
