/*
 * olwan: the forwarder of the WAN test bed (scripts/wan.sh).  It makes
 * one TUN device per emulated site; the script moves each into the site's
 * network namespace, where it carries the bed's /24.  An IPv4 packet read
 * from site i's device goes, after link (i, j)'s one-way delay (half its
 * round trip) plus a uniform 0..jitter, to the device of site j, the one
 * its destination address names (site k is <net>.k, k from 1).
 *
 * Each direction of a link is a FIFO: a packet is released no earlier
 * than the one before it, so jitter never reorders.  A packet is lost
 * with the link's probability (a PRNG per direction, seeded from --seed,
 * so a run's draws repeat), dropped when its queue is full, and dropped
 * when the link is cut, including packets already in flight.
 *
 * Links can change while it runs (olwan_conf.c): the links file, --links,
 * is read at start and again on SIGUSR1 or SIGHUP.  Its lines are
 *     SITE SITE [rtt=MS] [jitter=MS] [loss=PCT] [cut]
 * and override the command line's values for that link; a link the file
 * no longer names goes back to them.  A file that does not parse leaves
 * the table as it was and says which line is wrong.  SIGUSR2 prints the
 * counters; SIGTERM and SIGINT print them and exit.
 *
 * Only libc: one thread, ppoll() on the devices with the earliest release
 * as its timeout, signals unblocked only inside ppoll().
 *
 * `olwan --probe ADDR` measures a round trip without ping (olwan_probe.c);
 * a TCP SYN to a closed port on ADDR comes back as a RST one round trip
 * later, so connect() fails after exactly that.  wan.sh's `rtt` runs it
 * in a site's namespace.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "olwan.h"

static volatile sig_atomic_t got_stop, got_reload, got_dump;

static void on_signal(int sig)
{
    if (sig == SIGUSR1 || sig == SIGHUP)
        got_reload = 1;
    else if (sig == SIGUSR2)
        got_dump = 1;
    else
        got_stop = 1;
}

uint64_t olwan__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: small, and good enough for loss and jitter draws. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

/* ---- devices and packets ---- */

static int tun_open(const char *name, uint32_t mtu)
{
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC), s;

    if (fd < 0) {
        fprintf(stderr, "olwan: open /dev/net/tun: %s\n", strerror(errno));
        return -1;
    }
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
        fprintf(stderr, "olwan: create TUN device '%s': %s\n", name,
                strerror(errno));
        close(fd);
        return -1;
    }
    /* The packet buffers are `mtu` bytes: the device must not send more. */
    s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifr.ifr_mtu = (int)mtu;
    if (s < 0 || ioctl(s, SIOCSIFMTU, &ifr) != 0) {
        fprintf(stderr, "olwan: set the MTU of '%s' to %u: %s\n", name, mtu,
                strerror(errno));
        if (s >= 0)
            close(s);
        close(fd);
        return -1;
    }
    close(s);
    return fd;
}

static struct pkt *pkt_get(struct wan *w)
{
    struct pkt *p = w->free_list;

    if (p) {
        w->free_list = p->next;
        return p;
    }
    return malloc(sizeof *p + w->mtu);
}

static void pkt_put(struct wan *w, struct pkt *p)
{
    p->next = w->free_list;
    w->free_list = p;
}

/* The site an IPv4 packet is for, or -1. */
static int dest_of(struct wan *w, const struct pkt *p)
{
    uint32_t dst;

    if (p->len < 20 || (p->data[0] >> 4) != 4) {
        if (p->len >= 1 && (p->data[0] >> 4) != 4)
            w->not_ipv4++;
        else
            w->short_pkt++;
        return -1;
    }
    dst = (uint32_t)p->data[16] << 24 | (uint32_t)p->data[17] << 16 |
          (uint32_t)p->data[18] << 8 | p->data[19];
    if ((dst & 0xffffff00u) != w->net || (dst & 0xff) < 1 ||
        (int)(dst & 0xff) > w->n) {
        w->unroutable++;
        return -1;
    }
    return (int)(dst & 0xff) - 1;
}

