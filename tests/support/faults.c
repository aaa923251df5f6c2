/*
 * Fault injection: see faults.h.
 *
 * Namespaces are made with iproute2 (`ip netns`, `ip link`), inside the
 * namespaces the test creates, so the host's own interfaces are never
 * touched.  Processes are found through /proc.
 */
#include "faults.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

/* ---- processes ---- */

#define TREE_MAX 256

/* The parent of pid and its state letter, from /proc/<pid>/stat. */
static int proc_stat(pid_t pid, pid_t *ppid, char *state)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: skip to the last
     * ')' before reading "state ppid". */
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 1, " %c %d", state, ppid) != 2)
        return -1;
    return 0;
}

/* Every live process below root (not root itself), parents before
 * children; returns how many (at most cap). */
static int descendants(pid_t root, pid_t *out, int cap)
{
    pid_t all[4096], parent[4096];
    int n_all = 0, n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL && n_all < 4096) {
        pid_t pid, pp;
        char st;

        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid = (pid_t)atoi(e->d_name);
        if (proc_stat(pid, &pp, &st) != 0)
            continue;
        all[n_all] = pid;
        parent[n_all++] = pp;
    }
    closedir(d);
    /* Breadth first from root: out[] grows as children are found. */
    for (int head = -1; head < n; head++) {
        pid_t p = head < 0 ? root : out[head];

        for (int i = 0; i < n_all && n < cap; i++)
            if (parent[i] == p)
                out[n++] = all[i];
    }
    return n;
}

static int stopped(pid_t pid)
{
    pid_t pp;
    char st = '?';

    return proc_stat(pid, &pp, &st) != 0 || st == 'T' || st == 't' ||
           st == 'Z' || st == 'X';
}

int nf_freeze(pid_t pid)
{
    pid_t seen[TREE_MAX], kids[TREE_MAX];
    int n_seen = 0, grew = 1;
    uint64_t end = td_ms() + 2000;

    if (pid <= 0 || kill(pid, SIGSTOP) != 0)
        return 0;
    n_seen = 0;
    /* A child forked while we walk is caught by the next pass; the stopped
     * parent forks no more. */
    for (int pass = 0; pass < 5 && grew; pass++) {
        int n = descendants(pid, kids, TREE_MAX);

        grew = 0;
        for (int i = 0; i < n; i++) {
            int known = 0;

            for (int j = 0; j < n_seen && !known; j++)
                known = seen[j] == kids[i];
            if (known || n_seen == TREE_MAX)
                continue;
            kill(kids[i], SIGSTOP);
            seen[n_seen++] = kids[i];
            grew = 1;
        }
    }
    /* Wait (bounded) until the kernel has stopped them all. */
    while (td_ms() < end) {
        int all = stopped(pid);

        for (int i = 0; i < n_seen && all; i++)
            all = stopped(seen[i]);
        if (all)
            break;
        td_sleep_ms(2);
    }
    return n_seen + 1;
}

int nf_thaw(pid_t pid)
{
    pid_t kids[TREE_MAX];
    int n;

    if (pid <= 0)
        return 0;
    n = descendants(pid, kids, TREE_MAX);
    for (int i = n - 1; i >= 0; i--)
        kill(kids[i], SIGCONT);
    kill(pid, SIGCONT);
    return n + 1;
}

/* ---- shims ---- */

void nf_ctl_create(struct nf_ctl *c, const char *path)
{
    int fd;

    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert(fd >= 0, "create %s: %s", path, strerror(errno));
    cr_assert_eq(ftruncate(fd, OL_SHIM_CTL_SIZE), 0, "truncate %s", path);
    /* Agent hosts run as another user and map it too. */
    (void)fchmod(fd, 0666);
    c->page = mmap(NULL, OL_SHIM_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                   fd, 0);
    close(fd);
    cr_assert(c->page != MAP_FAILED, "map %s: %s", path, strerror(errno));
    __atomic_store_n(&c->page->magic, OL_SHIM_MAGIC, __ATOMIC_RELEASE);
}

void nf_ctl_close(struct nf_ctl *c)
{
    if (c->page && c->page != MAP_FAILED)
        munmap(c->page, OL_SHIM_CTL_SIZE);
    c->page = NULL;
}

void nf_ctl_slow_disk(struct nf_ctl *c, int64_t us)
{
    __atomic_store_n(&c->page->sync_delay_us, us, __ATOMIC_RELEASE);
}

