/*
 * The hostile-input suite: bad config files, CLI arguments, control-socket
 * frames, damaged and replaced databases, deleted WALs, truncated chains,
 * foreign SQLite files and unusable listen addresses.  Each case is a file
 * under tests/hostile/ (see tests/hostile/README.md for the format) that
 * says what to set up, what to run, the exact exit status and messages
 * expected, and checks that nothing stored changed.  Adding a case needs no
 * code: one Criterion test runs per file, against real outlastd and
 * outlast processes.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "base/buf.h"
#include "runtime/ctl.h"
#include "base/err.h"
#include "tests/support/daemon.h"

#define MAX_STEPS 16
#define MAX_EXPECT 8
#define MAX_FILES 8
#define MAX_PRE 8
#define STEP_TIMEOUT_S 30

/* ---- the case file ---- */

enum step_kind { STEP_RUN = 1, STEP_FRAME = 2, STEP_HOLD = 3 };

struct step {
    int kind;
    char *text;     /* the command line, or frame bytes in hex */
    int hold;       /* STEP_HOLD: connections to open and keep */
    int exit;       /* expected exit status (-1: not checked) */
    char *expect[MAX_EXPECT];
    int n_expect;
    char *reject[MAX_EXPECT];
    int n_reject;
};

struct hcase {
    char path[512];
    char name[128];
    char *what;
    char setup[16]; /* none, stopped, killed, running */
    struct {
        char *name;
        char *content; /* NULL: a FIFO */
    } files[MAX_FILES];
    int n_files;
    /* Before the steps, in file order: shell commands, SQL on a file,
     * pages overwritten ("TABLE TYPE NTH"). */
    struct {
        int kind; /* 's'hell, 'q' sqlite, 'x' smash */
        char *file;
        char *text;
    } pre[MAX_PRE];
    int n_pre;
    int busy_port;
    struct step steps[MAX_STEPS];
    int n_steps;
    char unchanged[8]; /* files, rows, none */
};

static char *xstrdup(const char *s)
{
    char *p = strdup(s);

    cr_assert_not_null(p);
    return p;
}

static char *trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
                     e[-1] == '\r'))
        *--e = '\0';
    return s;
}

/* Read a block "<<<" ... ">>>" that starts after the current line. */
static char *block(FILE *f, int *line, const char *path)
{
    struct ol__buf b;
    char l[8192];

    ol__buf_init(&b);
    while (fgets(l, sizeof l, f)) {
        (*line)++;
        if (strncmp(l, ">>>", 3) == 0) {
            ol__buf_append(&b, "", 1);
            return (char *)b.base;
        }
        ol__buf_append(&b, l, strlen(l));
    }
    cr_assert_fail("%s:%d: block has no closing '>>>'", path, *line);
    return NULL;
}

