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
 * Links can change while it runs: the links file (--links) is read at
 * start and again on SIGUSR1 or SIGHUP.  Its lines are
 *     SITE SITE [rtt=MS] [jitter=MS] [loss=PCT] [cut]
 * and override the command line's values for that link; a link the file
 * no longer names goes back to them.  A file that does not parse leaves
 * the table as it was and says which line is wrong.  SIGUSR2 prints the
 * counters; SIGTERM and SIGINT print them and exit.
 *
 * Only libc: one thread, ppoll() on the devices with the earliest release
 * as its timeout, signals unblocked only inside ppoll().
 *
 * `olwan --probe ADDR [--count N]` measures a round trip without ping:
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
#include <netinet/in.h>
#include <arpa/inet.h>
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

#define MAX_SITES 8
#define NAME_MAX_LEN 24
#define READ_BURST 64 /* packets read from one device per round */

/* A packet waiting on a link. */
struct pkt {
    struct pkt *next;
    uint64_t due_ns;
    uint32_t len;
    unsigned char data[];
};

/* What a link does: one per unordered pair of sites. */
struct link_cfg {
    double rtt_ms, jitter_ms, loss_pct;
    int cut;
};

/* One direction of a link: its queue and counters. */
struct dir {
    struct pkt *head, *tail;
    uint32_t depth, max_depth;
    uint64_t last_due_ns;
    uint64_t rng;
    uint64_t fwd, bytes, lost, cut, full;
};

struct wan {
    int n;
    char site[MAX_SITES][NAME_MAX_LEN];
    char dev[MAX_SITES][IFNAMSIZ];
    int fd[MAX_SITES];
    uint32_t net;   /* host order, the /24 */
    uint32_t mtu, queue_cap;
    uint64_t seed;
    const char *links_path;
    struct link_cfg base[MAX_SITES][MAX_SITES]; /* from the command line */
    struct link_cfg cfg[MAX_SITES][MAX_SITES];  /* in force */
    struct dir d[MAX_SITES][MAX_SITES];         /* [from][to] */
    struct pkt *free_list;
    uint64_t not_ipv4, unroutable, write_err, short_pkt;
};

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

static uint64_t now_ns(void)
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

/* ---- arguments and the links file ---- */

static int site_index(const struct wan *w, const char *name, size_t len)
{
    for (int i = 0; i < w->n; i++)
        if (strlen(w->site[i]) == len && strncmp(w->site[i], name, len) == 0)
            return i;
    return -1;
}

/* A non-negative number, all of s.  0 or -1. */
static int parse_num(const char *s, double max, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(s, &end);
    return errno == 0 && end != s && *end == '\0' && *out >= 0 &&
                   *out <= max
               ? 0
               : -1;
}

static int parse_sites(struct wan *w, const char *list)
{
    const char *p = list;

    w->n = 0;
    while (*p) {
        size_t len = strcspn(p, ",");

        if (w->n == MAX_SITES) {
            fprintf(stderr, "olwan: --sites: more than %d sites\n",
                    MAX_SITES);
            return -1;
        }
        if (len == 0 || len >= NAME_MAX_LEN ||
            strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_") < len) {
            fprintf(stderr, "olwan: --sites: bad site name '%.*s' (1-%d of "
                            "a-z 0-9 _)\n",
                    (int)len, p, NAME_MAX_LEN - 1);
            return -1;
        }
        if (site_index(w, p, len) >= 0) {
            fprintf(stderr, "olwan: --sites: '%.*s' given twice\n", (int)len,
                    p);
            return -1;
        }
        snprintf(w->site[w->n++], NAME_MAX_LEN, "%.*s", (int)len, p);
        p += len;
        p += *p == ',';
    }
    if (w->n < 2) {
        fprintf(stderr, "olwan: --sites: need at least 2 sites, got %d\n",
                w->n);
        return -1;
    }
    return 0;
}

