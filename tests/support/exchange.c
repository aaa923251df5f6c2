/*
 * exchange.c - an outlast-exchange process for tests (see exchange.h).
 */
#include "exchange.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int xch_init(struct xch *x)
{
    const char *tmp = getenv("TMPDIR");

    memset(x, 0, sizeof(*x));
    snprintf(x->dir, sizeof(x->dir), "%s/ol-exchange-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(x->dir) == NULL)
        return -1;
    chmod(x->dir, 0755);
    snprintf(x->ledger, sizeof(x->ledger), "%s/ledger", x->dir);
    snprintf(x->rejects, sizeof(x->rejects), "%s/ledger.rejects", x->dir);
    snprintf(x->log, sizeof(x->log), "%s/exchange.log", x->dir);
    return 0;
}

static void child(const struct xch *x, int out, const char *exe,
                  const char *const a[4])
{
    int log = open(x->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(out, 1);
    if (log >= 0)
        dup2(log, 2);
    execl(exe, exe, "--port", "0", "--ledger", x->ledger, a[0], a[1], a[2],
          a[3], (char *)NULL);
    _exit(127);
}

/* Reads the "listening on" line from fd, for up to 10 s. */
static int read_port(int fd, int *port)
{
    char line[128] = "";
    size_t len = 0;

    for (int i = 0; i < 100 && strchr(line, '\n') == NULL; i++) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t r;
        if (poll(&p, 1, 100) <= 0)
            continue;
        r = read(fd, line + len, sizeof(line) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        line[len] = '\0';
    }
    return sscanf(line, "listening on 127.0.0.1:%d", port) == 1 ? 0 : -1;
}

int xch_start(struct xch *x, const char *a1, const char *a2, char *err,
              size_t cap)
{
    return xch_start4(x, a1, a2, NULL, NULL, err, cap);
}

int xch_start4(struct xch *x, const char *a1, const char *a2, const char *a3,
               const char *a4, char *err, size_t cap)
{
    const char *const a[4] = {a1, a2, a3, a4};
    const char *root = getenv("OL_BUILD_ROOT");
    char exe[PATH_MAX];
    int fds[2], rv;

    if (root == NULL) {
        snprintf(err, cap, "OL_BUILD_ROOT is not set (run with meson test)");
        return -1;
    }
    snprintf(exe, sizeof(exe), "%s/examples/exchange/outlast-exchange", root);
    if (pipe(fds) != 0 || (x->pid = fork()) < 0) {
        snprintf(err, cap, "pipe/fork: %s", strerror(errno));
        return -1;
    }
    if (x->pid == 0)
        child(x, fds[1], exe, a);
    close(fds[1]);
    rv = read_port(fds[0], &x->port);
    close(fds[0]);
    if (rv != 0) {
        snprintf(err, cap, "%s did not say where it listens (see %s)", exe,
                 x->log);
        xch_stop(x, SIGKILL);
    }
    return rv;
}

void xch_stop(struct xch *x, int sig)
{
    if (x->pid > 0) {
        kill(x->pid, sig);
        waitpid(x->pid, NULL, 0);
    }
    x->pid = 0;
}

void xch_cleanup(struct xch *x)
{
    static const char *files[] = {"ledger", "ledger.rejects", "ledger.epochs",
                                  "exchange.log"};
    char p[PATH_MAX + 32];

    xch_stop(x, SIGKILL);
    if (x->dir[0] == '\0')
        return;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", x->dir, files[i]);
        unlink(p);
    }
    rmdir(x->dir);
    x->dir[0] = '\0';
}

int xch_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, ch;

    if (f == NULL)
        return 0;
    while ((ch = fgetc(f)) != EOF)
        n += ch == '\n';
    fclose(f);
    return n;
}

int xch_file_has(const char *path, const char *needle)
{
    static char buf[64 << 10];
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, needle) != NULL;
}
