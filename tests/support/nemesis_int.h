/*
 * The nemesis driver's state, shared by the driver (nemesis.c), its client
 * (nemclient.c) and its checker (nemcheck.c).
 */
#ifndef OL_TEST_NEMESIS_INT_H
#define OL_TEST_NEMESIS_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "faults.h"
#include "nemesis.h"

#define NEM_AGENTS_MAX 16
#define NEM_LEDGER "ledger"
/* The key under which each `send` carries the client's own request id, so
 * that a node that deduplicates commands can recognise a retry. */
#define NEM_REQUEST_ID_KEY "request_id"

/* One numbered message, as the client saw it. */
struct nem_msg {
    int64_t first_ms; /* wall clock of the first attempt */
    int64_t ack_ms;   /* wall clock of the acknowledgement */
    int attempts;
    int acked;
    int ack_node; /* index of the node that acknowledged it */
};

struct nem_client {
    pthread_t th;
    int started;
    int stop;           /* set by the driver; read atomically */
    struct nem *m;
    uint64_t next;      /* the number the next new message carries */
    uint64_t first;     /* first number of the current round */
    struct nem_msg *msgs; /* msgs[k - 1] */
    size_t cap;
    int node;           /* the node the client talks to now */
    int timeout_ms, pace_ms, giveup_ms;
    char log_path[300]; /* every attempt, one line each */
};

struct nem {
    struct nem_opts o;
    uint64_t seed;
    int rounds, round;
    int failover_ms;
    struct tc c;
    struct nf_net net;
    int use_net, made;
    struct nf_ctl ctl[TC_MAX_NODES];
    char dir[200];     /* the run's files */
    char steps[240];   /* the step logs (dir/steps) */
    int n_agents;
    char agents[NEM_AGENTS_MAX + 1][32]; /* agents[0] is the ledger */
    struct nem_client cl;
    struct nem_result res;
    char what[200];    /* the current round's faults, for reports */
    char **seen;       /* keys of violations already reported */
    size_t n_seen, cap_seen;
};

/* ---- the client (nemclient.c) ---- */

void nem_client_start(struct nem *m);
/* Stop sending new messages, finish the current one (bounded), join. */
void nem_client_stop(struct nem *m);
void nem_client_free(struct nem *m);
/* The client's attempts at message k, as text (for evidence). */
void nem_client_attempts(struct nem *m, uint64_t k, char *out, size_t cap);

/* ---- the checker (nemcheck.c) ---- */

/* Report one violation of `inv` unless `key` was reported before; the
 * message is logged with the seed, round and faults.  Returns 1 if new. */
int nem_violation(struct nem *m, int inv, const char *key, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

/* (b), (c), (d) over everything recorded so far, reading node `via`'s
 * database.  Each returns the number of new violations. */
int nem_check_steps(struct nem *m, int via);
int nem_check_sends(struct nem *m, int via);
int nem_check_placements(struct nem *m, int via);

/* Wait (bounded) until the ledger's committed state in node via's
 * database holds every acknowledged message; 1 if it does. */
int nem_wait_ledger(struct nem *m, int via, int timeout_ms);

int64_t nem_wall_ms(void);

#endif
