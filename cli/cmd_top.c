/*
 * `outlast top`: a live view of a node, its cluster and its agents,
 * redrawn every interval.  It asks the node for `status`, `cluster.status`
 * and `agents`, and takes rates from the difference between two frames:
 * checkpoints per second for every agent (its head seq is replicated, so
 * every node knows it), and steps per second and commit latency for the
 * agents hosted on the node asked.
 *
 * Plain ANSI escapes only (clear, home, bold, inverse; no terminfo or
 * curses), so it works in any terminal and over ssh.  On a terminal it
 * redraws in place, fits the window and quits on 'q' or Ctrl-C; with
 * stdout not a terminal (or --plain) it prints frames one after another
 * without escapes.
 */
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "cli.h"

#define TOP_AGENTS_MAX 4096

struct prev_agent {
    char name[72];
    uint64_t seq, steps;
};

struct top {
    struct ol__cli *c;
    int tty, plain;
    uint64_t interval_ms;
    /* the previous frame */
    int have_prev;
    uint64_t prev_ms, prev_ckpts, prev_steps;
    struct prev_agent *prev;
    size_t n_prev;
};

static volatile sig_atomic_t stop_now;
static struct termios saved_tio;
static int tio_saved;

static void on_signal(int sig)
{
    (void)sig;
    stop_now = 1;
}

static void restore_terminal(void)
{
    if (tio_saved)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
    tio_saved = 0;
}

/* Keys without Enter, no echo; restored at exit. */
static void raw_terminal(void)
{
    struct termios t;

    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) != 0)
        return;
    t = saved_tio;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
        tio_saved = 1;
}

static int call(struct top *t, const char *op, struct ol__cli_resp *r)
{
    return ol__cli_call_simple(t->c, op, NULL, r);
}

static int prev_cmp(const void *a, const void *b)
{
    return strcmp(((const struct prev_agent *)a)->name,
                  ((const struct prev_agent *)b)->name);
}

/* The previous frame's figures for agent `n` (t->prev is sorted). */
static const struct prev_agent *prev_of(const struct top *t, const char *n)
{
    struct prev_agent key;

    if (t->n_prev == 0)
        return NULL;
    snprintf(key.name, sizeof key.name, "%s", n);
    return bsearch(&key, t->prev, t->n_prev, sizeof key, prev_cmp);
}

struct row {
    char name[72], kind[72], status[16], reason[200];
    uint64_t owner, epoch, seq, mailbox, queued, commit_us, steps;
    int64_t time_ms;
    int local;
    double ckpt_rate, step_rate; /* < 0: unknown */
};

static int row_cmp(const void *a, const void *b)
{
    const struct row *x = a, *y = b;

    if (x->ckpt_rate != y->ckpt_rate)
        return x->ckpt_rate < y->ckpt_rate ? 1 : -1;
    return strcmp(x->name, y->name);
}

static const char *rate(double v, char *out, size_t cap)
{
    if (v < 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.1f", v);
    return out;
}

static const char *lat(uint64_t us, char *out, size_t cap)
{
    if (us == 0)
        snprintf(out, cap, "-");
    else if (us < 1000)
        snprintf(out, cap, "%" PRIu64 "us", us);
    else if (us < 1000000)
        snprintf(out, cap, "%.1fms", (double)us / 1e3);
    else
        snprintf(out, cap, "%.2fs", (double)us / 1e6);
    return out;
}

/* Print `t` into f, at most max_lines lines (0: all) and each cut to
 * width columns (0: no cut), the header row in inverse video unless
 * `plain`.  Returns lines printed. */
static int print_cut(const struct ol__table *tb, FILE *f, int max_lines,
                     int width, int plain)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    int lines = 0;

    if (m == NULL)
        return 0;
    ol__table_print(tb, m);
    fclose(m);
    for (char *p = buf, *e; p && *p && (!max_lines || lines < max_lines);
         p = e ? e + 1 : NULL) {
        e = strchr(p, '\n');
        int n = e ? (int)(e - p) : (int)strlen(p);

        if (width > 0 && n > width)
            n = width;
        if (lines == 0 && !plain)
            fprintf(f, "\033[7m%-*.*s\033[0m\n", width > 0 ? width : n, n,
                    p);
        else
            fprintf(f, "%.*s\n", n, p);
        lines++;
    }
    free(buf);
    return lines;
}

