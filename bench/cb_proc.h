/*
 * Processes for the cluster benchmarks: children that cannot outlive the
 * benchmark, free loopback ports, CPU time of a child, and a cleanup list
 * so that every process and directory a benchmark started is gone when it
 * exits, on failure and on SIGINT/SIGTERM too.
 */
#ifndef OL_BENCH_CB_PROC_H
#define OL_BENCH_CB_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CB_MAX_CHILDREN 64
#define CB_MAX_DIRS 8

/* CLOCK_MONOTONIC in ns / us / ms. */
uint64_t cb_now_ns(void);
uint64_t cb_now_ms(void);
void cb_sleep_ms(unsigned ms);

/* Install the exit and signal handlers that kill every registered child
 * and remove every registered directory.  Call once, first. */
void cb_cleanup_install(void);

/* A fresh directory under $TMPDIR (or /tmp), removed at exit.  0 or -1. */
int cb_tmpdir(const char *tag, char *out, size_t cap);

/* Remove a directory registered by cb_tmpdir now (and unregister it). */
void cb_tmpdir_remove(const char *path);

/*
 * Start argv[0] (a path) with stdout and stderr appended to `log` (NULL:
 * /dev/null) and stdin from /dev/null.  The child gets SIGKILL if the
 * benchmark dies, and is registered for cleanup.  Returns the pid or -1.
 */
pid_t cb_spawn(char *const argv[], const char *log);

/* Like cb_spawn, in network namespace `ns` (`ip netns exec NS`, which
 * execs in place: the pid is the program's) when ns is not NULL or "", and
 * in directory `cwd` when that is not NULL. */
pid_t cb_spawn_in(const char *ns, const char *cwd, char *const argv[],
                  const char *log);

/*
 * The WAN test bed (scripts/wan.sh), opt-in: with OL_WAN_SITES=a,b,c in
 * the environment, node/member i runs in namespace
 * ${OL_WAN_PREFIX:-olwan-}<site i> at the address the bed gave that site
 * (its wan0's IPv4 address).  Returns 1 with ns and addr filled in, 0
 * when OL_WAN_SITES is unset (ns "", addr "127.0.0.1"), -1 with a
 * message on stderr when it names fewer than i + 1 sites or the site's
 * namespace is not up.  Both buffers hold CB_WAN_NAME bytes.
 */
#define CB_WAN_NAME 64
int cb_wan_site(int i, char *ns, char *addr);

/* Like cb_spawn, with pipes: *in_fd writes to the child's stdin and
 * *out_fd reads its stdout (both close-on-exec in the parent).  stderr goes
 * to `log`. */
pid_t cb_spawn_pipes(char *const argv[], const char *log, int *in_fd,
                     int *out_fd);

/* SIGKILL (or `sig`) and reap; unregisters.  Returns the wait status or
 * -1.  NULL-safe for pid <= 0. */
int cb_kill(pid_t pid, int sig);

/* Reap without signalling, waiting at most timeout_ms; SIGKILL after.
 * Returns the wait status. */
int cb_wait(pid_t pid, int timeout_ms);

/* Has the child exited?  (Reaps it, unregisters, fills *status.) */
int cb_exited(pid_t pid, int *status);

/* CPU seconds (user + system) a live process has used; -1 if unreadable. */
double cb_proc_cpu_s(pid_t pid);

/* `n` consecutive free TCP ports on 127.0.0.1 below the ephemeral range,
 * so an outgoing connection never takes one between a kill and a
 * restart.  Returns the first or -1. */
int cb_ports(int n);

/* Read one line (without the newline) from fd, waiting at most
 * timeout_ms.  Returns its length, or -1 on EOF, error or timeout. */
int cb_read_line(int fd, char *out, size_t cap, int timeout_ms);

/* Write the whole string.  0 or -1. */
int cb_write_str(int fd, const char *s);

/* Median and a quantile of `n` doubles (sorted in place). */
double cb_median(double *v, size_t n);
double cb_quantile(double *v, size_t n, double q);

#endif
