/*
 * slowdisk - an LD_PRELOAD shim that makes a process's disk slow on
 * command: while the control page (shimctl.h) says so, every call that
 * waits for durability waits `sync_delay_us` longer.
 *
 * What outlastd does to make data durable, and what is intercepted:
 *  - SQLite calls fdatasync()/fsync() (on the loop thread);
 *  - libuv's uv_fs_fsync and file creation call fsync() (thread pool);
 *  - libraft 0.15 writes its log with kernel AIO: io_submit(), through
 *    libc's syscall(), with RWF_NOWAIT on the loop thread.  A busy disk
 *    refuses a NOWAIT write with EAGAIN, and libraft then repeats the
 *    write from its thread pool without the flag, waiting for it.  The
 *    shim does the same: while a delay is set it refuses NOWAIT writes
 *    and delays the blocking ones, so raft appends become slow without
 *    stalling the loop on every write, as on a real slow disk;
 *  - pwritev2() with RWF_DSYNC or RWF_SYNC (libraft's fallback when kernel
 *    AIO is missing).
 * With the delay at 0 every call is forwarded untouched.  syscall() is
 * variadic: the shim forwards six argument words, as glibc's own wrapper
 * reads them, which is how the x86-64 and aarch64 calling conventions pass
 * them.
 */
#include <errno.h>
#include <linux/aio_abi.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>

#include "shim_map.h"

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif
#ifndef RWF_DSYNC
#define RWF_DSYNC 0x00000002
#endif
#ifndef RWF_SYNC
#define RWF_SYNC 0x00000004
#endif

static struct ol_shim_ctl *ctl;
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static long (*real_syscall)(long, ...);

/* Resolves the next definitions; also called lazily, since another
 * library's constructor may sync or issue a system call before ours ran. */
static void resolve(void)
{
    SHIM_NEXT(real_fsync, "fsync");
    SHIM_NEXT(real_fdatasync, "fdatasync");
    SHIM_NEXT(real_pwritev2, "pwritev2");
    SHIM_NEXT(real_syscall, "syscall");
}

__attribute__((constructor)) static void slowdisk_init(void)
{
    resolve();
    ctl = shim_map();
}

static int64_t delay_us(void)
{
    if (real_syscall == NULL)
        resolve();
    return ctl ? shim_get(&ctl->sync_delay_us) : 0;
}

static void wait_us(int64_t us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    int saved = errno;

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    errno = saved;
}

int fsync(int fd)
{
    int64_t us = delay_us();

    if (us > 0) {
        wait_us(us);
        shim_count(&ctl->syncs_delayed);
    }
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    int64_t us = delay_us();

    if (us > 0) {
        wait_us(us);
        shim_count(&ctl->syncs_delayed);
    }
    return real_fdatasync(fd);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off, int flags)
{
    int64_t us = delay_us();

    if (us > 0 && (flags & (RWF_DSYNC | RWF_SYNC))) {
        wait_us(us);
        shim_count(&ctl->syncs_delayed);
    }
    return real_pwritev2(fd, iov, n, off, flags);
}

long syscall(long nr, ...)
{
    long a[6];
    va_list ap;
    int64_t us;

    va_start(ap, nr);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    us = delay_us(); /* also resolves real_syscall */
    if (nr == SYS_io_submit && us > 0) {
        struct iocb **iocbs = (struct iocb **)a[2];
        long n = a[1];

        for (long i = 0; iocbs && i < n; i++)
            if (iocbs[i] && (iocbs[i]->aio_rw_flags & RWF_NOWAIT)) {
                shim_count(&ctl->nowait_refused);
                errno = EAGAIN;
                return -1;
            }
        wait_us(us);
        shim_count(&ctl->submits_delayed);
    }
    return real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