/* The two header lines (three with a cluster): node, agents and rates. */
static int print_header(const struct top *t, FILE *f, int cols,
                        const msgpack_object *st,
                        const msgpack_object *cluster, uint64_t now,
                        double dt)
{
    const msgpack_object *node = ol__mp_get(st, "node");
    const msgpack_object *agents = ol__mp_get(st, "agents");
    const msgpack_object *commits = ol__mp_get(st, "commits");
    uint64_t ckpts = ol__mp_getu(commits, "checkpoints");
    uint64_t steps = ol__mp_getu(commits, "steps");
    char a[160], b[160], d[32], line[512], r1[24], r2[24], r3[24];
    int width = cols > 0 ? cols : (int)sizeof line;

    ol__mp_gets(node, "mode", a, sizeof a);
    ol__cli_iso((int64_t)now, b, sizeof b);
    snprintf(line, sizeof line,
             "outlast top - node %" PRIu64 " (%s) - %s - %s - up %s - %s",
             ol__mp_getu(node, "id"), ol__mp_gets(node, "name", r1, sizeof r1),
             a, ol__mp_gets(node, "role", r2, sizeof r2),
             ol__cli_duration(ol__mp_getu(node, "uptime_ms"), d, sizeof d),
             b);
    fprintf(f, "%s%.*s%s\n", t->plain ? "" : "\033[1m", width, line,
            t->plain ? "" : "\033[0m");
    snprintf(line, sizeof line,
             "agents %" PRIu64 ": %" PRIu64 " running, %" PRIu64
             " stopped, %" PRIu64 " quarantined, %" PRIu64
             " here | commits %s/s, steps %s/s | p50 %s p99 %s",
             ol__mp_getu(agents, "total"), ol__mp_getu(agents, "running"),
             ol__mp_getu(agents, "stopped"),
             ol__mp_getu(agents, "quarantined"), ol__mp_getu(agents, "local"),
             rate(dt > 0 ? (double)(ckpts - t->prev_ckpts) / dt : -1, r1,
                  sizeof r1),
             rate(dt > 0 ? (double)(steps - t->prev_steps) / dt : -1, r2,
                  sizeof r2),
             lat(ol__mp_getu(commits, "latency_p50_us"), r3, sizeof r3),
             lat(ol__mp_getu(commits, "latency_p99_us"), a, sizeof a));
    fprintf(f, "%.*s\n", width, line);
    if (cluster == NULL)
        return 2;
    snprintf(line, sizeof line,
             "cluster '%s': leader node %" PRIu64 ", term %" PRIu64
             ", commit %" PRIu64 ", applied %" PRIu64 ", lease %s%s",
             ol__mp_gets(cluster, "cluster", a, sizeof a),
             ol__mp_getu(cluster, "leader"), ol__mp_getu(cluster, "term"),
             ol__mp_getu(cluster, "commit_index"),
             ol__mp_getu(cluster, "store_applied"),
             ol__mp_getb(cluster, "lease") ? "held" : "NOT HELD",
             ol__mp_getb(cluster, "from_follower")
                 ? " (a follower's view: health is the leader's to know)"
                 : "");
    fprintf(f, "%.*s\n", width, line);
    return 3;
}

