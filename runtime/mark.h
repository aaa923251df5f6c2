/*
 * Step marks: one page that says which agent's plugin code each thread is
 * running right now, and how the process died if it did.
 *
 * An agent-host process keeps its page in shared memory with the node, so
 * when the host dies or hangs the node knows whose step it was (and kills
 * it when the step runs past its deadline).  A node that runs a plugin in
 * its own process keeps the page in a file in its data directory: the
 * stores survive the process (they sit in the page cache), so after a
 * crash the restarted node reads whose step took it down.
 *
 * A slot is written by the thread that owns it: `count` rises before and
 * after each change, so a reader that sees the same even count on both
 * sides of its read saw a consistent slot (a sequence lock).  The crash
 * fields are written by the signal handler of the thread that faulted.
 */
#ifndef OL_MARK_H
#define OL_MARK_H

#include <stdint.h>

#include "record/ckpt.h"

#define OL_MARK_MAGIC 0x6f6c6d6bu /* "olmk" */
#define OL_MARK_VERSION 1
#define OL_MARK_WORKERS 64
#define OL_MARK_SIZE 16384

/* What the thread is doing in plugin code. */
enum ol__mark_phase {
    OL_MARK_IDLE = 0,
    OL_MARK_LOAD = 1,    /* loading the plugin, its entry */
    OL_MARK_OPEN = 2,
    OL_MARK_RESTORE = 3,
    OL_MARK_HANDLE = 4,
    OL_MARK_SAVE = 5,
    OL_MARK_CLOSE = 6,
    OL_MARK_WORK = 7,    /* a function handed to work() */
};

struct ol__mark_slot {
    uint32_t count;    /* odd while being written */
    uint32_t phase;    /* enum ol__mark_phase; IDLE when not in plugin code */
    uint32_t slot;     /* agent-host: the agent's slot */
    uint32_t gen;
    uint32_t event;    /* HANDLE: the event type */
    uint32_t deadline_ms; /* in-process marks: the step deadline */
    int64_t started_ms; /* monotonic clock */
    uint64_t epoch;
    char name[OL_NAME_MAX + 1]; /* in-process marks only */
    char pad2[7];
};

/* A crash the node has yet to put on record (in-process marks only): kept
 * in the page until the CRASH command commits, so a node that dies again
 * first still reports it. */
#define OL_MARK_REPORTS 8
struct ol__mark_report {
    uint32_t used;
    uint32_t pad;
    uint64_t req;
    uint64_t epoch;
    char name[OL_NAME_MAX + 1];
    char reason[167];
};

struct ol__mark {
    uint32_t magic;
    uint32_t version;
    /* Set by the crash handler (first fault wins). */
    int32_t crash_sig;     /* signal that killed the process, 0 if none */
    int32_t crash_thread;  /* -1: the main thread; i: worker i */
    int32_t exit_thread;   /* exit() called: -1 main, i worker, -2 none */
    int32_t exit_code;
    int32_t pad[2];
    struct ol__mark_slot main;
    struct ol__mark_slot worker[OL_MARK_WORKERS];
    struct ol__mark_report reports[OL_MARK_REPORTS];
};

_Static_assert(sizeof(struct ol__mark) <= OL_MARK_SIZE, "mark page size");

void ol__mark_init(struct ol__mark *m);

/* Enter and leave plugin code on a slot. */
void ol__mark_begin(struct ol__mark_slot *s, uint32_t phase, uint32_t slot,
                    uint32_t gen, uint32_t event);
void ol__mark_end(struct ol__mark_slot *s);

/* A consistent copy of a slot; 0, or -1 if it changed while being read. */
int ol__mark_read(const struct ol__mark_slot *s, struct ol__mark_slot *out);

/* Install handlers for SIGSEGV, SIGBUS, SIGILL, SIGFPE and SIGABRT that
 * record the signal and the faulting thread in `m`, then let the previous
 * disposition act (the process still dies as it would have).  Each thread
 * that may run plugin code calls ol__mark_thread() first: it gives the
 * thread an alternate signal stack (so a stack overflow is recorded too)
 * and its index (-1 for the main thread).  An atexit handler records which
 * thread called exit(). */
int ol__mark_install(struct ol__mark *m);
/* Before the page goes away: the handlers forget it (the atexit handler
 * stays registered and does nothing). */
void ol__mark_uninstall(void);
int ol__mark_thread(int index);
/* A thread that called ol__mark_thread() is about to exit. */
void ol__mark_thread_done(void);

/* Human-readable phase ("handle()") and a description of a crash:
 * "SIGSEGV in handle() of a timer event". */
const char *ol__mark_phase_name(uint32_t phase);
/* "SIGSEGV" for SIGSEGV, and so on for the signals that end processes. */
const char *ol__signal_name(int sig);

#endif