/* Queue packet p from site i for its destination, or drop it. */
static void enqueue(struct wan *w, int i, struct pkt *p, uint64_t now)
{
    int j = dest_of(w, p);
    const struct link_cfg *c;
    struct dir *d;
    uint64_t due;

    if (j < 0 || j == i) {
        w->unroutable += j == i;
        pkt_put(w, p);
        return;
    }
    c = &w->cfg[i][j];
    d = &w->d[i][j];
    if (c->cut) {
        d->cut++;
        pkt_put(w, p);
        return;
    }
    if (c->loss_pct > 0 && rng_unit(&d->rng) * 100.0 < c->loss_pct) {
        d->lost++;
        pkt_put(w, p);
        return;
    }
    if (d->depth >= w->queue_cap) {
        d->full++;
        pkt_put(w, p);
        return;
    }
    due = now + (uint64_t)(c->rtt_ms * 500000.0);
    if (c->jitter_ms > 0)
        due += (uint64_t)(rng_unit(&d->rng) * c->jitter_ms * 1e6);
    /* FIFO per direction: jitter delays, never reorders. */
    if (due < d->last_due_ns)
        due = d->last_due_ns;
    d->last_due_ns = due;
    p->due_ns = due;
    p->next = NULL;
    if (d->tail)
        d->tail->next = p;
    else
        d->head = p;
    d->tail = p;
    if (++d->depth > d->max_depth)
        d->max_depth = d->depth;
}

/* Read what site i sent.  0, or -1 once its device is gone (its
 * namespace was deleted): the bed is being taken down. */
static int read_site(struct wan *w, int i)
{
    for (int k = 0; k < READ_BURST; k++) {
        struct pkt *p = pkt_get(w);
        ssize_t r;

        if (p == NULL) {
            fprintf(stderr, "olwan: out of memory\n");
            return 0;
        }
        r = read(w->fd[i], p->data, w->mtu);
        if (r <= 0) {
            int gone = r == 0 || (errno != EAGAIN && errno != EINTR);

            pkt_put(w, p);
            if (gone)
                fprintf(stderr, "olwan: device '%s' is gone (%s); "
                                "exiting\n",
                        w->dev[i], r == 0 ? "end of file" : strerror(errno));
            return gone ? -1 : 0;
        }
        p->len = (uint32_t)r;
        enqueue(w, i, p, olwan__now_ns());
    }
    return 0;
}

/* Write every packet that is due; the earliest release still waiting,
 * or UINT64_MAX. */
static uint64_t release_due(struct wan *w)
{
    uint64_t now = olwan__now_ns(), next = UINT64_MAX;

    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < w->n; j++) {
            struct dir *d = &w->d[i][j];
            struct pkt *p;

            while ((p = d->head) != NULL && p->due_ns <= now) {
                d->head = p->next;
                if (d->head == NULL)
                    d->tail = NULL;
                d->depth--;
                /* A cut drops what was already on the wire too. */
                if (w->cfg[i][j].cut)
                    d->cut++;
                else if (write(w->fd[j], p->data, p->len) != (ssize_t)p->len)
                    w->write_err++;
                else {
                    d->fwd++;
                    d->bytes += p->len;
                }
                pkt_put(w, p);
            }
            if (d->head && d->head->due_ns < next)
                next = d->head->due_ns;
        }
    return next;
}

static void print_counters(const struct wan *w)
{
    printf("olwan: link          rtt_ms jitter loss%%  cut  forwarded "
           "bytes        lost   cut_drop  full  max_queue\n");
    for (int i = 0; i < w->n; i++)
        for (int j = 0; j < w->n; j++) {
            const struct dir *d = &w->d[i][j];
            const struct link_cfg *c = &w->cfg[i][j];
            char name[2 * NAME_MAX_LEN + 4];

            if (i == j)
                continue;
            snprintf(name, sizeof name, "%s>%s", w->site[i], w->site[j]);
            printf("olwan: %-15s %6.1f %6.1f %5.1f %4s %9" PRIu64
                   " %-12" PRIu64 " %6" PRIu64 " %9" PRIu64 " %5" PRIu64
                   " %9u\n",
                   name, c->rtt_ms, c->jitter_ms, c->loss_pct,
                   c->cut ? "yes" : "no", d->fwd, d->bytes, d->lost, d->cut,
                   d->full, d->max_depth);
        }
    printf("olwan: dropped: %" PRIu64 " not IPv4, %" PRIu64
           " not for a site, %" PRIu64 " short; %" PRIu64 " write errors\n",
           w->not_ipv4, w->unroutable, w->short_pkt, w->write_err);
    fflush(stdout);
}

