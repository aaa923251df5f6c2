/*
 * `olwan --probe ADDR`: a round trip measured without ping.  A TCP SYN to
 * a closed port on ADDR comes back as a RST one round trip later, so
 * connect() fails after exactly that; a cut link answers nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "olwan.h"

/* One TCP connect to a closed port: its round trip in ms, or -1 when
 * nothing came back within timeout_ms (a cut link). */
static double probe_once(const struct sockaddr_in *sa, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    uint64_t t0 = olwan__now_ns();
    double ms = -1;

    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 ||
        errno == ECONNREFUSED)
        ms = (double)(olwan__now_ns() - t0) / 1e6;
    else if (errno == EINPROGRESS && poll(&p, 1, timeout_ms) == 1)
        ms = (double)(olwan__now_ns() - t0) / 1e6;
    close(fd);
    return ms;
}

int olwan__probe(int argc, char **argv)
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
            olwan__parse_num(argv[i + 1], 1000, &x) == 0 && x >= 1)
            count = (int)x;
        else if (i + 1 < argc && strcmp(argv[i], "--timeout-ms") == 0 &&
                 olwan__parse_num(argv[i + 1], 60000, &x) == 0 && x >= 1)
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