/* "A-B=MS,..." into w->base.  0 or -1. */
static int parse_rtt(struct wan *w, const char *list)
{
    char buf[512];
    char *save = NULL, *tok;

    if (snprintf(buf, sizeof buf, "%s", list) >= (int)sizeof buf) {
        fprintf(stderr, "olwan: --rtt: too long\n");
        return -1;
    }
    for (tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok, '-'), *eq = strchr(tok, '=');
        int a, b;
        double ms;

        if (dash == NULL || eq == NULL || eq < dash) {
            fprintf(stderr, "olwan: --rtt: '%s' is not SITE-SITE=MS\n", tok);
            return -1;
        }
        a = site_index(w, tok, (size_t)(dash - tok));
        b = site_index(w, dash + 1, (size_t)(eq - dash - 1));
        if (a < 0 || b < 0 || a == b) {
            fprintf(stderr, "olwan: --rtt: '%s' does not name two of the "
                            "sites\n",
                    tok);
            return -1;
        }
        if (parse_num(eq + 1, 60000, &ms) != 0) {
            fprintf(stderr, "olwan: --rtt: '%s': the round trip must be "
                            "0-60000 ms\n",
                    tok);
            return -1;
        }
        w->base[a][b].rtt_ms = w->base[b][a].rtt_ms = ms;
    }
    return 0;
}

/* One line of the links file into cfg.  0, or -1 with why in err. */
static int parse_link_line(const struct wan *w, char *line,
                           struct link_cfg cfg[][MAX_SITES], char *err,
                           size_t cap)
{
    char *save = NULL, *tok, *sa, *sb;
    struct link_cfg c;
    int a, b;

    sa = strtok_r(line, " \t", &save);
    if (sa == NULL || sa[0] == '#')
        return 0;
    sb = strtok_r(NULL, " \t", &save);
    a = site_index(w, sa, strlen(sa));
    b = sb ? site_index(w, sb, strlen(sb)) : -1;
    if (a < 0 || b < 0 || a == b) {
        snprintf(err, cap, "'%s %s' does not name two of the sites", sa,
                 sb ? sb : "");
        return -1;
    }
    c = w->base[a][b];
    while ((tok = strtok_r(NULL, " \t", &save)) != NULL) {
        if (strcmp(tok, "cut") == 0)
            c.cut = 1;
        else if (strncmp(tok, "rtt=", 4) == 0 &&
                 parse_num(tok + 4, 60000, &c.rtt_ms) == 0)
            continue;
        else if (strncmp(tok, "jitter=", 7) == 0 &&
                 parse_num(tok + 7, 60000, &c.jitter_ms) == 0)
            continue;
        else if (strncmp(tok, "loss=", 5) == 0 &&
                 parse_num(tok + 5, 100, &c.loss_pct) == 0)
            continue;
        else {
            snprintf(err, cap, "'%s': expected rtt=MS, jitter=MS, "
                               "loss=PCT (0-100) or cut",
                     tok);
            return -1;
        }
    }
    cfg[a][b] = cfg[b][a] = c;
    return 0;
}

/* Read the links file over the command line's table; on any error the
 * table in force stays as it was.  0 or -1. */
static int load_links(struct wan *w)
{
    static struct link_cfg cfg[MAX_SITES][MAX_SITES];
    char line[512], err[256];
    FILE *f;
    int no = 0, rv = 0;

    memcpy(cfg, w->base, sizeof cfg);
    if (w->links_path && (f = fopen(w->links_path, "r")) == NULL &&
        errno != ENOENT) {
        fprintf(stderr, "olwan: links file '%s': %s\n", w->links_path,
                strerror(errno));
        return -1;
    }
    if (w->links_path && f) {
        while (rv == 0 && fgets(line, sizeof line, f)) {
            no++;
            line[strcspn(line, "\r\n")] = '\0';
            if (parse_link_line(w, line, cfg, err, sizeof err) != 0) {
                fprintf(stderr, "olwan: links file '%s' line %d: %s; table "
                                "unchanged\n",
                        w->links_path, no, err);
                rv = -1;
            }
        }
        fclose(f);
    }
    if (rv == 0)
        memcpy(w->cfg, cfg, sizeof cfg);
    return rv;
}

