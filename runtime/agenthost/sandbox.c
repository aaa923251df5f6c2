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
 *    process's memory, and signals to any process but itself;
 *  - with Landlock (Linux 5.13 and later): every access beneath the
 *    node's data directory (its key, database, control socket and the
 *    other plugins' code) but to its own plugin file.  Landlock grants
 *    rather than denies, so the host is granted everything beside the
 *    path to the data directory, level by level: entries that appear
 *    later directly in those directories (/, /var, /var/lib) are out of
 *    its reach, as is listing them.
 * What it keeps: the files its user may read elsewhere.  Without Landlock
 * (an older kernel, or the system call filtered) a host that runs as the
 * node's own user could open the node's files by path: run outlastd as
 * root (the hosts then run as `host_user`) or as a user that owns nothing
 * but its data directory.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/err.h"
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

/* ---- Landlock ---- */

/* Rights newer than the headers this may be built with. */
#ifndef LANDLOCK_ACCESS_FS_REFER
#define LANDLOCK_ACCESS_FS_REFER (1ULL << 13)
#endif
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define LL_FS_V1 ((1ULL << 13) - 1) /* EXECUTE .. MAKE_SYM */
#define LL_FILE_RIGHTS                                                     \
    (LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |          \
     LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |          \
     LANDLOCK_ACCESS_FS_IOCTL_DEV)
/* A directory with more entries than this beside the data directory's
 * path is not walked: the host runs without Landlock instead. */
#define LL_MAX_RULES 20000

struct ll {
    int fd;            /* the ruleset */
    uint64_t handled;  /* rights this kernel knows, all restricted */
    unsigned rules;
};

static int ll_grant_fd(struct ll *l, int fd, uint64_t rights)
{
    struct landlock_path_beneath_attr pb = {0};

    pb.allowed_access = rights & l->handled;
    pb.parent_fd = fd;
    if (pb.allowed_access == 0)
        return 0;
    l->rules++;
    return (int)syscall(__NR_landlock_add_rule, l->fd,
                        LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
}

/* Do the paths nest, one in the other (or are they the same)? */
static int nested(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), n = la < lb ? la : lb;

    if (strncmp(a, b, n) != 0)
        return 0;
    if (la == lb)
        return 1;
    /* "/" nests everything; otherwise the longer goes on with a '/'. */
    return n == 1 || (la > lb ? a[n] : b[n]) == '/';
}

/* Grant every entry of `dir` but `skip` (the next step towards the
 * hidden directory), and whatever a symlink among them leads to unless
 * that nests with `hide`. */
static int ll_grant_beside(struct ll *l, const char *dir, const char *skip,
                           const char *hide)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int rv = 0;

    /* A directory this user may not list: what lies in it stays out of
     * reach (the host could only have guessed its names). */
    if (d == NULL)
        return errno == EACCES ? 0 : -1;
    while (rv == 0 && (e = readdir(d)) != NULL) {
        char path[PATH_MAX], real[PATH_MAX];
        struct stat st;
        int fd;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, skip) == 0)
            continue;
        if (l->rules >= LL_MAX_RULES) {
            rv = -1;
            break;
        }
        if (snprintf(path, sizeof path, "%s/%s",
                     strcmp(dir, "/") == 0 ? "" : dir,
                     e->d_name) >= (int)sizeof path)
            continue;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISLNK(st.st_mode) &&
            (realpath(path, real) == NULL || nested(real, hide)))
            continue;
        fd = open(path, O_PATH | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (fstat(fd, &st) == 0)
            rv = ll_grant_fd(l, fd, S_ISDIR(st.st_mode) ? l->handled
                                                       : LL_FILE_RIGHTS);
        close(fd);
    }
    closedir(d);
    return rv;
}

void ahost_hide(const struct ahost_opts *o)
{
    struct landlock_ruleset_attr attr;
    struct ll l = {-1, LL_FS_V1, 0};
    char dir[PATH_MAX], *p;
    long abi;
    const char *why = NULL;

    if (o->hide[0] != '/' || o->hide[1] == '\0')
        return;
    abi = syscall(__NR_landlock_create_ruleset, NULL, 0,
                  LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 1) {
        fprintf(stderr,
                "outlast-agent-host: Landlock unavailable (%s); plugin '%s' "
                "can reach the node's data directory by path if its user "
                "may\n",
                strerror(errno), o->kind);
        return;
    }
    if (abi >= 2)
        l.handled |= LANDLOCK_ACCESS_FS_REFER;
    if (abi >= 3)
        l.handled |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        l.handled |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    memset(&attr, 0, sizeof attr);
    attr.handled_access_fs = l.handled;
    /* The first member is all an older kernel or header knows. */
    l.fd = (int)syscall(__NR_landlock_create_ruleset, &attr,
                        sizeof attr.handled_access_fs, 0);
    if (l.fd < 0) {
        why = "create a ruleset";
        goto out;
    }
    /* Walk down: "/" beside "var", "/var" beside "lib", ... */
    snprintf(dir, sizeof dir, "/");
    for (const char *c = o->hide + 1; *c;) {
        char step[NAME_MAX + 1];
        size_t n = strcspn(c, "/");

        if (n == 0 || n > NAME_MAX) {
            why = "read the data directory's path";
            goto out;
        }
        memcpy(step, c, n);
        step[n] = '\0';
        if (ll_grant_beside(&l, dir, step, o->hide) != 0) {
            why = "grant what lies beside the data directory";
            goto out;
        }
        p = dir + strlen(dir);
        if (snprintf(p, sizeof dir - (size_t)(p - dir), "%s%s",
                     strcmp(dir, "/") == 0 ? "" : "/",
                     step) >= (int)(sizeof dir - (size_t)(p - dir))) {
            why = "read the data directory's path";
            goto out;
        }
        c += n;
        while (*c == '/')
            c++;
    }
    /* The plugin is loaded from its copy under the data directory. */
    if (ll_grant_fd(&l, o->code_fd,
                    LANDLOCK_ACCESS_FS_READ_FILE |
                        LANDLOCK_ACCESS_FS_EXECUTE) != 0) {
        why = "grant the plugin file";
        goto out;
    }
    if (syscall(__NR_landlock_restrict_self, l.fd, 0) != 0)
        why = "restrict itself";
out:
    if (why)
        fprintf(stderr,
                "outlast-agent-host: Landlock: cannot %s (%s); plugin '%s' "
                "runs without it\n",
                why, strerror(errno), o->kind);
    if (l.fd >= 0)
        close(l.fd);
}

/* ---- seccomp ---- */

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
