/*
 * Child processes and scratch directories for the cluster benchmarks (see
 * cb_proc.h).  Every child is started with PR_SET_PDEATHSIG, so a
 * benchmark killed outright still takes its daemons along; an orderly exit
 * or SIGINT/SIGTERM also removes the scratch directories.
 */
#include "cb_proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

static pid_t children[CB_MAX_CHILDREN];
static char dirs[CB_MAX_DIRS][4096];
static pid_t owner_pid;

uint64_t cb_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t cb_now_ms(void)
{
    return cb_now_ns() / 1000000u;
}

void cb_sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void reg_child(pid_t pid)
{
    for (int i = 0; i < CB_MAX_CHILDREN; i++)
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    fprintf(stderr, "bench: more than %d children\n", CB_MAX_CHILDREN);
}

static void unreg_child(pid_t pid)
{
    for (int i = 0; i < CB_MAX_CHILDREN; i++)
        if (children[i] == pid)
            children[i] = 0;
}

static void cleanup_all(void)
{
    /* Only the benchmark itself cleans up, never a forked child that is
     * about to exec. */
    if (getpid() != owner_pid)
        return;
    for (int i = 0; i < CB_MAX_CHILDREN; i++)
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    for (int i = 0; i < CB_MAX_DIRS; i++)
        if (dirs[i][0]) {
            if (getenv("OL_KEEP_TMP"))
                fprintf(stderr, "bench: kept %s\n", dirs[i]);
            else
                bu_rmrf(dirs[i]);
            dirs[i][0] = '\0';
        }
}

static void on_signal(int sig)
{
    cleanup_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

void cb_cleanup_install(void)
{
    owner_pid = getpid();
    atexit(cleanup_all);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGPIPE, SIG_IGN);
}

int cb_tmpdir(const char *tag, char *out, size_t cap)
{
    const char *base = getenv("TMPDIR");

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    if ((size_t)snprintf(out, cap, "%s/%s.XXXXXX", base, tag) >= cap)
        return -1;
    if (mkdtemp(out) == NULL)
        return -1;
    for (int i = 0; i < CB_MAX_DIRS; i++)
        if (dirs[i][0] == '\0') {
            snprintf(dirs[i], sizeof dirs[i], "%s", out);
            return 0;
        }
    bu_rmrf(out);
    return -1;
}

void cb_tmpdir_remove(const char *path)
{
    for (int i = 0; i < CB_MAX_DIRS; i++)
        if (dirs[i][0] && strcmp(dirs[i], path) == 0) {
            if (getenv("OL_KEEP_TMP"))
                fprintf(stderr, "bench: kept %s\n", dirs[i]);
            else
                bu_rmrf(dirs[i]);
            dirs[i][0] = '\0';
        }
}

