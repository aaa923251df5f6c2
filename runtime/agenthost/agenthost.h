/*
 * outlast-agent-host: the process that runs one plugin's agents on behalf
 * of a node (see runtime/hostproc.c for the node's side and runtime/ipc.h
 * for the wire).  It holds no node key, no database and no socket but the
 * one to its node; it is started fresh (exec, not fork) so none of the
 * node's memory is in it, and sandbox.c takes away what else it can.
 */
#ifndef OL_AGENTHOST_H
#define OL_AGENTHOST_H

#include <limits.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/map.h"
#include "runtime/mark.h"
#include "base/mpr.h"
#include "runtime/plugin.h"
#include "runtime/wpool.h"

struct ahost_opts {
    int fd;            /* the socket to the node */
    int mark_fd;       /* the shared step-mark page */
    int code_fd;       /* the plugin's private copy, opened by the node */
    long parent;       /* the node's pid */
    char kind[OL_KIND_MAX + 1];
    char node[OL_NAME_MAX + 1];
    unsigned workers;
    unsigned memory_mb; /* 0: no limit */
    char user[64];     /* drop to this user when started as root */
    char source[PATH_MAX]; /* the file the node copied, for messages */
    int allow_network;
    char hide[PATH_MAX];   /* the node's data directory (absolute) */
};

/* svc.c: agent instances, the host services and the items of a batch. */
int ahost_svc_init(const struct ahost_opts *o, struct ol__mark *mark,
                   const struct ol_agent_vtable *vt, int notify_fd);
/* Handle every item of one batch frame, appending results to `out`
 * (flushing through `flush` when it grows).  Returns 0, or OL_EMALFORMED
 * for a frame the node should never have sent. */
int ahost_svc_batch(const void *p, size_t len);
/* Hand finished work back: as R_WORK items, or to closing instances. */
void ahost_svc_work_done(void);
/* Results waiting to be written. */
int ahost_svc_pending(void);
extern const struct ol_host ahost_table;

/* main.c: write out everything the batch produced. */
int ahost_flush(void);
/* The result buffer items are appended to; ahost_begin() starts a frame
 * in it when needed. */
struct ol__buf *ahost_out(void);
void ahost_item_added(void);

/* sandbox.c */
int ahost_close_fds(const int *keep, int n_keep);
void ahost_limits(const struct ahost_opts *o);
int ahost_drop_user(const struct ahost_opts *o, char *errmsg);
int ahost_seccomp(const struct ahost_opts *o, char *errmsg);
/* With Landlock: no access to anything under o->hide (the node's key,
 * database and control socket) but the plugin's own file. */
void ahost_hide(const struct ahost_opts *o);

#endif
