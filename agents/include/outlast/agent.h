/*
 * outlast/agent.h - the outlast agent plugin SDK.
 *
 * An agent is a shared object that exports exactly one symbol,
 * ol_agent_entry().  The host (outlastd) dlopen()s the plugin, calls the
 * entry once with its table of services, and gets back a pointer to the
 * plugin's static vtable.  Everything else about the plugin is private.
 *
 * Both tables start with `abi` and `size`.  `abi` names an incompatible
 * generation of this contract and must equal OL_AGENT_ABI on both sides;
 * `size` is sizeof() of the struct as its writer knew it.  Members are only
 * ever added at the end, marked with the version that added them; a reader
 * ignores members beyond the other side's `size`.
 *
 * Where a plugin runs.  By default outlastd runs each plugin in an
 * agent-host process of its own (outlast-agent-host), one per plugin build
 * on each node, holding that node's agents of the plugin.  A crash, an
 * abort(), an exit(), a stack overflow, or a step that runs past its
 * deadline ([agents] step_deadline_ms) ends that process and nothing else:
 * the agent whose code was running is counted as crashed and restarted
 * from its last committed checkpoint after a pause; the other agents of
 * the process resume from theirs at once.  An agent that crashes
 * crash_limit times within crash_window_ms is quarantined; the count is
 * kept by the whole cluster, so a failover does not reset it.  The host
 * process holds no node key, database or network socket, runs with the
 * memory limit the node sets ([agents] memory_mb) and, when outlastd runs
 * as root, as an unprivileged user.  So: a plugin's globals are shared by
 * all its agents on the node and vanish with the process; keep what
 * matters in the instance and its saved state.  A plugin configured with
 * isolation = none runs inside outlastd instead, and a crash there takes
 * the node down (the restarted node still counts it).
 *
 * Threads.  Every vtable function and every host service is called on the
 * host's main thread, one agent step at a time.  Only the function handed
 * to ol_host.work runs on another thread (of a bounded pool of its own,
 * never one of the threads that commit), and it must not call any host
 * service: one that does gets an error.  A handler must not block: offload
 * slow work with ol_host.work.
 *
 * State.  An agent's state is msgpack.  After a step the host asks the
 * plugin to save() its state, checks that the bytes are exactly one
 * well-formed msgpack object, and puts them in a signed, hash-chained
 * checkpoint.  On resume (after a restart, possibly on another node) the
 * host calls restore() with the bytes of the last committed checkpoint.
 * Timers and undelivered messages are part of the checkpoint, so a resumed
 * agent loses neither.
 *
 * Effects.  Messages sent during a step are held until that step's
 * checkpoint is committed (durable on a majority of the cluster); a step
 * whose checkpoint does not commit releases nothing.  A resumed agent may
 * therefore see the events after its last checkpoint again: handlers should
 * derive their effects from their state and the event only.  An effect on
 * the outside world (an order, an API call) is declared with
 * ol_host.effect: it is journaled in the checkpoint, performed by the
 * runtime only after that checkpoint commits, with an idempotency key
 * and the epoch as a fencing token, and its outcome is journaled in a
 * later checkpoint (see ol_host.effect and ol_agent_vtable.perform).
 *
 * Fencing.  The epoch (ol_event.epoch) grows every time the agent changes
 * hands, and at most one node runs the agent under a given epoch: a node
 * that loses touch with the cluster's majority stops starting steps before
 * the cluster may move its agents, and checks so before every step.  Work
 * (ol_host.work) cannot be stopped once its thread runs, so an outside
 * system that must never act twice should be given the epoch with each
 * request as a fencing token, and refuse a request whose epoch is below
 * the highest it has seen for that agent.  The WORK event says under which
 * epoch the work was started (work_epoch) and whether it is fenced.
 *
 * Errors.  Functions return 0 on success or a negative OL_AGENT_E* code.
 * A plugin function that returns an error quarantines the agent: the host
 * stops delivering events to it, keeps its committed history, and keeps
 * running every other agent.  Host services check every argument: a NULL,
 * oversized or malformed one gets an error code, never a crash.
 *
 * Who owns what.  The host owns every pointer it passes in (config,
 * state, events, the agent handle): borrowed for the call, copy what you
 * keep.  The plugin owns its instance (`self`) and everything hanging
 * from it, and frees them in close().  The rule for failures, as in
 * sqlite3.h, is said at each function below.  In short: close() is
 * called exactly once for every open() that returned 0, even when
 * restore(), handle() or save() failed after it, and never for an open()
 * that failed.  (A crash is the exception: the host process dies with all
 * it holds and nothing is closed.)  Host services copy what they keep
 * (send()'s bytes, error()'s text) and take nothing over, but for
 * work()'s `arg`, which comes back with its OL_EVENT_WORK; a service that
 * returns an error has kept nothing, `arg` included.
 *
 * Versions.  OL_VERSION_* (outlast/version.h, included below) say which
 * SDK a plugin was built against; ol_host.version() says which host runs
 * it.  Both follow the meson project version.
 *
 * Helpers.  outlast/agent_util.h reads and writes msgpack (unpack one
 * object, get a map key, read a number or a string); outlast/agent_test.h
 * is a fake host for unit-testing a plugin without a daemon.
 *
 * Build a plugin with:
 *     cc -shared -fPIC -o myagent.so myagent.c $(pkg-config --cflags --libs outlast-agent)
 */