/* One row of the nodes table. */
static void add_node(struct ol__table *tb, const msgpack_object *nd,
                     uint64_t commit, int leader_view)
{
    const msgpack_object *lc = ol__mp_get(nd, "last_contact_ms");
    char id[24], addr[130], labels[210], role[16], health[16], contact[32],
        applied[24], lag[24], nag[24];
    const char *cells[9] = {id,      addr,    labels, role, health,
                            contact, applied, lag,    nag};
    uint64_t ap = ol__mp_getu(nd, "applied");

    snprintf(id, sizeof id, "%" PRIu64, ol__mp_getu(nd, "id"));
    ol__mp_gets(nd, "address", addr, sizeof addr);
    ol__mp_gets(nd, "labels", labels, sizeof labels);
    snprintf(role, sizeof role, "%s",
             ol__mp_getb(nd, "leader")  ? "leader"
             : ol__mp_getb(nd, "voter") ? "voter"
                                        : "spare");
    ol__mp_gets(nd, "health", health, sizeof health);
    if (lc && lc->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        snprintf(contact, sizeof contact, "%.1fs ago",
                 (double)lc->via.u64 / 1e3);
    else
        snprintf(contact, sizeof contact, "-");
    if (leader_view && strcmp(health, "self") != 0) {
        snprintf(applied, sizeof applied, "%" PRIu64, ap);
        snprintf(lag, sizeof lag, "%" PRIu64, commit > ap ? commit - ap : 0);
    } else {
        snprintf(applied, sizeof applied, "-");
        snprintf(lag, sizeof lag, "-");
    }
    snprintf(nag, sizeof nag, "%" PRIu64, ol__mp_getu(nd, "agents"));
    (void)ol__table_add(tb, cells);
}

/* The cluster's nodes, then a blank line.  Returns lines printed. */
static int print_nodes(const struct top *t, FILE *f, int cols,
                       const msgpack_object *cluster)
{
    static const char *const hdr[] = {"NODE",    "ADDRESS", "LABELS",
                                      "ROLE",    "HEALTH",  "CONTACT",
                                      "APPLIED", "LAG",     "AGENTS"};
    const msgpack_object *list = ol__mp_get(cluster, "nodes");
    uint64_t commit = ol__mp_getu(cluster, "commit_index");
    int leader_view = !ol__mp_getb(cluster, "from_follower"), used;
    struct ol__table tb;

    if (list == NULL || list->type != MSGPACK_OBJECT_ARRAY ||
        ol__table_init(&tb, 9, hdr) != 0)
        return 0;
    for (uint32_t i = 0; i < list->via.array.size; i++)
        add_node(&tb, &list->via.array.ptr[i], commit, leader_view);
    used = print_cut(&tb, f, 0, cols, t->plain);
    ol__table_free(&tb);
    fprintf(f, "\n");
    return used + 1;
}

/* Agent `g` as a row, with its rates against the previous frame. */
static void read_row(const struct top *t, const msgpack_object *g,
                     const msgpack_object *live, double dt, struct row *r)
{
    const msgpack_object *lv;
    const struct prev_agent *p;

    ol__mp_gets(g, "name", r->name, sizeof r->name);
    ol__mp_gets(g, "kind", r->kind, sizeof r->kind);
    ol__mp_gets(g, "status", r->status, sizeof r->status);
    ol__mp_gets(g, "reason", r->reason, sizeof r->reason);
    r->owner = ol__mp_getu(g, "owner");
    r->epoch = ol__mp_getu(g, "epoch");
    r->seq = ol__mp_getu(g, "seq");
    r->mailbox = ol__mp_getu(g, "mailbox");
    r->time_ms = ol__mp_geti(g, "time_ms");
    lv = ol__mp_get(live, r->name);
    r->local = lv && lv->type == MSGPACK_OBJECT_MAP && lv->via.map.size > 0;
    if (r->local) {
        r->queued = ol__mp_getu(lv, "queued");
        r->commit_us = ol__mp_getu(lv, "commit_us");
        r->steps = ol__mp_getu(lv, "steps");
    }
    p = prev_of(t, r->name);
    r->ckpt_rate = p && dt > 0 && r->seq >= p->seq
                       ? (double)(r->seq - p->seq) / dt
                       : -1;
    r->step_rate = p && dt > 0 && r->local && r->steps >= p->steps
                       ? (double)(r->steps - p->steps) / dt
                       : -1;
}

/* One row of the agents table. */
static void add_agent(struct ol__table *tb, const struct row *r,
                      uint64_t now)
{
    char owner[24], epoch[24], seq[24], cr[24], sr[24], cm[24], mb[24],
        q[24], last[32];
    const char *cells[12] = {r->name, r->kind, r->status, owner,
                             epoch,   seq,     cr,        sr,
                             cm,      mb,      q,         last};

    snprintf(owner, sizeof owner, "%" PRIu64, r->owner);
    snprintf(epoch, sizeof epoch, "%" PRIu64, r->epoch);
    snprintf(seq, sizeof seq, "%" PRIu64, r->seq);
    rate(r->ckpt_rate, cr, sizeof cr);
    rate(r->step_rate, sr, sizeof sr);
    lat(r->local ? r->commit_us : 0, cm, sizeof cm);
    snprintf(mb, sizeof mb, "%" PRIu64, r->mailbox);
    if (r->local)
        snprintf(q, sizeof q, "%" PRIu64, r->queued);
    else
        snprintf(q, sizeof q, "-");
    if (r->time_ms > 0)
        ol__cli_duration(now > (uint64_t)r->time_ms
                             ? now - (uint64_t)r->time_ms
                             : 0,
                         last, sizeof last);
    else
        snprintf(last, sizeof last, "-");
    (void)ol__table_add(tb, cells);
}

/* The agents, busiest first, in at most `room` lines (0: all); their
 * figures become the previous frame's. */
static void print_agents(struct top *t, FILE *f, int cols, int room,
                         const msgpack_object *ag, uint64_t now, double dt)
{
    static const char *const hdr[] = {
        "AGENT", "KIND",    "STATUS", "OWNER", "EPOCH", "SEQ",
        "CKPT/S", "STEPS/S", "COMMIT", "MAILBOX", "QUEUED", "LAST"};
    const msgpack_object *list = ol__mp_get(ag, "agents");
    const msgpack_object *live = ol__mp_get(ag, "live");
    struct prev_agent *np = NULL;
    struct row *rowv = NULL;
    struct ol__table tb;
    size_t n_rows;

    if (list == NULL || list->type != MSGPACK_OBJECT_ARRAY)
        return;
    n_rows = list->via.array.size;
    if (n_rows > TOP_AGENTS_MAX)
        n_rows = TOP_AGENTS_MAX;
    rowv = calloc(n_rows ? n_rows : 1, sizeof *rowv);
    np = calloc(n_rows ? n_rows : 1, sizeof *np);
    if (rowv == NULL || np == NULL)
        goto out;
    for (size_t i = 0; i < n_rows; i++) {
        read_row(t, &list->via.array.ptr[i], live, dt, &rowv[i]);
        snprintf(np[i].name, sizeof np[i].name, "%s", rowv[i].name);
        np[i].seq = rowv[i].seq;
        np[i].steps = rowv[i].steps;
    }
    qsort(rowv, n_rows, sizeof *rowv, row_cmp);
    qsort(np, n_rows, sizeof *np, prev_cmp);
    if (ol__table_init(&tb, 12, hdr) == 0) {
        for (size_t i = 0; i < n_rows; i++)
            add_agent(&tb, &rowv[i], now);
        (void)print_cut(&tb, f, room > 0 ? room : 0, cols, t->plain);
        ol__table_free(&tb);
    }
    free(t->prev);
    t->prev = np;
    t->n_prev = n_rows;
    np = NULL;
out:
    free(np);
    free(rowv);
}

static void frame(struct top *t, FILE *f, int rows, int cols)
{
    struct ol__cli_resp st, cl, ag;
    const msgpack_object *cluster = NULL, *commits;
    char mode[160];
    int have_cl = 0, used;
    uint64_t now = (uint64_t)ol__wall_ms();
    double dt;

    memset(&st, 0, sizeof st);
    memset(&ag, 0, sizeof ag);
    if (call(t, "status", &st) != 0 || call(t, "agents", &ag) != 0) {
        fprintf(f, "outlast top: the node did not answer; retrying every "
                   "%" PRIu64 " ms\n",
                t->interval_ms);
        ol__cli_resp_free(&st);
        ol__cli_resp_free(&ag);
        return;
    }
    ol__mp_gets(ol__mp_get(st.root, "node"), "mode", mode, sizeof mode);
    if (strcmp(mode, "cluster") == 0 && call(t, "cluster.status", &cl) == 0) {
        have_cl = 1;
        cluster = ol__mp_get(cl.root, "cluster");
    }
    dt = t->have_prev ? (double)(now - t->prev_ms) / 1e3 : 0;
    used = print_header(t, f, cols, st.root, cluster, now, dt);
    fprintf(f, "\n");
    used++;
    if (cluster)
        used += print_nodes(t, f, cols, cluster);
    print_agents(t, f, cols, rows > 0 ? rows - used - 1 : 0, ag.root, now,
                 dt);
    commits = ol__mp_get(st.root, "commits");
    t->have_prev = 1;
    t->prev_ms = now;
    t->prev_ckpts = ol__mp_getu(commits, "checkpoints");
    t->prev_steps = ol__mp_getu(commits, "steps");
    ol__cli_resp_free(&st);
    ol__cli_resp_free(&ag);
    if (have_cl)
        ol__cli_resp_free(&cl);
}

/* Draw one frame with one write: no flicker over slow links.  Returns -1
 * when out of memory. */
static int draw(struct top *t, uint64_t i)
{
    struct winsize ws;
    int rows = 0, cols = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);

    if (m == NULL)
        return -1;
    if (t->tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
        rows = ws.ws_row;
        cols = ws.ws_col;
    }
    frame(t, m, t->plain ? 0 : rows, t->plain ? 0 : cols);
    fclose(m);
    if (!t->plain)
        fputs("\033[H\033[2J", stdout);
    else if (i > 0)
        fputs("\n", stdout);
    fwrite(buf, 1, len, stdout);
    if (!t->plain)
        fputs("\033[0m", stdout);
    fflush(stdout);
    free(buf);
    return 0;
}