uint64_t nf_ctl_busy(struct nf_ctl *c, pid_t pid, int64_t us)
{
    uint64_t before = __atomic_load_n(&c->page->busy_spins, __ATOMIC_ACQUIRE);

    __atomic_store_n(&c->page->busy_pid, (int64_t)pid, __ATOMIC_RELEASE);
    __atomic_store_n(&c->page->busy_us, us, __ATOMIC_RELEASE);
    return before;
}

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t nf_suspend(struct nf_ctl *c, pid_t pid, int ms)
{
    int64_t t0 = mono_ns(), stopped_ns;

    nf_freeze(pid);
    td_sleep_ms(ms);
    /* Raised while the tree is still stopped: by the time it runs again
     * the real clock has moved on by more than the offset grew, so its
     * monotonic clock never goes backwards. */
    stopped_ns = mono_ns() - t0;
    __atomic_add_fetch(&c->page->mono_offset_ns, stopped_ns, __ATOMIC_ACQ_REL);
    nf_thaw(pid);
    return stopped_ns / 1000000;
}

const char *nf_preload_env(void)
{
    static char env[1200];
    const char *root = getenv("OL_BUILD_ROOT");

    if (root == NULL)
        root = "build";
    snprintf(env, sizeof env,
             "LD_PRELOAD=%s/tests/shim/olshim_slowdisk.so:"
             "%s/tests/shim/olshim_suspend.so",
             root, root);
    return env;
}

/* The WAN bed's /24 in faults.c: apart from bench/run-wan.sh's and
 * integ_wan's, so a bed made by hand never meets this one. */
#define WAN_NET "10.79.0"

/* ---- network namespaces ---- */

int nf_sh(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[512], *o = NULL;
    va_list ap;
    int rv;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    rv = td_sh(&o, "%s", cmd);
    if (out && cap) {
        size_t len = o ? strcspn(o, "\n") : 0;

        snprintf(out, cap, "%s: %.*s", cmd, (int)len, o ? o : "");
    }
    free(o);
    return rv;
}

