/*
 * libraft 0.15's wire protocol as it crosses the transport: a streaming
 * parser, free of I/O, that sits in the pump between the network and
 * libraft's end of the socketpair, one per direction.
 *
 * Each message is a preamble (type u64, header length u64, little endian),
 * a header whose layout depends on the type, and for AppendEntries and
 * InstallSnapshot a payload whose length the header gives.  libraft 0.15
 * trusts all of it: a header shorter than its type needs is read past its
 * end, a claimed length is allocated as is, an entry whose length is not a
 * multiple of 8 or a configuration with a bogus server count is read past
 * its buffer.  So every message from a peer is checked here before a byte
 * of it reaches libraft: type, header length against the type's layout,
 * entry types and lengths, configuration encodings, and caps on every
 * size.  A message that fails closes the connection.
 *
 * Two rewrites correct libraft 0.15's commit rule on the way (Raft paper
 * section 5.3 and 5.4.2; later libraft releases fixed both):
 *
 *  - An incoming AppendEntries has its leader_commit lowered to
 *    prev_log_index + n_entries.  libraft 0.15 lets a follower commit up to
 *    min(leader_commit, its own last index), so a follower with a stale
 *    tail (entries from an earlier term that the leader's log does not
 *    have) applies that tail as committed.
 *  - An outgoing successful AppendEntries result has its last_log_index
 *    lowered to what this node knows matches the leader's log (raftfix.h).
 *    libraft 0.15 echoes its last stored index, and the leader takes that
 *    as the follower's match index even when the follower's entries past
 *    the request are a stale tail: the leader then counts a replica it
 *    does not have.
 * The parser reports each incoming AppendEntries (term and prev entry) and
 * asks for the cap of each outgoing result through the hooks below.
 */
#ifndef OL_RAFTWIRE_H
#define OL_RAFTWIRE_H

#include <stddef.h>
#include <stdint.h>

#define OL_RW_WUR __attribute__((warn_unused_result))

/* Caps on what a peer may claim. */
#define OL_RW_MAX_ENTRIES 65536u         /* entries in one AppendEntries */
#define OL_RW_ENTRY_MAX (64u << 20)      /* one entry */
#define OL_RW_BATCH_MAX (256u << 20)     /* all entries of one message */
#define OL_RW_SNAPSHOT_MAX (4ull << 30)  /* one snapshot */
#define OL_RW_CONF_MAX (64u << 10)       /* one encoded configuration */
#define OL_RW_CONF_SERVERS 1024u

enum {
    OL_RW_IN = 1,  /* from a peer to libraft: validated, commit capped */
    OL_RW_OUT = 2, /* from libraft to a peer: results' match capped */
};

struct ol__rw_hooks {
    void *data;
    /* IN: an AppendEntries or InstallSnapshot arrived (before libraft
     * sees it). */
    void (*append_seen)(void *data, uint64_t term, uint64_t prev_index,
                        uint64_t prev_term);
    void (*snapshot_seen)(void *data, uint64_t term, uint64_t last_index);
    /* IN: this node's last snapshot (index and term; 0 0: none).  An
     * AppendEntries that starts at or before it is trimmed to start after
     * it: libraft 0.15's follower crashes on entries its log no longer
     * holds, and its leader sends them when it probes a follower it never
     * heard from in its term. */
    void (*snapshot_of)(void *data, uint64_t *index, uint64_t *term);
    /* OUT: what a successful result of `term` may report. */
    uint64_t (*result_cap)(void *data, uint64_t term, uint64_t last);
    /* IN: a successful result of `term` from `peer` (the stream's
     * ol__rwire.peer) reports its log up to `last` (ackpace.h). */
    void (*result_seen)(void *data, uint64_t peer, uint64_t term,
                        uint64_t last);
};

/* Bytes to pass on, in order; returns 0 or an OL_E* code to stop. */
typedef int (*ol__rw_emit_fn)(void *ctx, const uint8_t *p, size_t n);

struct ol__rwire {
    int dir;
    uint64_t peer;             /* the node at the other end; 0: unknown */
    struct ol__rw_hooks hooks; /* NULL members: no report, no cap */
    int phase;
    uint8_t pre[16];
    size_t have;            /* bytes of the current part read so far */
    uint64_t type, hlen;
    uint8_t *hdr;           /* the header, buffered whole */
    size_t hcap;
    /* payload */
    uint64_t left;          /* payload bytes still to pass */
    uint32_t n_entries;     /* AppendEntries: entries in the payload */
    uint32_t entry;         /* the entry being passed */
    uint64_t entry_left;    /* its bytes still to pass */
    uint64_t skip;          /* bytes of trimmed entries still to drop */
    uint8_t *conf;          /* a configuration entry, held until checked */
    size_t conf_len, conf_have;
    char errmsg[160];
    struct {
        uint64_t messages;
        uint64_t commit_capped;
        uint64_t trimmed;       /* AppendEntries trimmed past a snapshot */
        uint64_t match_capped;
    } n;
};

void ol__rwire_init(struct ol__rwire *w, int dir,
                    const struct ol__rw_hooks *hooks);
void ol__rwire_close(struct ol__rwire *w);

/* Feed bytes; everything that may pass goes to `emit`, possibly
 * rewritten, possibly later (a header is held until it is whole).  Returns
 * 0, the first non-zero value of `emit`, or OL_EMALFORMED / OL_ETOOBIG
 * with w->errmsg naming what was wrong (the stream is then unusable). */
int ol__rwire_feed(struct ol__rwire *w, const uint8_t *p, size_t n,
                   ol__rw_emit_fn emit, void *ctx) OL_RW_WUR;

/* The Raft rule for a follower's commit index: what an AppendEntries may
 * let it commit. */
uint64_t ol__rw_commit_cap(uint64_t leader_commit, uint64_t prev_log_index,
                           uint64_t n_entries);

#endif