#ifndef OUTLAST_AGENT_H
#define OUTLAST_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include <outlast/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The generation of this contract.  A plugin built for another value is
 * refused at load time. */
#define OL_AGENT_ABI 1

/* The one symbol a plugin exports. */
#define OL_AGENT_ENTRY_SYMBOL "ol_agent_entry"

#if defined(__GNUC__)
#define OL_AGENT_EXPORT __attribute__((visibility("default")))
#define OL_AGENT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define OL_AGENT_EXPORT
#define OL_AGENT_PRINTF(f, a)
#endif

/* Error codes.  The host returns these from its services; plugins return
 * them (or any negative value) from vtable functions. */
#define OL_AGENT_OK 0
#define OL_AGENT_ENOMEM (-1)     /* out of memory */
#define OL_AGENT_EINVAL (-2)     /* an argument is invalid */
#define OL_AGENT_EMALFORMED (-4) /* bytes are not one msgpack object */
#define OL_AGENT_ENOTFOUND (-8)  /* no such timer or agent */
#define OL_AGENT_ETOOBIG (-18)   /* over one of the limits below */
#define OL_AGENT_ESTATE (-22)    /* not allowed in this phase of the step */
#define OL_AGENT_ENOTSUP (-26)   /* the cluster does not run this yet
                                  * (ol_host.effect below feature level
                                  * 4), or the plugin lacks what it needs
                                  * (effect() without perform()) */
#define OL_AGENT_EFULL (-27)     /* the recipient's mailbox is full: its
                                  * messages are not being consumed; try
                                  * again later (a timer) */

/* Limits the host enforces. */
#define OL_AGENT_NAME_MAX 64            /* bytes in an agent name */
#define OL_AGENT_STATE_MAX (4u << 20)   /* bytes of saved state */
#define OL_AGENT_MSG_MAX (64u << 10)    /* bytes in one message */
#define OL_AGENT_OUTBOX_MAX 1024        /* messages sent in one step */
#define OL_AGENT_TIMERS_MAX 256         /* timers armed at once */
#define OL_AGENT_ERROR_MAX 150          /* bytes kept of ol_host.error */
#define OL_AGENT_EFFECTS_MAX 256        /* effects declared and not yet
                                         * answered, per agent */
#define OL_AGENT_EFFECT_MAX (16u << 10) /* bytes in an effect's payload,
                                         * and in its result */
#define OL_AGENT_KIND_MAX 32            /* bytes in an effect kind */
#define OL_AGENT_KEY_LEN 32             /* hex digits in an effect key */