void nf_remove_leftovers(const char *prefix)
{
    char *list = NULL, *save = NULL;
    size_t plen = strlen(prefix);

    if (td_sh(&list, "ip netns list") != 0) {
        free(list);
        return;
    }
    for (char *line = strtok_r(list, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char name[64], *end;
        long pid;

        if (sscanf(line, "%63s", name) != 1 ||
            strncmp(name, prefix, plen) != 0)
            continue;
        pid = strtol(name + plen, &end, 10);
        if (end == name + plen || *end != '-' || pid <= 0)
            continue;
        if (pid != (long)getpid() &&
            !(kill((pid_t)pid, 0) != 0 && errno == ESRCH))
            continue;
        cr_log_info("removing leftover namespace %s", name);
        (void)nf_sh(NULL, 0, "ip netns del %s", name);
    }
    free(list);
}

int nf_net_setup(struct nf_net *net, int n, const char *prefix, char *why,
                 size_t cap)
{
    char out[768];

    memset(net, 0, sizeof *net);
    cr_assert(n >= 1 && n <= NF_MAX_NODES);
    net->n = n;
    snprintf(net->prefix, sizeof net->prefix, "%s", prefix);
    nf_remove_leftovers(prefix);
    snprintf(net->ns_br, sizeof net->ns_br, "%s%d-br", prefix, (int)getpid());
    if (nf_sh(out, sizeof out, "ip netns add %s", net->ns_br) != 0) {
        snprintf(why, cap, "cannot create a network namespace (needs "
                           "CAP_SYS_ADMIN and CAP_NET_ADMIN, e.g. root): %s",
                 out);
        return -1;
    }
    net->made_br = 1;
    for (int b = 0; b < 2; b++) {
        NF_MUST("ip -n %s link add br%d type bridge", net->ns_br, b);
        NF_MUST("ip -n %s link set br%d up", net->ns_br, b);
    }
    for (int i = 0; i < n; i++) {
        snprintf(net->ns_node[i], sizeof net->ns_node[i], "%s%d-n%d", prefix,
                 (int)getpid(), i + 1);
        if (nf_sh(out, sizeof out, "ip netns add %s", net->ns_node[i]) != 0) {
            snprintf(why, cap, "cannot create a network namespace: %s", out);
            nf_net_teardown(net);
            return -1;
        }
        net->made_node[i] = 1;
        NF_MUST("ip -n %s link add v%d type veth peer name eth0 netns %s",
             net->ns_br, i + 1, net->ns_node[i]);
        NF_MUST("ip -n %s link set v%d master br0 up", net->ns_br, i + 1);
        NF_MUST("ip -n %s link set lo up", net->ns_node[i]);
        NF_MUST("ip -n %s addr add 10.214.0.%d/24 dev eth0", net->ns_node[i],
             i + 1);
        NF_MUST("ip -n %s link set eth0 up", net->ns_node[i]);
    }
    return 0;
}

void nf_net_addr(const struct nf_net *net, int i, int port, char *out,
                 size_t cap)
{
    snprintf(out, cap, "%s.%d:%d", net->wan ? WAN_NET : "10.214.0", i + 1,
             port);
}

/* Cut the WAN bed's links between the sides, heal the others. */
static void wan_split(struct nf_net *net, unsigned side)
{
    for (int i = 0; i < net->n; i++)
        for (int j = i + 1; j < net->n; j++) {
            int cut = ((side >> i) & 1) != ((side >> j) & 1),
                was = ((net->side >> i) & 1) != ((net->side >> j) & 1);

            if (cut != was)
                NF_MUST("%s %s s%d s%d", net->wan_cmd, cut ? "cut" : "heal",
                        i + 1, j + 1);
        }
    net->side = side;
}

void nf_net_split(struct nf_net *net, unsigned side)
{
    if (net->wan) {
        wan_split(net, side);
        return;
    }
    for (int i = 0; i < net->n; i++) {
        int want = (side >> i) & 1, now = (net->side >> i) & 1;

        if (want != now)
            NF_MUST("ip -n %s link set v%d master br%d", net->ns_br, i + 1, want);
    }
    net->side = side;
}

static void wan_teardown(struct nf_net *net)
{
    char out[768];

    if (nf_sh(out, sizeof out, "%s down", net->wan_cmd) != 0)
        cr_log_error("WAN bed teardown: %s", out);
    (void)nf_sh(NULL, 0, "rm -rf '%s'", net->wan_state);
    net->wan = 0;
}

void nf_net_teardown(struct nf_net *net)
{
    if (net->wan) {
        wan_teardown(net);
        return;
    }
    for (int i = 0; i < net->n; i++)
        if (net->made_node[i]) {
            (void)nf_sh(NULL, 0, "ip netns del %s", net->ns_node[i]);
            net->made_node[i] = 0;
        }
    if (net->made_br) {
        (void)nf_sh(NULL, 0, "ip netns del %s", net->ns_br);
        net->made_br = 0;
    }
}

/* ---- the WAN test bed ---- */

int nf_wan_setup(struct nf_net *net, int n, const char *prefix,
                 const char *rtt, char *why, size_t cap)
{
    const char *src = getenv("OL_SOURCE_ROOT"),
               *build = getenv("OL_BUILD_ROOT"), *tmp = getenv("TMPDIR");
    char sites[96] = "", out[768];
    size_t o = 0;
    int fd;

    memset(net, 0, sizeof *net);
    cr_assert(n >= 1 && n <= NF_MAX_NODES);
    net->n = n;
    snprintf(net->prefix, sizeof net->prefix, "%s", prefix);
    if (src == NULL || build == NULL) {
        snprintf(why, cap, "the WAN bed needs OL_SOURCE_ROOT and "
                           "OL_BUILD_ROOT (run under meson test)");
        return -1;
    }
    if (geteuid() != 0 || (fd = open("/dev/net/tun", O_RDWR)) < 0) {
        snprintf(why, cap, "the WAN bed needs root and /dev/net/tun");
        return -1;
    }
    close(fd);
    nf_remove_leftovers(prefix);
    snprintf(net->wan_state, sizeof net->wan_state, "%s/%s%d-bed",
             tmp ? tmp : "/tmp", prefix, (int)getpid());
    snprintf(net->wan_cmd, sizeof net->wan_cmd,
             "OL_WAN_PREFIX=%s%d- OL_WAN_DEV=%s%d OL_WAN_NET=%s "
             "OL_WAN_STATE='%s' OLWAN_BIN='%s/tests/olwan' sh "
             "'%s/scripts/wan.sh'",
             prefix, (int)getpid(), prefix, (int)getpid(), WAN_NET,
             net->wan_state, build, src);
    for (int i = 0; i < n; i++) {
        o += (size_t)snprintf(sites + o, sizeof sites - o, "%ss%d",
                              i ? "," : "", i + 1);
        snprintf(net->ns_node[i], sizeof net->ns_node[i], "%s%d-s%d", prefix,
                 (int)getpid(), i + 1);
    }
    net->wan = 1;
    if (nf_sh(out, sizeof out, "%s up --sites %s --rtt %s", net->wan_cmd,
              sites, rtt) != 0) {
        snprintf(why, cap, "the WAN bed did not come up: %s", out);
        wan_teardown(net);
        return -1;
    }
    (void)nf_sh(out, sizeof out, "%s rtt s1 s%d 3 | tail -1", net->wan_cmd,
                n);
    cr_log_info("WAN bed up: %s", out);
    return 0;
}
