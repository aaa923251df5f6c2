/*
 * An outlast-exchange process (examples/exchange) for tests: started in a
 * temp dir of its own on a free loopback port, stopped by pid.  Needs
 * nothing of outlastd, so plugin unit tests can use it too.
 */
#ifndef OL_TEST_EXCHANGE_H
#define OL_TEST_EXCHANGE_H

#include <limits.h>
#include <sys/types.h>

struct xch {
    char dir[PATH_MAX];          /* the temp dir, mode 0755 */
    char ledger[PATH_MAX + 16];  /* dir/ledger */
    char rejects[PATH_MAX + 32]; /* dir/ledger.rejects */
    char log[PATH_MAX + 16];     /* dir/exchange.log: its stderr */
    pid_t pid;                   /* 0 when not running */
    int port;
};

/* Makes the temp dir under $TMPDIR (else /tmp).  Returns 0 or -1. */
int xch_init(struct xch *x);

/* Runs $OL_BUILD_ROOT/examples/exchange/outlast-exchange on the ledger
 * with up to two more arguments (NULL ends them) and waits up to 10 s for
 * its "listening on" line.  Returns 0, or -1 with err filled. */
int xch_start(struct xch *x, const char *a1, const char *a2, char *err,
              size_t cap);

/* The same with up to four more arguments (NULL ends them). */
int xch_start4(struct xch *x, const char *a1, const char *a2, const char *a3,
               const char *a4, char *err, size_t cap);

/* Sends `sig` and reaps the process; nothing if it is not running. */
void xch_stop(struct xch *x, int sig);

/* Kills the process and removes the temp dir and its files. */
void xch_cleanup(struct xch *x);

/* Lines in a file (0 if it does not exist). */
int xch_lines(const char *path);

/* True when the first 64 KiB of the file contain `needle`. */
int xch_file_has(const char *path, const char *needle);

#endif