/* Log levels for ol_host.log. */
#define OL_AGENT_LOG_ERROR 0
#define OL_AGENT_LOG_WARN 1
#define OL_AGENT_LOG_INFO 2
#define OL_AGENT_LOG_DEBUG 3

/* One running agent instance.  Opaque; owned by the host, valid from the
 * call to open() until close() returns. */
struct ol_agent;

/*
 * A byte sink for save().  Its signature matches msgpack-c's packer, so a
 * plugin can pack straight into it:
 *
 *     msgpack_packer pk;
 *     msgpack_packer_init(&pk, out->data, out->write);
 *
 * write() copies the bytes and returns 0, or a negative value once the
 * state grows past OL_AGENT_STATE_MAX.
 */
struct ol_sink {
    void *data;
    int (*write)(void *data, const char *buf, size_t len);
};

enum ol_event_type {
    /* First event of a newly spawned agent; no state has been restored. */
    OL_EVENT_START = 1,
    /* The agent was restored from a committed checkpoint (after a restart,
     * a failover, or a move to another node); restore() has run. */
    OL_EVENT_RESUME = 2,
    /* A timer armed with timer_after() or timer_at() is due. */
    OL_EVENT_TIMER = 3,
    /* Another agent (or the CLI) sent this agent a message. */
    OL_EVENT_MESSAGE = 4,
    /* The agent is being stopped; close() follows once this step commits. */
    OL_EVENT_STOP = 5,
    /* Work handed to ol_host.work() has finished. */
    OL_EVENT_WORK = 6,
    /* The operator changed the agent's config (`outlast config`).  `data`
     * and `len` hold the new config, one msgpack map, and `from` is
     * OL_AGENT_CONFIG_SENDER.  The change is committed before the event is
     * delivered, and the event is delivered exactly once, like a message:
     * after a resume, open() already sees the new config and the event
     * may follow it.  A plugin that returns 0 without acting on it keeps
     * its old settings until its next open(); one that returns an error
     * is quarantined like any failing handler.  Plugins built before this
     * event existed get it too: ignore event types you do not know. */
    OL_EVENT_CONFIG = 7,
    /* A message this agent sent could not be delivered: when the step's
     * checkpoint committed, the recipient did not exist (never did, or was
     * removed with `outlast rm`) or its mailbox was full.  `to` names the
     * recipient, `reason` says why, and `data`/`len` hold the message as
     * sent; `from` is OL_AGENT_BOUNCE_SENDER.  Delivered exactly once, in
     * the agent's mailbox order, like a message.  A bounce that finds this
     * agent's own mailbox full is dropped and logged.  Needs a cluster at
     * feature level 3: before that, undeliverable messages are dropped and
     * logged. */
    OL_EVENT_BOUNCE = 8,
    /* An effect declared with ol_host.effect has its outcome: perform()
     * (or reconcile()) said it is done, or it failed for good (perform()
     * said so, or the retry policy of its kind ran out).  effect_id,
     * effect_key, effect_status and effect_attempts say which and how;
     * `data`/`len` hold the result perform() wrote (may be empty) and,
     * for a failure the runtime decided, `reason` says why.  The outcome
     * is recorded in this step's checkpoint, in the signed chain beside
     * the intent.  Like a message, the event may be seen again after a
     * resume if that checkpoint did not commit (the effect is then
     * performed again under the same key).  Needs a cluster at feature
     * level 4. */
    OL_EVENT_EFFECT = 9,
};

/* What perform() and reconcile() return, and an EFFECT event's
 * effect_status. */
enum ol_effect_status {
    OL_EFFECT_DONE = 0,    /* done; the result says what the world answered */
    OL_EFFECT_RETRY = 1,   /* not done, worth another try (a timeout, a 5xx):
                            * the runtime tries again, with the same key,
                            * after the backoff of the kind's policy */
    OL_EFFECT_FAILED = 2,  /* will never be done (refused, invalid): the
                            * agent gets the failure now */
    OL_EFFECT_UNKNOWN = 3, /* reconcile() only: the outside system has no
                            * record of the key; perform() follows */
};

