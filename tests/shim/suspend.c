/*
 * suspend - an LD_PRELOAD shim that lets a test suspend a process the way
 * a laptop lid or a frozen VM does.  Across a system suspend the monotonic
 * clocks stop while CLOCK_BOOTTIME and CLOCK_REALTIME go on; a SIGSTOP
 * alone lets every clock run.  The test stops the process, raises
 * `mono_offset_ns` in the control page (shimctl.h) by the length of the
 * stop while it is still stopped, and continues it: from then on every
 * monotonic reading is shifted back by the time it spent stopped, so the
 * process sees its monotonic clock stand still across the stop and jump
 * only in CLOCK_BOOTTIME.
 *
 * libuv reads time through clock_gettime() in libc (uv_hrtime with
 * CLOCK_MONOTONIC, the loop's cached uv_now with CLOCK_MONOTONIC_COARSE
 * when that clock is fine enough, else CLOCK_MONOTONIC), called from
 * libuv.so through the dynamic linker, so interposing clock_gettime()
 * reaches it; glibc's vDSO fast path sits behind that symbol and is kept
 * (the shim calls the next definition, not the system call).  A caller
 * that issues the system call itself, or reads the vDSO directly, is not
 * affected: that is how the tests read the true clock beside the one the
 * node sees.
 *
 * The same page can also step the wall clock (CLOCK_REALTIME) back, as a
 * bad time server or `date -s` does, to check that nothing waits on it;
 * and make the node's loop busy: the next monotonic read on its main
 * thread (libuv's, at the top of each loop iteration) spins the CPU for a
 * while, as a loop applying a large entry does.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <time.h>
#include <unistd.h>

#include "shim_map.h"

static struct ol_shim_ctl *ctl;
static int (*real_clock_gettime)(clockid_t, struct timespec *);

__attribute__((constructor)) static void suspend_init(void)
{
    SHIM_NEXT(real_clock_gettime, "clock_gettime");
    ctl = shim_map();
}

static int is_monotonic(clockid_t id)
{
    return id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE ||
           id == CLOCK_MONOTONIC_RAW;
}

/* Spin on the CPU (the thread's own CPU clock) for busy_us, once, when
 * asked for this process's main thread. */
static void busy_spin(void)
{
    int64_t us = shim_get(&ctl->busy_us), start, t;
    struct timespec cpu;

    if (us <= 0 || shim_get(&ctl->busy_pid) != (int64_t)getpid() ||
        gettid() != getpid() ||
        !__atomic_compare_exchange_n(&ctl->busy_us, &us, 0, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    real_clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
    start = (int64_t)cpu.tv_sec * 1000000 + cpu.tv_nsec / 1000;
    do {
        real_clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
        t = (int64_t)cpu.tv_sec * 1000000 + cpu.tv_nsec / 1000;
    } while (t - start < us);
    shim_count(&ctl->busy_spins);
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    int64_t off;
    int rv;

    /* Another library's constructor may read the clock before ours ran. */
    if (real_clock_gettime == NULL)
        SHIM_NEXT(real_clock_gettime, "clock_gettime");
    if (ctl != NULL && is_monotonic(id))
        busy_spin();
    rv = real_clock_gettime(id, ts);

    if (rv != 0 || ctl == NULL)
        return rv;
    if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) {
        off = shim_get(&ctl->wall_offset_ns);
        if (off != 0) {
            int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec - off;

            ts->tv_sec = (time_t)(ns / 1000000000);
            ts->tv_nsec = (long)(ns % 1000000000);
            shim_count(&ctl->wall_shifted);
        }
        return rv;
    }
    if (!is_monotonic(id))
        return rv;
    off = shim_get(&ctl->mono_offset_ns);
    if (off > 0) {
        int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec - off;

        if (ns < 0)
            ns = 0;
        ts->tv_sec = (time_t)(ns / 1000000000);
        ts->tv_nsec = (long)(ns % 1000000000);
        shim_count(&ctl->clock_shifted);
    }
    return rv;
}
