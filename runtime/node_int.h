/*
 * What the node's own files (node.c, node_init.c, node_start.c,
 * node_stop.c) share and nobody else needs.
 */
#ifndef OL_NODE_INT_H
#define OL_NODE_INT_H

#include <uv.h>

struct ol__node;

/* node_start.c: a stop signal arrived (sig_async). */
void ol__node_stop_signal_cb(uv_async_t *h);

/* node_start.c: SIGTERM and SIGINT stop `n` from now on; with NULL
 * (at close) they no longer reach a node. */
void ol__node_signals(struct ol__node *n);

#endif