static const char usage[] =
    "usage: olwan --sites A,B[,C...] [--rtt A-B=MS,...] [--jitter MS] "
    "[--loss PCT]\n"
    "             [--links FILE] [--seed N] [--queue PACKETS] [--mtu "
    "BYTES]\n"
    "             [--net 10.77.0.0] [--dev-prefix olwan] [--ready FILE]\n"
    "       olwan --probe ADDR [--count 5] [--timeout-ms 2000]\n"
    "Creates TUN devices <dev-prefix>1..N (site k is <net>.k) and forwards "
    "IPv4\n"
    "between them with half of each link's round trip as its one-way "
    "delay.\n";

/* The value after option `a`, or NULL with a message. */
static const char *opt_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "olwan: %s needs a value\n%s", argv[*i], usage);
        return NULL;
    }
    return argv[++*i];
}

static int parse_net(struct wan *w, const char *s)
{
    unsigned a, b, c, d;
    char tail;

    if (sscanf(s, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 ||
        b > 255 || c > 255 || d != 0) {
        fprintf(stderr, "olwan: --net: '%s' is not an IPv4 /24 network "
                        "(a.b.c.0)\n",
                s);
        return -1;
    }
    w->net = a << 24 | b << 16 | c << 8;
    return 0;
}

/* Options besides --sites and --rtt; 1 if `a` was one, 0 if not, -1 on a
 * bad value. */
static int parse_opt(struct wan *w, const char *a, const char *v,
                     double *jitter, double *loss, const char **dev_prefix)
{
    double x;

    if (strcmp(a, "--jitter") == 0)
        return parse_num(v, 60000, jitter) == 0 ? 1 : -1;
    if (strcmp(a, "--loss") == 0)
        return parse_num(v, 100, loss) == 0 ? 1 : -1;
    if (strcmp(a, "--seed") == 0) {
        if (parse_num(v, 1e18, &x) != 0)
            return -1;
        w->seed = (uint64_t)x;
        return 1;
    }
    if (strcmp(a, "--queue") == 0) {
        if (parse_num(v, 1000000, &x) != 0 || x < 1)
            return -1;
        w->queue_cap = (uint32_t)x;
        return 1;
    }
    if (strcmp(a, "--mtu") == 0) {
        if (parse_num(v, 65535, &x) != 0 || x < 576)
            return -1;
        w->mtu = (uint32_t)x;
        return 1;
    }
    if (strcmp(a, "--net") == 0)
        return parse_net(w, v) == 0 ? 1 : -2;
    if (strcmp(a, "--links") == 0) {
        w->links_path = v;
        return 1;
    }
    if (strcmp(a, "--dev-prefix") == 0) {
        *dev_prefix = v;
        return 1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, struct wan *w,
                      const char **ready)
{
    const char *sites = NULL, *rtt = NULL, *dev_prefix = "olwan";
    double jitter = 0, loss = 0;

    w->mtu = 1500;
    w->queue_cap = 10000;
    w->seed = 1;
    w->net = 10u << 24 | 77u << 16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(0);
        }
        if ((v = opt_value(argc, argv, &i)) == NULL)
            return -1;
        if (strcmp(a, "--sites") == 0)
            sites = v;
        else if (strcmp(a, "--rtt") == 0)
            rtt = v;
        else if (strcmp(a, "--ready") == 0)
            *ready = v;
        else if ((r = parse_opt(w, a, v, &jitter, &loss, &dev_prefix)) < 0) {
            if (r == -1)
                fprintf(stderr, "olwan: %s: bad value '%s'\n", a, v);
            return -1;
        } else if (r == 0) {
            fprintf(stderr, "olwan: unknown option '%s'\n%s", a, usage);
            return -1;
        }
    }
    if (sites == NULL) {
        fprintf(stderr, "olwan: --sites is required\n%s", usage);
        return -1;
    }
    if (parse_sites(w, sites) != 0)
        return -1;
    if (strlen(dev_prefix) + 1 >= IFNAMSIZ || dev_prefix[0] == '\0') {
        fprintf(stderr, "olwan: --dev-prefix '%s': 1-%d characters\n",
                dev_prefix, IFNAMSIZ - 2);
        return -1;
    }
    for (int i = 0; i < w->n; i++) {
        snprintf(w->dev[i], IFNAMSIZ, "%s%d", dev_prefix, i + 1);
        for (int j = 0; j < w->n; j++)
            w->base[i][j] = (struct link_cfg){.jitter_ms = jitter,
                                              .loss_pct = loss};
    }
    if (rtt && parse_rtt(w, rtt) != 0)
        return -1;
    return load_links(w);
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
        enqueue(w, i, p, now_ns());
    }
    return 0;
}