static void parse_case(const char *path, struct hcase *c)
{
    char l[8192];
    int line = 0;
    FILE *f = fopen(path, "r");
    struct step *cur = NULL;
    const char *base = strrchr(path, '/');

    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->name, sizeof c->name, "%s", base ? base + 1 : path);
    snprintf(c->setup, sizeof c->setup, "none");
    while (fgets(l, sizeof l, f)) {
        char *key, *val, *colon;

        line++;
        key = trim(l);
        if (key[0] == '\0' || key[0] == '#')
            continue;
        colon = strchr(key, ':');
        cr_assert_not_null(colon, "%s:%d: expected 'key: value'", path,
                           line);
        *colon = '\0';
        val = trim(colon + 1);
        key = trim(key);
        if (strcmp(val, "<<<") == 0)
            val = block(f, &line, path);
        else
            val = xstrdup(val);
        if (strcmp(key, "case") == 0) {
            c->what = val;
        } else if (strcmp(key, "setup") == 0) {
            snprintf(c->setup, sizeof c->setup, "%s", val);
            free(val);
        } else if (strncmp(key, "file ", 5) == 0) {
            cr_assert_lt(c->n_files, MAX_FILES);
            c->files[c->n_files].name = xstrdup(trim(key + 5));
            c->files[c->n_files++].content = val;
        } else if (strcmp(key, "fifo") == 0) {
            cr_assert_lt(c->n_files, MAX_FILES);
            c->files[c->n_files].name = val;
            c->files[c->n_files++].content = NULL;
        } else if (strcmp(key, "shell") == 0 || strcmp(key, "smash") == 0 ||
                   strncmp(key, "sqlite ", 7) == 0) {
            cr_assert_lt(c->n_pre, MAX_PRE);
            c->pre[c->n_pre].kind = key[1] == 'h' ? 's'
                                    : key[1] == 'm' ? 'x'
                                                    : 'q';
            c->pre[c->n_pre].file =
                key[1] == 'q' ? xstrdup(trim(key + 7)) : NULL;
            c->pre[c->n_pre++].text = val;
        } else if (strcmp(key, "busy-port") == 0) {
            c->busy_port = 1;
            free(val);
        } else if (strcmp(key, "run") == 0 || strcmp(key, "frame") == 0 ||
                   strcmp(key, "hold") == 0) {
            cr_assert_lt(c->n_steps, MAX_STEPS, "%s: too many steps", path);
            cur = &c->steps[c->n_steps++];
            cur->kind = key[0] == 'r' ? STEP_RUN
                        : key[0] == 'f' ? STEP_FRAME
                                        : STEP_HOLD;
            cur->exit = -1;
            cur->text = val;
            if (cur->kind == STEP_HOLD)
                cur->hold = atoi(val);
        } else if (strcmp(key, "exit") == 0) {
            cr_assert_not_null(cur, "%s:%d: 'exit' before a step", path,
                               line);
            cur->exit = atoi(val);
            free(val);
        } else if (strcmp(key, "expect") == 0 || strcmp(key, "reject") == 0) {
            cr_assert_not_null(cur, "%s:%d: '%s' before a step", path, line,
                               key);
            if (key[0] == 'e') {
                cr_assert_lt(cur->n_expect, MAX_EXPECT);
                cur->expect[cur->n_expect++] = val;
            } else {
                cr_assert_lt(cur->n_reject, MAX_EXPECT);
                cur->reject[cur->n_reject++] = val;
            }
        } else if (strcmp(key, "unchanged") == 0) {
            snprintf(c->unchanged, sizeof c->unchanged, "%s", val);
            free(val);
        } else {
            cr_assert_fail("%s:%d: unknown directive '%s'", path, line, key);
        }
    }
    fclose(f);
    cr_assert_not_null(c->what, "%s: no 'case:' line", path);
    cr_assert_gt(c->n_steps, 0, "%s: no step", path);
    if (c->unchanged[0] == '\0')
        snprintf(c->unchanged, sizeof c->unchanged, "%s",
                 strcmp(c->setup, "running") == 0 ? "rows" : "files");
}

static void free_case(struct hcase *c)
{
    free(c->what);
    for (int i = 0; i < c->n_files; i++) {
        free(c->files[i].name);
        free(c->files[i].content);
    }
    for (int i = 0; i < c->n_pre; i++) {
        free(c->pre[i].file);
        free(c->pre[i].text);
    }
    for (int i = 0; i < c->n_steps; i++) {
        free(c->steps[i].text);
        for (int k = 0; k < c->steps[i].n_expect; k++)
            free(c->steps[i].expect[k]);
        for (int k = 0; k < c->steps[i].n_reject; k++)
            free(c->steps[i].reject[k]);
    }
}

/* ---- the place a case runs in ---- */

struct ctx {
    struct hcase *c;
    char root[128], data[192], conf[192], sock[224], log[192];
    char bin[512], plugins[1100];
    char tools[1100]; /* tests/hostile/bin: helpers for the steps */
    int port;    /* busy-port */
    int port_fd; /* holds it */
    pid_t node;  /* setup running */
    int held[128];
    int n_held;
};

