/*
 * What an agent host writes to its standard output and error (its own
 * notes, a plugin's printf, a sanitizer's report) reaches the node through
 * a pipe and goes into the daemon log a line at a time, in the daemon's
 * format, so a JSON log stays one object per line.  Lines are tagged with
 * the plugin and the host's pid, control characters are replaced, a line
 * is cut at OUT_LINE_MAX bytes, and a host gets at most OUT_LINES lines per
 * OUT_WINDOW_MS: a plugin that prints in a loop cannot drown the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "hostproc.h"
#include "base/log.h"

#define OUT_LINE_MAX 1000
#define OUT_WINDOW_MS 10000
#define OUT_LINES 200

static void emit(struct ol__hostproc *hp, const char *p, size_t len)
{
    static const char self[] = "outlast-agent-host: ";
    char line[OUT_LINE_MAX + 1];
    uint64_t now = ol__mono_ms();

    if (now - hp->out_window_ms >= OUT_WINDOW_MS) {
        if (hp->out_dropped)
            ol_log(OL_LOG_WARN,
                   "agent host for '%s' (pid %d): %u more line(s) of its "
                   "output dropped",
                   hp->out_kind, hp->out_pid, hp->out_dropped);
        hp->out_window_ms = now;
        hp->out_lines = 0;
        hp->out_dropped = 0;
    }
    if (hp->out_lines >= OUT_LINES) {
        hp->out_dropped++;
        return;
    }
    hp->out_lines++;
    if (len >= sizeof self - 1 && memcmp(p, self, sizeof self - 1) == 0) {
        p += sizeof self - 1;
        len -= sizeof self - 1;
    }
    if (len > OUT_LINE_MAX)
        len = OUT_LINE_MAX;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];

        line[i] = (ch < 0x20 && ch != '\t') || ch == 0x7f ? '?' : (char)ch;
    }
    line[len] = '\0';
    ol_log(OL_LOG_WARN, "agent host for '%s' (pid %d): %s", hp->out_kind,
           hp->out_pid, line);
}

/* Emit the complete lines of what arrived; keep the rest for later. */
static void take(struct ol__hostproc *hp, const char *p, size_t n)
{
    struct ol__buf *b = &hp->out_part;

    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;

        if (b->len + k > OUT_LINE_MAX) {
            /* A line that long is cut; its tail starts the next one. */
            k = OUT_LINE_MAX - b->len;
            nl = NULL;
        }
        if (ol__buf_append(b, p, k) != 0)
            b->len = 0;
        if (nl || b->len >= OUT_LINE_MAX) {
            emit(hp, (const char *)b->base, b->len);
            b->len = 0;
        }
        p += k + (nl != NULL);
        n -= k + (nl != NULL);
    }
}

static void flush_part(struct ol__hostproc *hp)
{
    if (hp->out_part.len) {
        emit(hp, (const char *)hp->out_part.base, hp->out_part.len);
        hp->out_part.len = 0;
    }
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    /* One loop thread, and a read is handled before the next one. */
    static char chunk[16384];

    (void)h;
    (void)hint;
    buf->base = chunk;
    buf->len = sizeof chunk;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct ol__hostproc *hp = s->data;

    if (n > 0) {
        take(hp, buf->base, (size_t)n);
        return;
    }
    if (n < 0) {
        /* EOF: the host and anything it started have let go of it. */
        flush_part(hp);
        uv_read_stop(s);
    }
}

int ol__hp_out_open(struct ol__hostproc *hp, uv_loop_t *loop, int *child_fd)
{
    int fds[2];

    *child_fd = -1;
    ol__buf_init(&hp->out_part);
    if (pipe2(fds, O_CLOEXEC) != 0)
        return OL_EIO;
    uv_pipe_init(loop, &hp->outp, 0);
    hp->outp.data = hp;
    hp->out_init = 1;
    hp->handles++;
    if (uv_pipe_open(&hp->outp, fds[0]) != 0) {
        close(fds[0]);
        close(fds[1]);
        return OL_EIO;
    }
    *child_fd = fds[1];
    return 0;
}

void ol__hp_out_start(struct ol__hostproc *hp, const char *kind, int pid)
{
    snprintf(hp->out_kind, sizeof hp->out_kind, "%s", kind);
    hp->out_pid = pid;
    hp->out_window_ms = ol__mono_ms();
    uv_read_start((uv_stream_t *)&hp->outp, alloc_cb, read_cb);
}

void ol__hp_out_drain(struct ol__hostproc *hp)
{
    char chunk[4096];
    uv_os_fd_t fd;
    ssize_t n;
    int rounds = 0;

    if (!hp->out_init || !hp->out_kind[0] ||
        uv_is_closing((uv_handle_t *)&hp->outp) ||
        uv_fileno((uv_handle_t *)&hp->outp, &fd) != 0)
        return;
    /* Non-blocking: it stops at what is there now. */
    while (rounds++ < 64 && (n = read(fd, chunk, sizeof chunk)) > 0)
        take(hp, chunk, (size_t)n);
    flush_part(hp);
}

void ol__hp_out_close(struct ol__hostproc *hp, uv_close_cb cb)
{
    if (!hp->out_init || uv_is_closing((uv_handle_t *)&hp->outp))
        return;
    ol__hp_out_drain(hp);
    uv_close((uv_handle_t *)&hp->outp, cb);
}
