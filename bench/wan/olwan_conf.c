/*
 * The forwarder's settings (see olwan.c): the command line, and the links
 * file it reads at start and on SIGUSR1/SIGHUP.  Every bad value is
 * refused with a message that names it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "olwan.h"

static int site_index(const struct wan *w, const char *name, size_t len)
{
    for (int i = 0; i < w->n; i++)
        if (strlen(w->site[i]) == len && strncmp(w->site[i], name, len) == 0)
            return i;
    return -1;
}

int olwan__parse_num(const char *s, double max, double *out)
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
        if (olwan__parse_num(eq + 1, 60000, &ms) != 0) {
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
                 olwan__parse_num(tok + 4, 60000, &c.rtt_ms) == 0)
            continue;
        else if (strncmp(tok, "jitter=", 7) == 0 &&
                 olwan__parse_num(tok + 7, 60000, &c.jitter_ms) == 0)
            continue;
        else if (strncmp(tok, "loss=", 5) == 0 &&
                 olwan__parse_num(tok + 5, 100, &c.loss_pct) == 0)
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
int olwan__load_links(struct wan *w)
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
        return olwan__parse_num(v, 60000, jitter) == 0 ? 1 : -1;
    if (strcmp(a, "--loss") == 0)
        return olwan__parse_num(v, 100, loss) == 0 ? 1 : -1;
    if (strcmp(a, "--seed") == 0) {
        if (olwan__parse_num(v, 1e18, &x) != 0)
            return -1;
        w->seed = (uint64_t)x;
        return 1;
    }
    if (strcmp(a, "--queue") == 0) {
        if (olwan__parse_num(v, 1000000, &x) != 0 || x < 1)
            return -1;
        w->queue_cap = (uint32_t)x;
        return 1;
    }
    if (strcmp(a, "--mtu") == 0) {
        if (olwan__parse_num(v, 65535, &x) != 0 || x < 576)
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

int olwan__parse_args(int argc, char **argv, struct wan *w,
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
                fprintf(stderr, "olwan: %s: bad value '%s' (jitter 0-60000 "
                                "ms, loss 0-100 %%, queue 1-1000000, mtu "
                                "576-65535, seed a whole number)\n",
                        a, v);
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
    return olwan__load_links(w);
}