/* Expand {root} {data} {conf} {sock} {bin} {plugins} {port}, {repeat N
 * TEXT} and {hex HHHH...} (bytes, NUL included).  *len gets the length. */
/* The '}' that closes the '{' at p (placeholders nest), or NULL. */
static const char *closing(const char *p)
{
    int depth = 0;

    for (; *p; p++) {
        if (*p == '{')
            depth++;
        else if (*p == '}' && --depth == 0)
            return p;
    }
    return NULL;
}

static void expand_into(const struct ctx *x, const char *in, size_t n,
                        struct ol__buf *b)
{
    const char *end = in + n;

    while (in < end) {
        const char *close;
        char key[64], num[16];
        size_t klen;

        if (*in != '{' || (close = closing(in)) == NULL || close >= end) {
            ol__buf_append(b, in, 1);
            in++;
            continue;
        }
        klen = (size_t)(close - in - 1);
        snprintf(key, sizeof key, "%.*s", (int)(klen < 63 ? klen : 63),
                 in + 1);
        if (strcmp(key, "root") == 0)
            ol__buf_append(b, x->root, strlen(x->root));
        else if (strcmp(key, "data") == 0)
            ol__buf_append(b, x->data, strlen(x->data));
        else if (strcmp(key, "conf") == 0)
            ol__buf_append(b, x->conf, strlen(x->conf));
        else if (strcmp(key, "sock") == 0)
            ol__buf_append(b, x->sock, strlen(x->sock));
        else if (strcmp(key, "bin") == 0)
            ol__buf_append(b, x->bin, strlen(x->bin));
        else if (strcmp(key, "plugins") == 0)
            ol__buf_append(b, x->plugins, strlen(x->plugins));
        else if (strcmp(key, "port") == 0) {
            snprintf(num, sizeof num, "%d", x->port);
            ol__buf_append(b, num, strlen(num));
        } else if (strncmp(key, "repeat ", 7) == 0) {
            const char *text = in + 8;
            char *rest;
            long count = strtol(text, &rest, 10);

            while (*rest == ' ')
                rest++;
            for (long i = 0; i < count; i++)
                expand_into(x, rest, (size_t)(close - rest), b);
        } else if (strncmp(key, "hex ", 4) == 0) {
            for (const char *h = in + 5; h + 1 < close; h += 2) {
                char byte[3] = {h[0], h[1], 0};
                uint8_t v = (uint8_t)strtoul(byte, NULL, 16);

                ol__buf_append(b, &v, 1);
            }
        } else {
            ol__buf_append(b, in, 1); /* not a placeholder */
            in++;
            continue;
        }
        in = close + 1;
    }
}

/* Expand {root} {data} {conf} {sock} {bin} {plugins} {port}, {repeat N
 * TEXT} (TEXT may hold placeholders) and {hex HHHH...} (bytes, NUL
 * included).  *len gets the length. */
static char *expand(const struct ctx *x, const char *in, size_t *len)
{
    struct ol__buf b;

    ol__buf_init(&b);
    expand_into(x, in, strlen(in), &b);
    ol__buf_append(&b, "", 1);
    if (len)
        *len = b.len - 1;
    return (char *)b.base;
}

static const char node_agents[] =
    "[checkpoint]\n"
    "retain = 0\n"
    "[agent.c1]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 10}\n"
    "[agent.c2]\n"
    "kind = counter\n"
    "config = {\"interval_ms\": 10}\n";

static void write_conf(const char *path, const char *data,
                       const char *plugins)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f, "%s", path);
    fprintf(f,
            "[node]\ndata_dir = %s\nplugin_dir = %s\nlog_level = info\n%s",
            data, plugins, node_agents);
    fclose(f);
}

