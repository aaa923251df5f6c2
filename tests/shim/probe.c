/*
 * shim-probe - what a process under the fault shims sees, for the tests
 * that check the shims themselves (tests/integ/test_nemesis.c).
 *
 * It reads one command per line on stdin and answers one line on stdout:
 *   t   "hrtime NS now MS mono NS boot NS tmono NS": libuv's uv_hrtime(),
 *       the loop's uv_now() after uv_update_time(), CLOCK_MONOTONIC and
 *       CLOCK_BOOTTIME through libc, and CLOCK_MONOTONIC by the system
 *       call (the true clock, which no shim sees);
 *   s   "sync NS": how long one write() + fdatasync() of a file in the
 *       directory named by argv[1] took on the true clock;
 *   q   exit.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static int64_t ns_of(clockid_t id, int raw)
{
    struct timespec ts;

    if (raw)
        syscall(SYS_clock_gettime, id, &ts);
    else
        clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    char line[64], path[512];
    uv_loop_t loop;
    int fd = -1;

    if (argc < 2 || uv_loop_init(&loop) != 0)
        return 2;
    snprintf(path, sizeof path, "%s/probe.dat", argv[1]);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 't') {
            uv_update_time(&loop);
            printf("hrtime %" PRIu64 " now %" PRIu64 " mono %" PRId64
                   " boot %" PRId64 " tmono %" PRId64 "\n",
                   uv_hrtime(), uv_now(&loop), ns_of(CLOCK_MONOTONIC, 0),
                   ns_of(CLOCK_BOOTTIME, 0), ns_of(CLOCK_MONOTONIC, 1));
        } else if (line[0] == 's') {
            int64_t t0 = ns_of(CLOCK_MONOTONIC, 1);
            int ok = write(fd, "x", 1) == 1 && fdatasync(fd) == 0;

            printf("sync %" PRId64 " %s\n", ns_of(CLOCK_MONOTONIC, 1) - t0,
                   ok ? "ok" : "failed");
        } else if (line[0] == 'q') {
            break;
        }
    }
    close(fd);
    unlink(path);
    uv_loop_close(&loop);
    return 0;
}