/* The sender name of an OL_EVENT_CONFIG event. */
#define OL_AGENT_CONFIG_SENDER "@config"
/* The sender name of an OL_EVENT_BOUNCE event. */
#define OL_AGENT_BOUNCE_SENDER "@bounce"

/*
 * One event.  Every pointer in it is borrowed: it is valid until the handler
 * returns; copy what you keep.  Members that do not belong to the event's
 * type are zero.
 */
struct ol_event {
    uint32_t type; /* enum ol_event_type */
    uint32_t size; /* sizeof(struct ol_event) as the host knows it */
    /* Version 1. */
    int64_t now_ms;         /* wall clock at delivery, ms since 1970 */
    /* RESUME */
    const char *node;       /* name of the node the agent runs on now */
    const char *prev_node;  /* node that signed the restored checkpoint */
    int64_t downtime_ms;    /* now_ms minus the restored checkpoint's time */
    uint64_t seq;           /* seq of the restored checkpoint */
    uint64_t epoch;         /* epoch the agent runs under now */
    /* TIMER */
    uint64_t timer_id;      /* as armed */
    int64_t due_ms;         /* when it was due; may be in the past */
    /* MESSAGE */
    const char *from;       /* sender's agent name; names of senders that
                             * are not agents start with '@' ("@cli") */
    const void *data;       /* the message: one msgpack object */
    size_t len;
    /* WORK */
    uint64_t work_id;       /* as passed to ol_host.work() */
    void *work_arg;         /* as passed to ol_host.work(); yours again */
    /* STOP */
    int final;              /* 1: stopped for good; 0: the node is shutting
                             * down and the agent will resume later */
    /* Version 2 (read them only when size covers them). */
    /* WORK */
    uint64_t work_epoch;    /* the epoch the work was started under */
    int fenced;             /* 1: the agent no longer runs here under
                             * work_epoch (it moved, stopped or failed
                             * over, or the node is shutting down).  The
                             * step records nothing: free work_arg and let
                             * the result go; the agent's new owner
                             * starts the work again if it still needs
                             * it. */
    /* Version 3. */
    /* BOUNCE */
    const char *to;         /* the recipient the message was sent to */
    const char *reason;     /* why it could not be delivered; for an
                             * EFFECT that failed, why (may be NULL) */
    /* Version 4. */
    /* EFFECT */
    uint64_t effect_id;      /* as passed to ol_host.effect() */
    const char *effect_key;  /* its idempotency key */
    int effect_status;       /* OL_EFFECT_DONE or OL_EFFECT_FAILED */
    uint32_t effect_attempts; /* perform() and reconcile() calls it took
                              * on the node that finished it */
};

/*
 * One effect, as perform() and reconcile() see it.  Every pointer is
 * borrowed for the call.
 *
 * The key is the effect's identity in the outside world: 32 hex digits
 * derived from the agent's name, the seq of the checkpoint that declared
 * the effect, its index there and the hash of the checkpoint before it.
 * It is the same on every attempt and on every node, and differs between
 * two histories of one name (after `outlast recover --new-history`).
 * Pass it to the outside system as an idempotency key and let that
 * system do each key once.
 *
 * The epoch is the fencing token: it grows each time the agent changes
 * hands.  An outside system that remembers the highest epoch it has seen
 * per agent and refuses lower ones turns away a paused former owner (a
 * zombie) that wakes up and tries again.
 */
struct ol_effect {
    uint32_t size;          /* sizeof(struct ol_effect) as the host knows it */
    const char *agent;      /* the agent's name */
    const char *node;       /* the node performing it */
    uint64_t effect_id;     /* as passed to ol_host.effect() */
    const char *key;        /* OL_AGENT_KEY_LEN hex digits, NUL-terminated */
    const char *kind;
    const void *payload;    /* one msgpack object, as declared */
    size_t len;
    uint64_t epoch;         /* the fencing token */
    int64_t deadline_ms;    /* wall clock: give up on this attempt by then
                             * and return OL_EFFECT_RETRY */
    uint32_t attempt;       /* 1 for the first call on this node */
    int in_doubt;           /* 1: an earlier owner may have performed it
                             * (its outcome was never checkpointed) */
};