/* Wait for the interval, or a 'q'. */
static void wait_interval(uint64_t interval)
{
    for (uint64_t waited = 0; waited < interval && !stop_now;) {
        struct pollfd p = {STDIN_FILENO, POLLIN, 0};
        uint64_t step = interval - waited > 100 ? 100 : interval - waited;
        char ch;

        if (tio_saved && poll(&p, 1, (int)step) > 0 &&
            read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
            stop_now = 1;
        else if (!tio_saved) {
            struct timespec ts = {0, (long)step * 1000000L};

            nanosleep(&ts, NULL);
        }
        waited += step;
    }
}

int ol__cmd_top(struct ol__cli *c)
{
    const char *pos[1], *s_interval = NULL, *s_count = NULL;
    int plain = 0, n, rv;
    const struct ol__cli_opt opts[] = {
        {.name = "--interval", .value = &s_interval},
        {.name = "--count", .value = &s_count},
        {.name = "--plain", .flag = &plain},
        {0},
    };
    uint64_t interval = 1000, count = 0;
    struct top t;

    if ((rv = ol__cli_parse(c, opts, pos, 0, 0, &n)) != 0 ||
        (rv = ol__cli_need_node(c)) != 0)
        return rv;
    if (c->json)
        return ol__cli_usage_err(c, "top is interactive; for JSON use "
                                    "'status', 'cluster status' and "
                                    "'agents' with --json");
    if ((s_interval && (ol__cli_parse_u64(s_interval, 3600000, &interval) !=
                            0 ||
                        interval < 100)) ||
        (s_count && ol__cli_parse_u64(s_count, UINT32_MAX, &count) != 0))
        return ol__cli_usage_err(c, "--interval takes 100-3600000 (ms) and "
                                    "--count a number of frames");
    memset(&t, 0, sizeof t);
    t.c = c;
    t.interval_ms = interval;
    t.tty = isatty(STDOUT_FILENO);
    t.plain = plain || !t.tty;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (!t.plain) {
        raw_terminal();
        atexit(restore_terminal);
        printf("\033[?25l"); /* hide the cursor */
    }
    for (uint64_t i = 0; !stop_now && (!count || i < count); i++) {
        if (draw(&t, i) != 0 || (count && i + 1 >= count))
            break;
        wait_interval(interval);
    }
    if (!t.plain) {
        printf("\033[?25h\n");
        restore_terminal();
    }
    fflush(stdout);
    free(t.prev);
    return 0;
}