/* Close the devices (they vanish with the last descriptor) and free
 * every packet, queued or spare. */
static void free_all(struct wan *w)
{
    struct pkt *p;

    for (int i = 0; i < w->n; i++) {
        for (int j = 0; j < w->n; j++)
            while ((p = w->d[i][j].head) != NULL) {
                w->d[i][j].head = p->next;
                free(p);
            }
        close(w->fd[i]);
    }
    while ((p = w->free_list) != NULL) {
        w->free_list = p->next;
        free(p);
    }
}

static int write_ready(const char *path)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || fprintf(f, "%d\n", (int)getpid()) < 0 ||
        fclose(f) != 0) {
        fprintf(stderr, "olwan: --ready '%s': %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static void run(struct wan *w, const sigset_t *unblocked)
{
    struct pollfd pfd[MAX_SITES];

    for (int i = 0; i < w->n; i++)
        pfd[i] = (struct pollfd){.fd = w->fd[i], .events = POLLIN};
    while (!got_stop) {
        uint64_t next = release_due(w), now;
        struct timespec ts, *tp = NULL;

        if (got_reload) {
            got_reload = 0;
            if (olwan__load_links(w) == 0)
                printf("olwan: links file '%s' read\n",
                       w->links_path ? w->links_path : "(none)");
            fflush(stdout);
        }
        if (got_dump) {
            got_dump = 0;
            print_counters(w);
        }
        if (next != UINT64_MAX) {
            now = olwan__now_ns();
            next = next > now ? next - now : 0;
            ts.tv_sec = (time_t)(next / 1000000000u);
            ts.tv_nsec = (long)(next % 1000000000u);
            tp = &ts;
        }
        if (ppoll(pfd, (nfds_t)w->n, tp, unblocked) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "olwan: ppoll: %s\n", strerror(errno));
            return;
        }
        for (int i = 0; i < w->n; i++)
            if (pfd[i].revents && read_site(w, i) != 0)
                return;
    }
}

int main(int argc, char **argv)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
    static struct wan w;
    const char *ready = NULL;
    struct sigaction sa;
    sigset_t block, unblocked;

    if (argc >= 2 && strcmp(argv[1], "--probe") == 0)
        return olwan__probe(argc, argv);
    if (olwan__parse_args(argc, argv, &w, &ready) != 0)
        return 2;
    /* Signals arrive only inside ppoll(). */
    sigemptyset(&block);
    for (size_t s = 0; s < sizeof sigs / sizeof sigs[0]; s++)
        sigaddset(&block, sigs[s]);
    sigprocmask(SIG_BLOCK, &block, &unblocked);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    for (size_t s = 0; s < sizeof sigs / sizeof sigs[0]; s++)
        sigaction(sigs[s], &sa, NULL);
    /* Wake up on time: the default 50 us slack is noise, not harm, but
     * costs nothing to remove. */
    prctl(PR_SET_TIMERSLACK, 1UL);
    for (int i = 0; i < w.n; i++)
        for (int j = 0; j < w.n; j++)
            w.d[i][j].rng = w.seed * 0x100000001b3u + (uint64_t)(i * 16 + j);
    for (int i = 0; i < w.n; i++)
        if ((w.fd[i] = tun_open(w.dev[i], w.mtu)) < 0)
            return 1;
    if (ready && write_ready(ready) != 0)
        return 1;
    printf("olwan: %d sites, devices %s..%s, queue %u packets per "
           "direction, seed %" PRIu64 "\n",
           w.n, w.dev[0], w.dev[w.n - 1], w.queue_cap, w.seed);
    fflush(stdout);
    run(&w, &unblocked);
    print_counters(&w);
    free_all(&w);
    return 0;
}