/* Runs on a work-pool thread.  It may only touch `arg`; a crash in it is
 * counted against the agent that handed it over. */
typedef void (*ol_work_fn)(void *arg);

/*
 * The host's services, passed to ol_agent_entry().  The table is static in
 * the host and outlives the plugin.  Every service takes the agent handle the
 * host passed to open(), restore(), handle() or save().
 */
struct ol_host {
    uint32_t abi;  /* OL_AGENT_ABI */
    uint32_t size; /* sizeof(struct ol_host) as the host knows it */
    /* Version 1. */

    /* Log a line tagged with the agent's name.  Never log secrets. */
    void (*log)(struct ol_agent *a, int level, const char *fmt, ...)
        OL_AGENT_PRINTF(3, 4);

    /* The agent's name.  Borrowed; valid while the agent is open. */
    const char *(*name)(struct ol_agent *a);

    /* Wall clock, ms since 1970. */
    int64_t (*now_ms)(struct ol_agent *a);

    /* Arm timer `timer_id` (any value) to fire once after `delay_ms` (0:
     * on the next turn of the loop), or at the wall clock time `unix_ms`.
     * Arming an armed id moves it.  Timers are part of the checkpoint:
     * after a resume they fire at their original due time (at once if that
     * has passed), and a timer that fired but whose step did not commit
     * fires again.  Returns 0, OL_AGENT_ETOOBIG past OL_AGENT_TIMERS_MAX,
     * or OL_AGENT_ESTATE outside handle(). */
    int (*timer_after)(struct ol_agent *a, uint64_t timer_id,
                       uint64_t delay_ms);
    int (*timer_at)(struct ol_agent *a, uint64_t timer_id, int64_t unix_ms);

    /* Disarm a timer.  Returns 0 or OL_AGENT_ENOTFOUND. */
    int (*timer_cancel)(struct ol_agent *a, uint64_t timer_id);

    /* Send `len` bytes of msgpack to the agent named `to`.  The bytes are
     * copied and checked; they are delivered exactly once, after this step's
     * checkpoint commits.  Whether `to` exists is decided when that
     * checkpoint commits: a message to an agent that does not exist then,
     * or whose mailbox is full then, comes back as an OL_EVENT_BOUNCE
     * (dropped and logged on a cluster below feature level 3).  Returns 0, OL_AGENT_EMALFORMED if
     * the bytes are
     * not one msgpack object, OL_AGENT_EINVAL for a bad name,
     * OL_AGENT_ETOOBIG past OL_AGENT_MSG_MAX or OL_AGENT_OUTBOX_MAX,
     * OL_AGENT_EFULL when `to` already has as many messages waiting as
     * the node allows ([agents] mailbox_max, mailbox_max_kb: back off and
     * try again later), or OL_AGENT_ESTATE outside handle(). */
    int (*send)(struct ol_agent *a, const char *to, const void *msg,
                size_t len);

    /* Ask for a checkpoint at the end of this step even if the node's
     * checkpoint policy would batch it.  Returns 0 or OL_AGENT_ESTATE. */
    int (*checkpoint)(struct ol_agent *a);

    /* Run fn(arg) on the plugin's work pool ([agents] work_threads
     * threads, in the agent's host process); an OL_EVENT_WORK event with
     * the same work_id and arg follows when it returns.  In-flight work is
     * not part of a checkpoint: after a resume, start it again.  Every
     * accepted work item gets its OL_EVENT_WORK before close() is called;
     * one that finishes after the agent stopped running here under the
     * epoch it was started in comes with `fenced` set, and nothing that
     * step does is recorded.  Returns
     * 0, OL_AGENT_EINVAL if fn is NULL, or OL_AGENT_ESTATE outside handle();
     * on error fn never runs and no event follows. */
    int (*work)(struct ol_agent *a, uint64_t work_id, ol_work_fn fn,
                void *arg);

