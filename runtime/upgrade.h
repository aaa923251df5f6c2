/*
 * `outlast upgrade KIND [FILE]`: load new plugin code, make it current and
 * roll this node's agents of the kind onto it at their next checkpoint
 * boundary (see upgrade.c).
 */
#ifndef OL_UPGRADE_H
#define OL_UPGRADE_H

#include "ctl.h"

struct ol__node;

/* Answer the control request once the new code has loaded (or failed
 * to): {kind, version, hash, agents}.  `file` is an absolute path, or
 * NULL for the kind's file in the plugin directories. */
void ol__op_upgrade(struct ol__node *n, struct ol__ctl_req *req,
                    const char *kind, const char *file);

#endif
