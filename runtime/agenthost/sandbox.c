/*
 * What an agent host gives up before it runs plugin code:
 *  - every file descriptor but stdio, its socket, its step-mark page and
 *    the plugin file (the node opens nothing else for it, and anything
 *    inherited by mistake is closed here);
 *  - core dumps, and memory past the configured data limit;
 *  - root: a host started by a root node switches to an unprivileged
 *    user (default "nobody") before the plugin is loaded;
 *  - new privileges (no setuid binary can give them back);
 *  - with seccomp: network sockets (only AF_UNIX, unless the plugin is
 *    allowed the network), ptrace and reading or writing another
 *    process's memory, and signals to any process but itself.
 * What it keeps: the files its user may read, so a host that runs as the
 * node's own user could open the node's files by path.  Run outlastd as
 * root (the hosts then run as `host_user`) or as a user that owns nothing
 * but its data directory.
 */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../err.h"
#include "agenthost.h"

int ahost_close_fds(const int *keep, int n_keep)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int fds[1024], n = 0;

    if (d == NULL) {
        /* No /proc: close the first few thousand the slow way. */
        for (int fd = 3; fd < 4096; fd++) {
            int k = 0;

            for (int i = 0; i < n_keep; i++)
                k |= keep[i] == fd;
            if (!k)
                close(fd);
        }
        return 0;
    }
    while ((e = readdir(d)) != NULL && n < (int)(sizeof fds / sizeof fds[0])) {
        int fd = atoi(e->d_name), k = e->d_name[0] < '0' ||
                                      e->d_name[0] > '9' || fd == dirfd(d);

        for (int i = 0; i < n_keep; i++)
            k |= keep[i] == fd;
        if (!k)
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        close(fds[i]);
    return n == (int)(sizeof fds / sizeof fds[0]) ? -1 : 0;
}

void ahost_limits(const struct ahost_opts *o)
{
    struct rlimit rl = {0, 0};

    setrlimit(RLIMIT_CORE, &rl);
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer reserves terabytes of shadow memory up front; a
     * data limit would fail every allocation after it. */
    (void)o;
#else
    if (o->memory_mb) {
        rl.rlim_cur = rl.rlim_max = (rlim_t)o->memory_mb << 20;
        setrlimit(RLIMIT_DATA, &rl);
    }
#endif
}

int ahost_drop_user(const struct ahost_opts *o, char *errmsg)
{
    struct passwd *pw;

    if (geteuid() != 0 || o->user[0] == '\0')
        return 0;
    pw = getpwnam(o->user);
    if (pw == NULL) {
        ol__errf(errmsg, "host_user '%s' does not exist", o->user);
        return OL_ECONFIG;
    }
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        ol__errf(errmsg, "cannot switch to host_user '%s': %s", o->user,
                 strerror(errno));
        return OL_EUNAUTH;
    }
    return 0;
}

#if defined(__x86_64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_AARCH64
#endif

#ifdef AUDIT_ARCH_HERE

#define LD_W(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define JEQ(k, t, f) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (t), (f))
#define JGE(k, t, f) BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (k), (t), (f))
#define RET(k) BPF_STMT(BPF_RET | BPF_K, (k))
#define ALLOW RET(SECCOMP_RET_ALLOW)
#define DENY RET(SECCOMP_RET_ERRNO | EPERM)
#define NR offsetof(struct seccomp_data, nr)
#define ARG0 offsetof(struct seccomp_data, args[0])

int ahost_seccomp(const struct ahost_opts *o, char *errmsg)
{
    uint32_t self = (uint32_t)getpid();
    uint32_t sock_nr = o->allow_network ? 0xffffffffu : __NR_socket;
    struct sock_filter f[] = {
        LD_W(offsetof(struct seccomp_data, arch)),
        JEQ(AUDIT_ARCH_HERE, 1, 0),
        RET(SECCOMP_RET_KILL_PROCESS),
        LD_W(NR),
#if defined(__x86_64__)
        JGE(0x40000000u, 0, 1), /* x32 calls */
        DENY,
#endif
        JEQ(__NR_ptrace, 0, 1),
        DENY,
        JEQ(__NR_process_vm_readv, 0, 1),
        DENY,
        JEQ(__NR_process_vm_writev, 0, 1),
        DENY,
        JEQ(__NR_pidfd_open, 0, 1),
        DENY,
        JEQ(__NR_rt_sigqueueinfo, 0, 1),
        DENY,
        JEQ(__NR_tkill, 0, 1),
        DENY,
        /* kill and tgkill: only this process (0 or -self: its group, of
         * which it is the only member). */
        JEQ(__NR_kill, 1, 0),
        JEQ(__NR_tgkill, 0, 6),
        LD_W(ARG0),
        JEQ(self, 3, 0),
        JEQ(0, 2, 0),
        JEQ((uint32_t)-(int32_t)self, 1, 0),
        DENY,
        ALLOW,
        /* socket: AF_UNIX only. */
        JEQ(sock_nr, 0, 4),
        LD_W(ARG0),
        JEQ(AF_UNIX, 1, 0),
        RET(SECCOMP_RET_ERRNO | EACCES),
        ALLOW,
        ALLOW,
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};

    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        /* A kernel without seccomp: say so once, run without it. */
        fprintf(stderr,
                "outlast-agent-host: seccomp unavailable (%s); plugin "
                "'%s' runs without a syscall filter\n",
                strerror(errno), o->kind);
        (void)errmsg;
    }
    return 0;
}

#else

int ahost_seccomp(const struct ahost_opts *o, char *errmsg)
{
    (void)o;
    (void)errmsg;
    return 0;
}

#endif