    /* Version 3 (check with OL_HOST_HAS(host, error)). */

    /* Say why the open() or restore() that is running is about to fail.
     * The text (up to OL_AGENT_ERROR_MAX bytes; the rest is cut) becomes
     * part of the agent's quarantine reason, so `outlast spawn` fails
     * with it and `outlast agents` shows it.  Call it just before
     * returning the error; a later call replaces an earlier one.  Outside
     * open() and restore() the text is kept only until the next of them.
     * Returns 0, or OL_AGENT_EINVAL if fmt is NULL. */
    int (*error)(struct ol_agent *a, const char *fmt, ...)
        OL_AGENT_PRINTF(2, 3);

    /* Version 4 (check with OL_HOST_HAS(host, version)). */

    /* The running host's version, "MAJOR.MINOR.PATCH", static (never
     * freed).  May differ from the OL_VERSION_STRING the plugin was built
     * with.  Callable from any thread, and from ol_agent_entry(). */
    const char *(*version)(void);

    /* Version 5 (check with OL_HOST_HAS(host, effect)). */

    /* Declare an effect on the outside world: `kind` names its retry
     * policy ([effects] in the node's config; 1..OL_AGENT_KIND_MAX bytes
     * of [a-z0-9._-]) and `payload` (one msgpack object, copied) says
     * what to do.  Nothing happens yet: the effect is recorded in this
     * step's checkpoint (the step always gets one), and once that
     * checkpoint has committed the runtime calls the plugin's perform()
     * off the loop, with a key that stays the same on every retry and
     * every node, and the epoch as a fencing token.  The outcome comes
     * back as an OL_EVENT_EFFECT with the same effect_id.  After a
     * failover the new owner finds the effects that have no outcome yet
     * and calls reconcile() (or perform() again, with the same key).  So
     * an effect whose outside system does each key once happens exactly
     * once.  Returns 0, OL_AGENT_EINVAL for a bad kind,
     * OL_AGENT_EMALFORMED if the payload is not one msgpack object,
     * OL_AGENT_ETOOBIG past OL_AGENT_EFFECT_MAX or OL_AGENT_EFFECTS_MAX,
     * OL_AGENT_ENOTSUP if the plugin has no perform() or the cluster runs
     * below feature level 4 (a new cluster whose leader has not yet heard
     * every voter counts as below it for a moment: try again later, on a
     * timer), or OL_AGENT_ESTATE outside handle() and in
     * the step of a final STOP.  An agent stopped with effects still open
     * keeps them in its checkpoint; they are performed (in doubt) when it
     * starts again. */
    int (*effect)(struct ol_agent *a, uint64_t effect_id, const char *kind,
                  const void *payload, size_t len);
};

/*
 * The plugin's vtable.  Static in the plugin; the host never writes it.
 */
struct ol_agent_vtable {
    uint32_t abi;  /* OL_AGENT_ABI */
    uint32_t size; /* sizeof(struct ol_agent_vtable) */
    /* Version 1. */

    /* The plugin's kind name and version; recorded in every checkpoint
     * along with a hash of the shared object. */
    const char *kind;
    const char *version;

    /*
     * Create an instance.  `config` is the agent's configuration as one
     * msgpack object (a map; an empty map if none was given), borrowed for
     * the call.  Store the instance in *self.  Required.
     *
     * On error, free whatever you allocated before returning: the host
     * forgets *self and never calls close() for this open().  Say why with
     * ol_host.error (Version 3).  The agent is quarantined.
     */
    int (*open)(struct ol_agent *a, const void *config, size_t config_len,
                void **self);

    /*
     * Load state saved by save().  Called after open() and before the
     * OL_EVENT_RESUME event.  `state` is borrowed.  Return
     * OL_AGENT_EMALFORMED if it is not what you expect.  Required.
     *
     * On error the instance stays open: the host quarantines the agent
     * and then calls close() on it, so leave `self` in a state close()
     * can free (a restore that failed half-way included).  The committed
     * checkpoint is kept; no event follows.
     */
    int (*restore)(void *self, struct ol_agent *a, const void *state,
                   size_t len);

