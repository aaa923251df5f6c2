/*
 * Sizes that several layers share: the longest name, kind, label list or
 * address that any part of outlast accepts.  A buffer that holds one is
 * declared with the limit plus one for the NUL, never with a bare number.
 */
#ifndef OL_SIZES_H
#define OL_SIZES_H

#define OL_NAME_MAX 64      /* an agent name */
#define OL_KIND_MAX 64      /* a plugin kind (names a plugin file) */
#define OL_VERSION_MAX 64   /* a plugin's version string */
#define OL_NODE_NAME_MAX 64 /* a node's name in the config */
#define OL_CLUSTER_NAME_MAX 64
#define OL_REASON_MAX 200   /* a quarantine or crash reason */
#define OL_LABELS_MAX 200   /* "k=v,k=v" */
#define OL_ADDR_MAX 128     /* "host:port" */
#define OL_HOST_MAX 256
#define OL_PORT_MAX 8

#endif