/* Write every packet that is due; the earliest release still waiting,
 * or UINT64_MAX. */
static uint64_t release_due(struct wan *w)
{
    uint64_t now = now_ns(), next = UINT64_MAX;

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
            if (load_links(w) == 0)
                printf("olwan: links file '%s' read\n",
                       w->links_path ? w->links_path : "(none)");
            fflush(stdout);
        }
        if (got_dump) {
            got_dump = 0;
            print_counters(w);
        }
        if (next != UINT64_MAX) {
            now = now_ns();
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

/* ---- the round-trip probe ---- */

/* One TCP connect to a closed port: its round trip in ms, or -1 when
 * nothing came back within timeout_ms (a cut link). */
static double probe_once(const struct sockaddr_in *sa, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    uint64_t t0 = now_ns();
    double ms = -1;

    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 ||
        errno == ECONNREFUSED)
        ms = (double)(now_ns() - t0) / 1e6;
    else if (errno == EINPROGRESS && poll(&p, 1, timeout_ms) == 1)
        ms = (double)(now_ns() - t0) / 1e6;
    close(fd);
    return ms;
}

static int probe(int argc, char **argv)
{
    struct sockaddr_in sa;
    double x, min = 1e18, max = 0, sum = 0;
    int count = 5, got = 0, timeout_ms = 2000;

    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(9); /* discard: closed in a site's namespace */
    if (argc < 3 || inet_pton(AF_INET, argv[2], &sa.sin_addr) != 1) {
        fprintf(stderr, "olwan: --probe needs an IPv4 address, got '%s'\n",
                argc < 3 ? "" : argv[2]);
        return 2;
    }
    for (int i = 3; i < argc; i += 2) {
        if (i + 1 < argc && strcmp(argv[i], "--count") == 0 &&
            parse_num(argv[i + 1], 1000, &x) == 0 && x >= 1)
            count = (int)x;
        else if (i + 1 < argc && strcmp(argv[i], "--timeout-ms") == 0 &&
                 parse_num(argv[i + 1], 60000, &x) == 0 && x >= 1)
            timeout_ms = (int)x;
        else {
            fprintf(stderr, "olwan: --probe: bad option '%s' (--count "
                            "1-1000, --timeout-ms 1-60000)\n",
                    argv[i]);
            return 2;
        }
    }
    for (int i = 0; i < count; i++) {
        double ms = probe_once(&sa, timeout_ms);

        if (ms < 0)
            continue;
        got++;
        sum += ms;
        min = ms < min ? ms : min;
        max = ms > max ? ms : max;
        if (i + 1 < count)
            usleep(100000);
    }
    if (got == 0) {
        printf("rtt %s: %d sent, 0 answered\n", argv[2], count);
        return 1;
    }
    printf("rtt %s: %d sent, %d answered, min/avg/max %.2f/%.2f/%.2f ms\n",
           argv[2], count, got, min, sum / got, max);
    return got == count ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2};
    static struct wan w;
    const char *ready = NULL;
    struct sigaction sa;
    sigset_t block, unblocked;

    if (argc >= 2 && strcmp(argv[1], "--probe") == 0)
        return probe(argc, argv);
    if (parse_args(argc, argv, &w, &ready) != 0)
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
    return 0;
}