static pid_t spawn(char *const argv[], const char *log, int *in_fd,
                   int *out_fd, const char *ns, const char *cwd)
{
    int pin[2] = {-1, -1}, pout[2] = {-1, -1};
    char *nsargv[64] = {"ip", "netns", "exec", (char *)ns};
    pid_t pid;

    if (ns && ns[0]) {
        int k = 0;

        while (argv[k] && k + 5 < 64) {
            nsargv[4 + k] = argv[k];
            k++;
        }
        nsargv[4 + k] = NULL;
        argv = nsargv;
    }

    if (in_fd && (pipe2(pin, O_CLOEXEC) != 0 || pipe2(pout, O_CLOEXEC) != 0))
        goto fail;
    pid = fork();
    if (pid < 0)
        goto fail;
    if (pid == 0) {
        int fd = open(log ? log : "/dev/null",
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != owner_pid)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        dup2(in_fd ? pin[0] : nul, 0);
        dup2(in_fd ? pout[1] : fd, 1);
        dup2(fd, 2);
        if (cwd && chdir(cwd) != 0)
            dprintf(2, "bench: chdir %s: %s\n", cwd, strerror(errno));
        else if (argv == nsargv)
            execvp(argv[0], argv);
        else
            execv(argv[0], argv);
        dprintf(2, "bench: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (in_fd) {
        close(pin[0]);
        close(pout[1]);
        *in_fd = pin[1];
        *out_fd = pout[0];
    }
    reg_child(pid);
    return pid;
fail:
    for (int i = 0; i < 2; i++) {
        if (pin[i] >= 0)
            close(pin[i]);
        if (pout[i] >= 0)
            close(pout[i]);
    }
    return -1;
}

pid_t cb_spawn(char *const argv[], const char *log)
{
    return spawn(argv, log, NULL, NULL, NULL, NULL);
}

pid_t cb_spawn_in(const char *ns, const char *cwd, char *const argv[],
                  const char *log)
{
    return spawn(argv, log, NULL, NULL, ns, cwd);
}

pid_t cb_spawn_pipes(char *const argv[], const char *log, int *in_fd,
                     int *out_fd)
{
    return spawn(argv, log, in_fd, out_fd, NULL, NULL);
}

int cb_wan_site(int i, char *ns, char *addr)
{
    const char *sites = getenv("OL_WAN_SITES"), *p;
    const char *prefix = getenv("OL_WAN_PREFIX");
    char cmd[256], line[256], ip[64];
    size_t len;
    FILE *f;
    int k = 0;

    ns[0] = '\0';
    snprintf(addr, CB_WAN_NAME, "127.0.0.1");
    if (sites == NULL || sites[0] == '\0')
        return 0;
    for (p = sites; p && k < i; k++)
        if ((p = strchr(p, ',')) != NULL)
            p++;
    if (p == NULL || (len = strcspn(p, ",")) == 0) {
        fprintf(stderr, "bench: OL_WAN_SITES='%s' names no site %d\n",
                sites, i + 1);
        return -1;
    }
    snprintf(ns, CB_WAN_NAME, "%s%.*s", prefix ? prefix : "olwan-",
             (int)len, p);
    /* The bed gave the site its address; ask its namespace. */
    snprintf(cmd, sizeof cmd, "ip -n '%s' -o -4 addr show dev wan0 2>&1",
             ns);
    addr[0] = '\0';
    if ((f = popen(cmd, "r")) != NULL) {
        while (fgets(line, sizeof line, f)) {
            char *a = strstr(line, " inet ");

            if (a && sscanf(a, " inet %63[0-9.]", ip) == 1) {
                snprintf(addr, CB_WAN_NAME, "%s", ip);
                break;
            }
        }
        pclose(f);
    }
    if (addr[0] == '\0') {
        fprintf(stderr, "bench: OL_WAN_SITES: namespace '%s' has no wan0 "
                        "address (is the bed up? scripts/wan.sh up)\n",
                ns);
        return -1;
    }
    return 1;
}

int cb_kill(pid_t pid, int sig)
{
    int st = -1;

    if (pid <= 0)
        return -1;
    kill(pid, sig ? sig : SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    unreg_child(pid);
    return st;
}

int cb_wait(pid_t pid, int timeout_ms)
{
    uint64_t end = cb_now_ms() + (uint64_t)timeout_ms;
    int st;

    if (pid <= 0)
        return -1;
    while (cb_now_ms() < end) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            unreg_child(pid);
            return st;
        }
        cb_sleep_ms(20);
    }
    return cb_kill(pid, SIGKILL);
}

int cb_exited(pid_t pid, int *status)
{
    if (pid <= 0 || waitpid(pid, status, WNOHANG) != pid)
        return 0;
    unreg_child(pid);
    return 1;
}

double cb_proc_cpu_s(pid_t pid)
{
    char path[64], buf[2048], *p;
    unsigned long ut, st;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields 14 and 15 (utime, stime) follow the parenthesised name. */
    if ((p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int port_free(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    if (fd < 0)
        return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

int cb_ports(int n)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)cb_now_ns();

    for (int tries = 0; tries < 500; tries++) {
        int base = 20000 + (int)(rand_r(&seed) % (unsigned)(12700 - n));
        int ok = 1;

        for (int i = 0; i < n && ok; i++)
            ok = port_free(base + i);
        if (ok)
            return base;
    }
    return -1;
}

int cb_read_line(int fd, char *out, size_t cap, int timeout_ms)
{
    uint64_t end = cb_now_ms() + (uint64_t)timeout_ms;
    size_t n = 0;

    /* One byte at a time: the helpers answer a line per request, and
     * nothing may be left buffered here between requests. */
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = (int64_t)end - (int64_t)cb_now_ms();
        ssize_t r;

        if (left <= 0)
            return -1;
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        r = read(fd, out + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (out[n] == '\n') {
            out[n] = '\0';
            return (int)n;
        }
        n++;
    }
    out[n] = '\0';
    return (int)n;
}

int cb_write_str(int fd, const char *s)
{
    size_t len = strlen(s);

    while (len > 0) {
        ssize_t w = write(fd, s, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        len -= (size_t)w;
    }
    return 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

double cb_quantile(double *v, size_t n, double q)
{
    size_t k;

    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_d);
    /* Nearest rank: with 20 samples, p99 is the largest. */
    k = (size_t)ceil(q * (double)n);
    return v[k ? k - 1 : 0];
}

double cb_median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    qsort(v, n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
