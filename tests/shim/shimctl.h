/*
 * The control page shared by the fault-injection shims (tests/shim/,
 * loaded into outlastd with LD_PRELOAD) and the tests that drive them
 * (tests/support/faults.c).
 *
 * The test creates one page-sized file per node, fills in `magic` and
 * names the file in the node's environment (OL_SHIM_CTL).  Each shim maps
 * the file shared when the process starts and reads the settings on every
 * intercepted call, so the test changes them while the node runs by
 * storing into its own mapping.  The shims count what they did in the
 * same page, which lets a test check that a fault really took effect.
 * Every field is one aligned 64-bit word, read and written atomically.
 */
#ifndef OL_TEST_SHIMCTL_H
#define OL_TEST_SHIMCTL_H

#include <stdint.h>

#define OL_SHIM_CTL_ENV "OL_SHIM_CTL"
#define OL_SHIM_MAGIC 0x316c7463686f6c01ull
#define OL_SHIM_CTL_SIZE 4096

struct ol_shim_ctl {
    uint64_t magic; /* OL_SHIM_MAGIC once the test has set the page up */

    /* slowdisk: every fsync(), fdatasync(), durable pwritev2() and raft
     * write submitted with io_submit() waits this long first; 0: none.
     * While it is set, io_submit() of a write flagged RWF_NOWAIT fails
     * with EAGAIN, as it does on a congested disk, so libraft takes its
     * blocking path through the thread pool (where the wait happens)
     * instead of kernel AIO on the loop thread. */
    int64_t sync_delay_us;

    /* suspend: subtracted from CLOCK_MONOTONIC, CLOCK_MONOTONIC_COARSE and
     * CLOCK_MONOTONIC_RAW.  The test raises it by the length of a SIGSTOP
     * while the process is stopped, so on SIGCONT the monotonic clock has
     * not moved across the stop while CLOCK_BOOTTIME and CLOCK_REALTIME
     * have: what a process sees across a system suspend. */
    int64_t mono_offset_ns;

    /* suspend: subtracted from CLOCK_REALTIME and CLOCK_REALTIME_COARSE:
     * a positive value steps the wall clock back, as a bad NTP server or
     * an operator's `date -s` does. */
    int64_t wall_offset_ns;

    /* Written by the shims. */
    uint64_t syncs_delayed;   /* fsync/fdatasync/pwritev2 calls delayed */
    uint64_t submits_delayed; /* io_submit() calls delayed */
    uint64_t nowait_refused;  /* RWF_NOWAIT writes refused with EAGAIN */
    uint64_t clock_shifted;   /* monotonic reads shifted by a nonzero offset */
    uint64_t wall_shifted;    /* wall clock reads shifted likewise */
    uint64_t loaded;          /* processes that mapped the page */

    /* suspend: the next monotonic clock read on the main thread of
     * process `busy_pid` first spins the CPU for `busy_us` (a loop busy
     * with its own work, not a stopped process), then clears busy_us.
     * The test sets busy_pid before busy_us. */
    int64_t busy_pid;
    int64_t busy_us;
    uint64_t busy_spins;      /* spins done */
};

#endif
