/*
 * outlast-agent-host: started by outlastd, never by hand.  It closes every
 * descriptor it did not need, takes the limits and drops the privileges
 * sandbox.c can, loads the one plugin it runs from a descriptor the node
 * opened, says HELLO, and then serves batches from the node until the node
 * closes the socket (or dies: the kernel kills the host with it).
 *
 * The loop is single-threaded and blocking: poll() on the socket and on
 * the pipe the work pool signals, read whole frames, run their items,
 * write the results.  Plugin work runs on the pool's threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "base/err.h"
#include "runtime/ipc.h"
#include "agenthost.h"

/* The frame being built: header room first, then items. */
#define FRAME_PREFIX 11

static int sock = -1;
static struct ol__buf out;
static uint32_t out_items;

struct ol__buf *ahost_out(void)
{
    if (out.len == 0) {
        static const uint8_t room[FRAME_PREFIX];

        (void)ol__buf_append(&out, room, sizeof room);
    }
    return &out;
}

void ahost_item_added(void)
{
    out_items++;
}

static int write_all(const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(sock, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int ahost_flush(void)
{
    uint8_t *h = out.base;
    int rv;

    if (out_items == 0 || out.base == NULL)
        return 0;
    if (out.len - OL_IPC_HDR > OL_IPC_FRAME_MAX) {
        /* Only a plugin can make results this big (states are capped
         * well below it); the node would refuse the frame anyway. */
        fprintf(stderr, "outlast-agent-host: result frame too big\n");
        _exit(3);
    }
    ol__ipc_hdr(h, (uint32_t)(out.len - OL_IPC_HDR));
    h[4] = 0x92; /* [BATCH, [items]] */
    h[5] = OL_IPC_BATCH;
    h[6] = 0xdd; /* array32 */
    h[7] = (uint8_t)(out_items >> 24);
    h[8] = (uint8_t)(out_items >> 16);
    h[9] = (uint8_t)(out_items >> 8);
    h[10] = (uint8_t)out_items;
    rv = write_all(out.base, out.len);
    out_items = 0;
    out.len = 0;
    if (rv != 0)
        _exit(0); /* the node is gone */
    return 0;
}

static void hello(int status, const char *kind, const char *version,
                  const char *msg)
{
    struct ol__buf b;
    msgpack_packer pk;
    uint8_t h[OL_IPC_HDR];

    ol__buf_init(&b);
    msgpack_packer_init(&pk, &b, ol__buf_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint32(&pk, OL_IPC_HELLO);
    msgpack_pack_int(&pk, status);
    ol__ipc_str(&pk, kind);
    ol__ipc_str(&pk, version);
    ol__ipc_str(&pk, msg);
    if (b.base == NULL)
        _exit(4);
    ol__ipc_hdr(h, (uint32_t)b.len);
    if (write_all(h, sizeof h) != 0 || write_all(b.base, b.len) != 0)
        _exit(0);
    ol__buf_close(&b);
}

static int parse_uint(const char *s, unsigned long max, unsigned long *v)
{
    char *end;
    unsigned long n;

    errno = 0;
    n = strtoul(s, &end, 10);
    if (errno || end == s || *end || n > max)
        return -1;
    *v = n;
    return 0;
}

static int parse_args(int argc, char **argv, struct ahost_opts *o)
{
    memset(o, 0, sizeof *o);
    o->fd = o->mark_fd = o->code_fd = -1;
    o->workers = 4;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        unsigned long n;

        if (strcmp(k, "--kind") == 0)
            snprintf(o->kind, sizeof o->kind, "%s", v);
        else if (strcmp(k, "--node") == 0)
            snprintf(o->node, sizeof o->node, "%s", v);
        else if (strcmp(k, "--user") == 0)
            snprintf(o->user, sizeof o->user, "%s", v);
        else if (strcmp(k, "--source") == 0)
            snprintf(o->source, sizeof o->source, "%s", v);
        else if (strcmp(k, "--hide") == 0)
            snprintf(o->hide, sizeof o->hide, "%s", v);
        else if (parse_uint(v, 1ul << 30, &n) != 0)
            return -1;
        else if (strcmp(k, "--fd") == 0)
            o->fd = (int)n;
        else if (strcmp(k, "--mark-fd") == 0)
            o->mark_fd = (int)n;
        else if (strcmp(k, "--code-fd") == 0)
            o->code_fd = (int)n;
        else if (strcmp(k, "--parent") == 0)
            o->parent = (long)n;
        else if (strcmp(k, "--workers") == 0)
            o->workers = (unsigned)n;
        else if (strcmp(k, "--memory-mb") == 0)
            o->memory_mb = (unsigned)n;
        else if (strcmp(k, "--network") == 0)
            o->allow_network = n != 0;
        else
            return -1;
    }
    return o->fd >= 0 && o->mark_fd >= 0 && o->code_fd >= 0 && o->kind[0]
               ? 0
               : -1;
}

/* What the steps of starting return to go on; anything else is the
 * status to exit with. */
#define GO_ON (-1)

/* Tie the host to the node, keep only the descriptors it was given, and
 * map the mark page. */
static int attach(const struct ahost_opts *o, struct ol__mark **mark)
{
    const int keep[] = {0, 1, 2, o->fd, o->mark_fd, o->code_fd};

    /* Die with the node, even if it is killed with SIGKILL. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (o->parent && getppid() != o->parent)
        return 0;
    if (ahost_close_fds(keep, 6) != 0)
        return 3;
    signal(SIGPIPE, SIG_IGN);
    sock = o->fd;
    *mark = mmap(NULL, OL_MARK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                 o->mark_fd, 0);
    if (*mark == MAP_FAILED)
        return 3;
    close(o->mark_fd);
    if (ol__mark_install(*mark) != 0 || ol__mark_thread(-1) != 0)
        return 3;
    return GO_ON;
}

/* Limits, another user, no new privileges, the data dir hidden: all
 * before any plugin code runs (its constructors run in dlopen). */
static int confine(const struct ahost_opts *o)
{
    char err[OL_ERRMSG_SIZE];

    ahost_limits(o);
    if (ahost_drop_user(o, err) != 0) {
        hello(OL_EPLUGIN, o->kind, "", err);
        return 0;
    }
    /* A change of user clears the parent-death signal: set it again, and
     * make sure the node did not die in between. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (o->parent && getppid() != o->parent)
        _exit(0);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    ahost_hide(o);
    if (chdir("/") != 0)
        return 3;
    return GO_ON;
}

/* Load the plugin, shut the system calls it may not make, start the work
 * pool and say HELLO (with the failure, if any). */
static int load(const struct ahost_opts *o, struct ol__mark *mark,
                int wake[2])
{
    static struct ol__plugin plugin; /* for as long as the host runs */
    char err[OL_ERRMSG_SIZE], path[64];
    int rv;

    /* The plugin comes from a descriptor: the node copied the file it was
     * given into a private place, so nothing can change it under us. */
    snprintf(path, sizeof path, "/proc/self/fd/%d", o->code_fd);
    ol__mark_begin(&mark->main, OL_MARK_LOAD, 0, 0, 0);
    rv = ol__plugin_bind(path, o->source[0] ? o->source : NULL, o->kind,
                         &ahost_table, &plugin, err);
    ol__mark_end(&mark->main);
    close(o->code_fd);
    if (rv != 0) {
        hello(rv, o->kind, "", err);
        return 0;
    }
    if (ahost_seccomp(o, err) != 0) {
        hello(OL_EPLUGIN, o->kind, plugin.version, err);
        return 0;
    }
    if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0 ||
        ahost_svc_init(o, mark, plugin.vt, wake[1]) != 0) {
        hello(OL_ENOMEM, o->kind, plugin.version, "cannot start workers");
        return 0;
    }
    hello(0, o->kind, plugin.version, "");
    return GO_ON;
}

/* Run every whole frame in `in` and keep the rest. */
static void run_frames(struct ol__buf *in)
{
    size_t off = 0;

    while (in->len - off >= OL_IPC_HDR) {
        uint32_t len = ol__ipc_hdr_len(in->base + off);

        if (len > OL_IPC_FRAME_MAX)
            _exit(3);
        if (in->len - off - OL_IPC_HDR < len)
            break;
        if (ahost_svc_batch(in->base + off + OL_IPC_HDR, len) != 0) {
            fprintf(stderr, "outlast-agent-host: malformed batch "
                            "from the node\n");
            _exit(3);
        }
        off += OL_IPC_HDR + len;
    }
    if (off) {
        memmove(in->base, in->base + off, in->len - off);
        in->len -= off;
    }
}

/* Serve the node until it closes the socket. */
static void serve(int wake_fd) __attribute__((noreturn));

static void serve(int wake_fd)
{
    struct ol__buf in;

    ol__buf_init(&in);
    ol__buf_init(&out);
    for (;;) {
        struct pollfd pf[2] = {{sock, POLLIN, 0}, {wake_fd, POLLIN, 0}};
        uint8_t chunk[65536];
        ssize_t n;

        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(3);
        }
        if (pf[1].revents) {
            while (read(wake_fd, chunk, sizeof chunk) > 0)
                ;
            ahost_svc_work_done();
        }
        if (pf[0].revents) {
            n = read(sock, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                _exit(0); /* the node closed: nothing is owed to it */
            if (ol__buf_append(&in, chunk, (size_t)n) != 0)
                _exit(3);
            run_frames(&in);
        }
        ahost_flush();
    }
}

int main(int argc, char **argv)
{
    struct ahost_opts o;
    struct ol__mark *mark;
    int wake[2], rv;

    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr, "outlast-agent-host: started by outlastd only\n");
        return 2;
    }
    if ((rv = attach(&o, &mark)) != GO_ON || (rv = confine(&o)) != GO_ON ||
        (rv = load(&o, mark, wake)) != GO_ON)
        return rv;
    serve(wake[0]);
}