    /* Handle one event; may arm timers, send messages, start work.
     * Required.
     *
     * On error the step records nothing: no checkpoint, so its sends are
     * never delivered and the timers and state it changed are not
     * committed.  The agent is quarantined and close() is called once its
     * accepted work has come back (as WORK events with `fenced` set: free
     * work_arg then).  save() is not called after a failed handle(). */
    int (*handle)(void *self, struct ol_agent *a, const struct ol_event *ev);

    /* Write the whole state as one msgpack object to `out`.  out->write
     * refuses a NULL source and anything past OL_AGENT_STATE_MAX, and the
     * refusal fails the save (the agent is quarantined).  Required.
     *
     * The host owns the sink and what was written to it.  On error (or
     * bytes that are not one msgpack object) nothing is committed, the
     * agent is quarantined, and close() is called as after handle(). */
    int (*save)(void *self, struct ol_agent *a, const struct ol_sink *out);

    /* Free the instance.  Called once for every open() that returned 0,
     * after the last event and after every accepted work item's WORK
     * event; also after a failed restore(), handle() or save().  Never
     * called after a failed open().  Not called when the plugin's host
     * process dies (a crash): the process and its memory go with it.  May
     * be NULL. */
    void (*close)(void *self);

    /* Version 2 (the host reads them only when size covers them). */

    /*
     * Perform an effect declared with ol_host.effect.  Runs on a work-pool
     * thread of the agent's host process, never on the main thread, and
     * sees only `e` and `result`: not the instance, which handle() may be
     * using at the same time, and no host service.  Write what the world
     * answered (an order id, a receipt) to `result`, at most
     * OL_AGENT_EFFECT_MAX bytes; the agent gets it in its EFFECT event.
     * Return an enum ol_effect_status: OL_EFFECT_DONE, OL_EFFECT_RETRY or
     * OL_EFFECT_FAILED (any other value counts as OL_EFFECT_RETRY).  Stop
     * by e->deadline_ms.  Required for a plugin that declares effects.
     */
    int (*perform)(const struct ol_effect *e, const struct ol_sink *result);

    /*
     * Ask the outside system what became of an effect that is in doubt
     * (e->in_doubt: a former owner may have performed it).  Return
     * OL_EFFECT_DONE with the result it reports, OL_EFFECT_FAILED,
     * OL_EFFECT_RETRY (could not ask: try again later), or
     * OL_EFFECT_UNKNOWN when it has no record of the key, and perform()
     * is called next.  Runs like perform().  May be NULL: an effect in
     * doubt is then performed again with the same key.
     */
    int (*reconcile)(const struct ol_effect *e, const struct ol_sink *result);
};

/*
 * The entry point.  Check host->abi, keep `host` (it outlives the plugin),
 * and point *out at your static vtable.  Return 0, or a negative code to
 * refuse the host (for example when host->abi differs).  On error, or when
 * *out is NULL or incomplete, the host calls nothing else in the plugin,
 * dlclose()s it and quarantines the agents of its kind.
 */
OL_AGENT_EXPORT int ol_agent_entry(const struct ol_host *host,
                                   const struct ol_agent_vtable **out);

/* True when the host offers the member `m` of struct ol_host. */
#define OL_HOST_HAS(host, m)                                               \
    ((host)->size >= offsetof(struct ol_host, m) + sizeof((host)->m))

/* True when the plugin's vtable `vt` has member `m` (for hosts). */
#define OL_VTABLE_HAS(vt, m)                                               \
    ((vt)->size >= offsetof(struct ol_agent_vtable, m) + sizeof((vt)->m))

/* True when the host filled in member `m` of struct ol_event. */
#define OL_EVENT_HAS(ev, m)                                                \
    ((ev)->size >= offsetof(struct ol_event, m) + sizeof((ev)->m))

#ifdef __cplusplus
}
#endif

#endif /* OUTLAST_AGENT_H */