static int sh(const char *cmd)
{
    int st = system(cmd);

    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static pid_t spawn_node(const char *conf, const char *log)
{
    pid_t pid = fork();

    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(td_bin("outlastd"), "outlastd", "--config", conf,
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int answers(const char *sock)
{
    static const uint8_t req[] = {0x81, 0xa2, 'o', 'p', 0xa6, 's', 't',
                                  'a',  't',  'u', 's'};
    char err[OL_ERRMSG_SIZE];
    void *raw = NULL;
    size_t len = 0;
    int rv = ol__ctl_call(sock, req, sizeof req, &raw, &len, 2000, err);

    free(raw);
    return rv == 0;
}

static int64_t max_seq(const char *data)
{
    char path[256];
    sqlite3 *db;
    int64_t v;

    snprintf(path, sizeof path, "%s/outlast.db", data);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return -1;
    sqlite3_busy_timeout(db, 2000);
    v = td_q1(db, "SELECT coalesce(min(m), 0) FROM (SELECT max(seq) AS m "
                  "FROM checkpoints GROUP BY agent)");
    sqlite3_close(db);
    return v;
}

#define TEMPLATE_SEQ 100

/* A data dir where a node ran its two agents for a while and then
 * stopped (SIGTERM) or died (SIGKILL): made once per suite run, copied
 * into each case. */
static const char *template_dir(const char *kind)
{
    static char dir[256];
    char data[300], conf[300], log[300], lock[300], cmd[700];
    int fd;
    pid_t pid;

    snprintf(dir, sizeof dir, "/tmp/ol-hostile-%ld-%s", (long)getppid(),
             kind);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(lock, sizeof lock, "/tmp/ol-hostile-%ld.lock", (long)getppid());
    fd = open(lock, O_RDWR | O_CREAT, 0600);
    cr_assert(fd >= 0);
    flock(fd, LOCK_EX);
    snprintf(conf, sizeof conf, "%s/ready", dir);
    if (access(conf, F_OK) == 0) {
        close(fd);
        return dir;
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    cr_assert_eq(sh(cmd), 0);
    snprintf(conf, sizeof conf, "%s/outlast.ini", dir);
    snprintf(log, sizeof log, "%s/outlastd.log", dir);
    write_conf(conf, data, td_plugin_dirs());
    pid = spawn_node(conf, log);
    {
        char sock[320];
        uint64_t end = td_ms() + 30000;

        snprintf(sock, sizeof sock, "%s/control.sock", data);
        /* Long enough that half of the WAL holds far more commits than
         * node.state may trail by (one write, OL_NSTATE_INTERVAL_MS
         * apart: about 10 steps of each agent here), short enough that
         * the WAL stays below OL_WALCK_PAGES (100 steps of each agent
         * write about 4 MiB of it): a background checkpoint would restart
         * the WAL from its beginning, and its second half would then hold
         * nothing a node needs. */
        while (td_ms() < end &&
               !(answers(sock) && max_seq(data) >= TEMPLATE_SEQ))
            td_sleep_ms(20);
        cr_assert_geq(max_seq(data), TEMPLATE_SEQ,
                      "template node made too little progress; see %s", log);
    }
    kill(pid, strcmp(kind, "killed") == 0 ? SIGKILL : SIGTERM);
    waitpid(pid, NULL, 0);
    snprintf(conf, sizeof conf, "%s/ready", dir);
    close(open(conf, O_WRONLY | O_CREAT, 0600));
    close(fd);
    return dir;
}

/* Remove the templates once every case has run (in the runner). */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    char cmd[128];

    (void)stats;
    snprintf(cmd, sizeof cmd, "rm -rf /tmp/ol-hostile-%ld-* "
                              "/tmp/ol-hostile-%ld.lock",
             (long)getpid(), (long)getpid());
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove the hostile-suite templates\n");
}

static void busy_port(struct ctx *x)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;

    x->port_fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(x->port_fd >= 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(x->port_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(x->port_fd, 1), 0);
    cr_assert_eq(getsockname(x->port_fd, (struct sockaddr *)&sa, &len), 0);
    x->port = ntohs(sa.sin_port);
}

/* Overwrite the nth page of type `type` of `table` (dbstat) with junk. */
static void smash(const struct ctx *x, const char *spec)
{
    char table[64], type[16], path[256];
    int nth = 0;

    cr_assert_eq(sscanf(spec, "%63s %15s %d", table, type, &nth), 3,
                 "smash: TABLE TYPE NTH, not '%s'", spec);
    snprintf(path, sizeof path, "%s/outlast.db", x->data);
    td_smash_page(path, td_page(path, table, type, nth));
}

static void run_sqlite(const struct ctx *x, const char *file,
                       const char *sql)
{
    char *p = expand(x, file, NULL), *q = expand(x, sql, NULL), *err = NULL;
    sqlite3 *db;

    cr_assert_eq(sqlite3_open(p, &db), SQLITE_OK, "%s", p);
    cr_assert_eq(sqlite3_exec(db, q, NULL, NULL, &err), SQLITE_OK,
                 "%s: sqlite %s: %s", x->c->name, p, err);
    sqlite3_close(db);
    free(p);
    free(q);
}

static char *run_cmd(const struct ctx *x, const char *text, int *code);

static void prepare(struct ctx *x)
{
    struct hcase *c = x->c;
    char cmd[1024];

    snprintf(x->root, sizeof x->root, "/tmp/ol-hc-XXXXXX");
    cr_assert_not_null(mkdtemp(x->root));
    snprintf(x->data, sizeof x->data, "%s/data", x->root);
    snprintf(x->conf, sizeof x->conf, "%s/outlast.ini", x->root);
    snprintf(x->sock, sizeof x->sock, "%s/control.sock", x->data);
    snprintf(x->log, sizeof x->log, "%s/outlastd.log", x->root);
    snprintf(x->bin, sizeof x->bin, "%s", td_bin("outlastd"));
    *strrchr(x->bin, '/') = '\0';
    snprintf(x->plugins, sizeof x->plugins, "%s", td_plugin_dirs());
    snprintf(x->tools, sizeof x->tools, "%s/tests/hostile/bin",
             getenv("OL_SOURCE_ROOT") ? getenv("OL_SOURCE_ROOT") : ".");
    x->port_fd = -1;
    write_conf(x->conf, x->data, x->plugins);
    if (strcmp(c->setup, "stopped") == 0 || strcmp(c->setup, "running") == 0 ||
        strcmp(c->setup, "killed") == 0) {
        const char *t = template_dir(strcmp(c->setup, "killed") == 0
                                         ? "killed"
                                         : "stopped");

        snprintf(cmd, sizeof cmd, "cp -a '%s/data' '%s/data' && rm -f "
                                  "'%s/data/control.sock'",
                 t, x->root, x->root);
        cr_assert_eq(sh(cmd), 0);
    } else {
        cr_assert_str_eq(c->setup, "none", "%s: unknown setup '%s'", c->name,
                         c->setup);
    }
    if (c->busy_port)
        busy_port(x);
    for (int i = 0; i < c->n_files; i++) {
        char *name = expand(x, c->files[i].name, NULL), path[512];

        snprintf(path, sizeof path, "%s%s%s", name[0] == '/' ? "" : x->root,
                 name[0] == '/' ? "" : "/", name);
        if (c->files[i].content == NULL) {
            cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo %s", path);
        } else {
            size_t len;
            char *body = expand(x, c->files[i].content, &len);
            FILE *f = fopen(path, "wb");

            cr_assert_not_null(f, "%s", path);
            cr_assert_eq(fwrite(body, 1, len, f), len);
            fclose(f);
            free(body);
        }
        free(name);
    }
    for (int i = 0; i < c->n_pre; i++) {
        char *e, *out;
        int code;

        if (c->pre[i].kind == 'q') {
            run_sqlite(x, c->pre[i].file, c->pre[i].text);
            continue;
        }
        if (c->pre[i].kind == 'x') {
            smash(x, c->pre[i].text);
            continue;
        }
        out = run_cmd(x, c->pre[i].text, &code);
        e = expand(x, c->pre[i].text, NULL);
        cr_assert_eq(code, 0, "%s: shell '%s' failed:\n%s", c->name, e, out);
        free(e);
        free(out);
    }
    if (strcmp(c->setup, "running") == 0) {
        uint64_t end = td_ms() + 20000;

        x->node = spawn_node(x->conf, x->log);
        while (td_ms() < end && !answers(x->sock))
            td_sleep_ms(20);
        cr_assert(answers(x->sock), "%s: the node did not start; see %s",
                  c->name, x->log);
    }
}

static void finish(struct ctx *x)
{
    char cmd[256];

    for (int i = 0; i < x->n_held; i++)
        close(x->held[i]);
    if (x->node > 0) {
        kill(x->node, SIGKILL);
        waitpid(x->node, NULL, 0);
    }
    if (x->port_fd >= 0)
        close(x->port_fd);
    if (getenv("OL_KEEP_TMP") == NULL) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", x->root);
        if (sh(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", x->root);
    }
}

/* ---- what "nothing stored changed" means ---- */

/* The data dir's files (not the lock, socket or shared-memory index),
 * each as its name and content: a string to compare. */
static char *snapshot_files(const struct ctx *x)
{
    struct ol__buf b;
    DIR *d = opendir(x->data);
    struct dirent *e;

    ol__buf_init(&b);
    if (d == NULL) {
        ol__buf_append(&b, "(no data dir)", 14);
        return (char *)b.base;
    }
    while ((e = readdir(d)) != NULL) {
        char path[512];
        size_t n = strlen(e->d_name);
        FILE *f;
        char chunk[65536];
        size_t got;

        if (e->d_name[0] == '.' || strcmp(e->d_name, "outlastd.lock") == 0 ||
            strcmp(e->d_name, "control.sock") == 0 ||
            (n > 4 && strcmp(e->d_name + n - 4, "-shm") == 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", x->data, e->d_name);
        f = fopen(path, "rb");
        if (f == NULL)
            continue;
        ol__buf_append(&b, "\n== ", 4);
        ol__buf_append(&b, e->d_name, n);
        ol__buf_append(&b, "\n", 1);
        while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
            ol__buf_append(&b, chunk, got);
        fclose(f);
    }
    closedir(d);
    ol__buf_append(&b, "", 1);
    return (char *)b.base;
}

struct rows {
    char (*agent)[72];
    int64_t *seq;
    uint8_t (*hash)[32];
    size_t n;
};

static void snapshot_rows(const struct ctx *x, struct rows *r)
{
    char path[256];
    sqlite3 *db;
    sqlite3_stmt *st;
    size_t cap = 1024;

    memset(r, 0, sizeof *r);
    snprintf(path, sizeof path, "%s/outlast.db", x->data);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return;
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, "SELECT agent, seq, hash FROM checkpoints", -1,
                           &st, NULL) == SQLITE_OK) {
        r->agent = malloc(cap * sizeof *r->agent);
        r->seq = malloc(cap * sizeof *r->seq);
        r->hash = malloc(cap * sizeof *r->hash);
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (r->n == cap) {
                cap *= 2;
                r->agent = realloc(r->agent, cap * sizeof *r->agent);
                r->seq = realloc(r->seq, cap * sizeof *r->seq);
                r->hash = realloc(r->hash, cap * sizeof *r->hash);
            }
            snprintf(r->agent[r->n], 72, "%s", sqlite3_column_text(st, 0));
            r->seq[r->n] = sqlite3_column_int64(st, 1);
            if (sqlite3_column_bytes(st, 2) == 32)
                memcpy(r->hash[r->n], sqlite3_column_blob(st, 2), 32);
            r->n++;
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

static void expect_rows_kept(const struct ctx *x, const struct rows *before)
{
    struct rows after;
    size_t lost = 0;

    snapshot_rows(x, &after);
    for (size_t i = 0; i < before->n; i++) {
        int found = 0;

        for (size_t j = 0; j < after.n && !found; j++)
            found = after.seq[j] == before->seq[i] &&
                    strcmp(after.agent[j], before->agent[i]) == 0 &&
                    memcmp(after.hash[j], before->hash[i], 32) == 0;
        lost += !found;
    }
    cr_expect_eq(lost, 0, "%s: %zu stored checkpoints were lost or changed",
                 x->c->name, lost);
    free(after.agent);
    free(after.seq);
    free(after.hash);
}

/* ---- steps ---- */

static char *run_cmd(const struct ctx *x, const char *text, int *code)
{
    char *e = expand(x, text, NULL), *out = NULL, *cmd;
    size_t n = strlen(e) + sizeof x->bin + sizeof x->tools +
               sizeof x->root + 128;

    cmd = malloc(n);
    snprintf(cmd, n, "cd '%s' && PATH='%s':'%s':\"$PATH\" timeout -s KILL %d "
                     "sh -c '%s' </dev/null",
             x->root, x->bin, x->tools, STEP_TIMEOUT_S,
             "eval \"$OL_STEP\"");
    setenv("OL_STEP", e, 1);
    *code = td_sh(&out, "%s", cmd);
    unsetenv("OL_STEP");
    free(cmd);
    free(e);
    return out;
}

/* Send raw bytes; the output is every reply's error and code, then
 * "[closed]" if the node hung up. */
static char *run_frame(const struct ctx *x, const char *hex)
{
    struct sockaddr_un sa;
    struct ol__buf out;
    size_t len;
    char *bytes = expand(x, hex, &len);
    uint8_t buf[1 << 16];
    size_t have = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", x->sock);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    if (len)
        cr_assert_eq(send(fd, bytes, len, MSG_NOSIGNAL), (ssize_t)len);
    shutdown(fd, SHUT_WR);
    ol__buf_init(&out);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t r;

        if (poll(&p, 1, 3000) != 1) {
            ol__buf_append(&out, "[no answer]", 11);
            break;
        }
        r = recv(fd, buf + have, sizeof buf - have, 0);
        if (r <= 0) {
            ol__buf_append(&out, "[closed]", 8);
            break;
        }
        have += (size_t)r;
        while (have >= 4) {
            uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
                         (uint32_t)buf[2] << 8 | buf[3];
            msgpack_unpacked u;
            size_t off = 0;

            if (have < 4 + n)
                break;
            msgpack_unpacked_init(&u);
            if (msgpack_unpack_next(&u, (const char *)buf + 4, n, &off) ==
                MSGPACK_UNPACK_SUCCESS) {
                const msgpack_object *er = td_get(&u.data, "error");
                const msgpack_object *co = td_get(&u.data, "code");

                if (er && er->type == MSGPACK_OBJECT_STR)
                    ol__buf_append(&out, er->via.str.ptr, er->via.str.size);
                ol__buf_append(&out, " (", 2);
                if (co && co->type == MSGPACK_OBJECT_STR)
                    ol__buf_append(&out, co->via.str.ptr, co->via.str.size);
                ol__buf_append(&out, ")\n", 2);
            }
            msgpack_unpacked_destroy(&u);
            memmove(buf, buf + 4 + n, have - 4 - n);
            have -= 4 + n;
        }
    }
    close(fd);
    free(bytes);
    ol__buf_append(&out, "", 1);
    return (char *)out.base;
}

static void hold(struct ctx *x, int n)
{
    for (int i = 0; i < n && x->n_held < 128; i++) {
        struct sockaddr_un sa;
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);

        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", x->sock);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        x->held[x->n_held++] = fd;
    }
}

static void run_case(const char *path)
{
    struct hcase c;
    struct ctx x;
    struct rows before;
    char *files_before = NULL;

    parse_case(path, &c);
    memset(&x, 0, sizeof x);
    x.c = &c;
    prepare(&x);
    cr_log_info("%s: %s", c.name, c.what);
    for (int i = 0; i < c.n_steps; i++) {
        struct step *s = &c.steps[i];
        char *out = NULL;
        int code = -1, last = i == c.n_steps - 1;

        if (last && strcmp(c.unchanged, "files") == 0)
            files_before = snapshot_files(&x);
        if (last && strcmp(c.unchanged, "rows") == 0)
            snapshot_rows(&x, &before);
        if (s->kind == STEP_HOLD) {
            hold(&x, s->hold);
            continue;
        }
        out = s->kind == STEP_RUN ? run_cmd(&x, s->text, &code)
                                  : run_frame(&x, s->text);
        if (s->exit >= 0)
            cr_expect_eq(code, s->exit,
                         "%s (%s): step %d exited %d, expected %d; "
                         "output:\n%s",
                         c.name, c.what, i + 1, code, s->exit, out);
        for (int k = 0; k < s->n_expect; k++) {
            char *want = expand(&x, s->expect[k], NULL);

            cr_expect(strstr(out, want) != NULL,
                      "%s (%s): step %d output lacks '%s':\n%s", c.name,
                      c.what, i + 1, want, out);
            free(want);
        }
        for (int k = 0; k < s->n_reject; k++) {
            char *bad = expand(&x, s->reject[k], NULL);

            cr_expect(strstr(out, bad) == NULL,
                      "%s (%s): step %d output has '%s':\n%s", c.name,
                      c.what, i + 1, bad, out);
            free(bad);
        }
        free(out);
    }
    /* The node keeps serving after whatever it was sent. */
    if (x.node > 0)
        cr_expect(answers(x.sock), "%s: the node stopped answering; see %s",
                  c.name, x.log);
    if (files_before) {
        char *after = snapshot_files(&x);

        cr_expect(strcmp(files_before, after) == 0,
                  "%s (%s): the last step changed stored files", c.name,
                  c.what);
        free(after);
        free(files_before);
    } else if (strcmp(c.unchanged, "rows") == 0) {
        expect_rows_kept(&x, &before);
        free(before.agent);
        free(before.seq);
        free(before.hash);
    }
    finish(&x);
    free_case(&c);
}

/* ---- one test per case file ---- */

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

ParameterizedTestParameters(hostile, cases)
{
    static char **list;
    static size_t n;
    char dir[1024], sub[1200];
    const char *src = getenv("OL_SOURCE_ROOT");
    DIR *top, *d;
    struct dirent *e, *f;

    if (list)
        return cr_make_param_array(char *, list, n);
    snprintf(dir, sizeof dir, "%s/tests/hostile", src ? src : ".");
    top = opendir(dir);
    if (top == NULL)
        return cr_make_param_array(char *, NULL, 0);
    list = cr_malloc(512 * sizeof *list);
    while ((e = readdir(top)) != NULL && n < 512) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
        if ((d = opendir(sub)) == NULL)
            continue;
        while ((f = readdir(d)) != NULL && n < 512) {
            size_t len = strlen(f->d_name);

            if (len < 6 || strcmp(f->d_name + len - 5, ".case") != 0)
                continue;
            list[n] = cr_malloc(strlen(sub) + len + 2);
            sprintf(list[n], "%s/%s", sub, f->d_name);
            n++;
        }
        closedir(d);
    }
    closedir(top);
    qsort(list, n, sizeof *list, by_name);
    return cr_make_param_array(char *, list, n);
}

ParameterizedTest(char **path, hostile, cases, .timeout = 240)
{
    run_case(*path);
}

/* The suite must find its cases: an empty directory would pass silently. */
Test(hostile, cases_are_found)
{
    char dir[1024];
    const char *src = getenv("OL_SOURCE_ROOT");

    snprintf(dir, sizeof dir, "%s/tests/hostile/config", src ? src : ".");
    cr_assert(access(dir, F_OK) == 0, "no case directory at %s", dir);
}
