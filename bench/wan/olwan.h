/*
 * The WAN bed's forwarder (see olwan.c): its table of sites and links,
 * the queues of packets in flight, and what its files share.
 */
#ifndef OLWAN_H
#define OLWAN_H

#include <linux/if.h>
#include <stdint.h>

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

/* CLOCK_MONOTONIC in ns. */
uint64_t olwan__now_ns(void);

/* A non-negative number no larger than max, all of s.  0 or -1. */
int olwan__parse_num(const char *s, double max, double *out);

/* The command line into w (every link's settings from it, then the links
 * file over them).  0, or -1 with a message on stderr naming what is
 * wrong; --help prints the usage and exits.  *ready gets --ready. */
int olwan__parse_args(int argc, char **argv, struct wan *w,
                      const char **ready);

/* Read the links file over the command line's table.  0, or -1 (with a
 * message naming the line) leaving the table in force as it was. */
int olwan__load_links(struct wan *w);

/* `olwan --probe ADDR [--count N] [--timeout-ms MS]`: the exit status. */
int olwan__probe(int argc, char **argv);

#endif
