/*
 * The benchmark scraper: see scraper.h.  A deliberately plain client: one
 * request per connection, "Connection: close", read to EOF.
 */
#include "scraper.h"

#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* One GET; the number of bytes read, or -1 unless the answer was 200.
 * The first `cap` bytes are kept in `keep` when it is not NULL. */
static long get_keep(const char *target, const char *path, char *keep,
                     size_t cap)
{
    char host[64], port[16], req[256], buf[65536];
    const char *colon = strrchr(target, ':');
    struct addrinfo hints, *res = NULL;
    long total = 0;
    int fd, ok = 0;

    if (colon == NULL || (size_t)(colon - target) >= sizeof host)
        return -1;
    snprintf(host, sizeof host, "%.*s", (int)(colon - target), target);
    snprintf(port, sizeof port, "%s", colon + 1);
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path,
             target);
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(fd);
        return -1;
    }
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t n;

        if (poll(&p, 1, 5000) <= 0)
            break;
        n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        if (total == 0)
            ok = n >= 12 && memcmp(buf, "HTTP/1.1 200", 12) == 0;
        if (keep && (size_t)total < cap - 1) {
            size_t k = (size_t)n < cap - 1 - (size_t)total
                           ? (size_t)n
                           : cap - 1 - (size_t)total;

            memcpy(keep + total, buf, k);
            keep[(size_t)total + k] = '\0';
        }
        total += n;
    }
    close(fd);
    return ok ? total : -1;
}

static long get(const char *target, const char *path)
{
    return get_keep(target, path, NULL, 0);
}

long scraper_fetch(const char *target, const char *path, char *buf,
                   size_t cap)
{
    if (cap)
        buf[0] = '\0';
    return get_keep(target, path, buf, cap);
}

static void *run(void *arg)
{
    static const char *const paths[] = {"/metrics", "/api/status"};
    struct scraper *s = arg;

    while (!s->stop) {
        uint64_t t0 = now_us();

        for (int i = 0; i < s->n_targets && !s->stop; i++)
            for (int p = 0; p < 2; p++) {
                uint64_t t = now_us();
                long n = get(s->targets[i], paths[p]);
                uint64_t us = now_us() - t;

                if (n < 0) {
                    s->failed++;
                    continue;
                }
                s->ok++;
                s->bytes += (uint64_t)n;
                s->total_us += us;
                if (us > s->max_us)
                    s->max_us = us;
            }
        /* Sleep out the interval in small steps, so stop is prompt. */
        while (!s->stop && now_us() - t0 < (uint64_t)s->interval_ms * 1000) {
            struct timespec ts = {0, 20000000};

            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int scraper_start(struct scraper *s, unsigned interval_ms)
{
    s->interval_ms = interval_ms;
    s->stop = 0;
    s->ok = s->failed = s->bytes = s->total_us = s->max_us = 0;
    if (pthread_create(&s->thread, NULL, run, s) != 0)
        return -1;
    s->running = 1;
    return 0;
}

void scraper_stop(struct scraper *s)
{
    if (!s->running)
        return;
    s->stop = 1;
    pthread_join(s->thread, NULL);
    s->running = 0;
}
