/*
 * Agent-host processes, the node's side (see hostproc.h).
 *
 * Life of a host: spawned with its socket, its step-mark page and the
 * plugin file as its only descriptors; READY once it says HELLO; DEAD once
 * the node has seen it exit (or killed it).  Dying is handled once, in the
 * exit callback, where the kernel's word on how it died is known: the step
 * mark names the agent whose code was running, that agent is reported as
 * crashed, and every other agent of the host is resumed elsewhere from its
 * last committed checkpoint.  The node never waits on a host: writes are
 * queued by libuv, and a host that stops reading only stops its own agents.
 */
#include "hostproc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "code.h"
#include "base/err.h"
#include "base/log.h"
#include "node.h"
#include "agent.h"
#include "hostapi.h"

#define WATCH_MS 50
#define LOAD_LIMIT_MS 30000
#define EXIT_GRACE_MS 2000
#define SOCK_BUF (4 << 20)

static void dead(struct ol__hostproc *hp);

/* ---- handles ---- */

static void handle_closed(uv_handle_t *h)
{
    struct ol__hostproc *hp = h->data;

    if (--hp->handles > 0)
        return;
    if (hp->mark)
        munmap(hp->mark, OL_MARK_SIZE);
    ol__buf_close(&hp->out);
    ol__buf_close(&hp->in);
    ol__buf_close(&hp->out_part);
    free(hp->slots);
    free(hp->gens);
    free(hp);
}

static void close_handles(struct ol__hostproc *hp)
{
    struct ol__node *n = hp->node;

    /* Off the node's lists first: nothing may reach it from now on. */
    if (hp->prev)
        hp->prev->next = hp->next;
    else if (n->hps == hp)
        n->hps = hp->next;
    if (hp->next)
        hp->next->prev = hp->prev;
    hp->next = hp->prev = NULL;
    if (hp->dirty) {
        struct ol__hostproc **pp = &n->hp_dirty;

        while (*pp && *pp != hp)
            pp = &(*pp)->dirty_next;
        if (*pp)
            *pp = hp->dirty_next;
        hp->dirty = 0;
    }
    if (hp->code && hp->code->hp == hp)
        hp->code->hp = NULL;
    hp->code = NULL;
    if (hp->pipe_init && !uv_is_closing((uv_handle_t *)&hp->pipe))
        uv_close((uv_handle_t *)&hp->pipe, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&hp->watch))
        uv_close((uv_handle_t *)&hp->watch, handle_closed);
    if (hp->spawned && !uv_is_closing((uv_handle_t *)&hp->proc))
        uv_close((uv_handle_t *)&hp->proc, handle_closed);
    ol__hp_out_close(hp, handle_closed);
}

/* ---- the watchdog ---- */

static void watch_cb(uv_timer_t *t)
{
    struct ol__hostproc *hp = t->data;
    struct ol__mark_slot s;
    uint64_t now = ol__mono_ms();
    uint32_t deadline = hp->code ? hp->code->cfg.step_deadline_ms : 5000;
    uint32_t stopping = hp->node->cfg.stop_timeout_ms / 4;

    /* A node that is stopping waits for no step longer than a quarter of
     * its stop timeout: the rest is for the commits. */
    if (hp->node->stopping && deadline > stopping)
        deadline = stopping;

    if (hp->exited)
        return;
    if (hp->eof_ms && now - hp->eof_ms >= EXIT_GRACE_MS) {
        uv_process_kill(&hp->proc, SIGKILL);
        return;
    }
    if (hp->state == OL_HP_STARTING && now - hp->started_ms > LOAD_LIMIT_MS) {
        ol__hostproc_kill(hp, UINT32_MAX, 0,
                          "the plugin did not load within 30 s");
        return;
    }
    if (hp->state != OL_HP_READY || hp->mark == NULL ||
        ol__mark_read(&hp->mark->main, &s) != 0 || s.phase == OL_MARK_IDLE)
        return;
    if ((int64_t)now - s.started_ms > (int64_t)deadline) {
        char why[160];

        if (s.phase == OL_MARK_HANDLE)
            snprintf(why, sizeof why,
                     "step deadline (%u ms) exceeded in handle() of a %s "
                     "event",
                     deadline, ol__event_name((int)s.event));
        else
            snprintf(why, sizeof why, "step deadline (%u ms) exceeded in %s",
                     deadline, ol__mark_phase_name(s.phase));
        ol__hostproc_kill(hp, s.slot, s.gen, why);
    }
}

void ol__hostproc_kill(struct ol__hostproc *hp, uint32_t slot, uint32_t gen,
                       const char *why)
{
    if (hp->exited || hp->killed)
        return;
    hp->killed = 1;
    hp->kill_slot = slot;
    hp->kill_gen = gen;
    snprintf(hp->kill_reason, sizeof hp->kill_reason, "%s", why);
    ol_log(OL_LOG_WARN, "agent host for '%s' (pid %d): %s; killing it",
           hp->code ? hp->code->kind : "?", hp->proc.pid, why);
    if (hp->state != OL_HP_DEAD)
        hp->state = OL_HP_DEAD;
    uv_read_stop((uv_stream_t *)&hp->pipe);
    if (hp->spawned)
        uv_process_kill(&hp->proc, SIGKILL);
}

/* ---- death ---- */

/* Whose code was running, and how the host died (`kind`, an enum
 * ol__crash_kind).  Returns the number of culprits written to `who`
 * (slot, gen pairs). */
static int culprits(struct ol__hostproc *hp, uint32_t who[][2], int cap,
                    char *why, size_t why_cap, int *kind)
{
    struct ol__mark *m = hp->mark;
    struct ol__mark_slot s;
    char how[64];
    int n = 0, thread = -2;

    /* The first thing that went wrong, which is not always how the
     * process ended: a sanitizer turns a fault (or the leaks it finds
     * after exit()) into an abort. */
    *kind = OL_CRASH_SIGNAL;
    if (m && m->exit_thread != -2 && hp->term_signal) {
        snprintf(how, sizeof how, "exit() called");
        *kind = OL_CRASH_EXIT;
    } else if (m && m->exit_thread == -2 && m->crash_sig > 0) {
        snprintf(how, sizeof how, "killed by %s",
                 ol__signal_name(m->crash_sig));
    } else if (hp->term_signal) {
        snprintf(how, sizeof how, "killed by %s",
                 ol__signal_name(hp->term_signal));
    } else {
        snprintf(how, sizeof how, "exit(%" PRId64 ")", hp->exit_status);
        *kind = OL_CRASH_EXIT;
    }
    if (hp->killed) {
        /* Killed by the node: only a step past its deadline is blamed on
         * an agent. */
        *kind = OL_CRASH_DEADLINE;
        snprintf(why, why_cap, "%s", hp->kill_reason);
        if (hp->kill_slot != UINT32_MAX) {
            who[0][0] = hp->kill_slot;
            who[0][1] = hp->kill_gen;
            return 1;
        }
        return 0;
    }
    if (m == NULL) {
        snprintf(why, why_cap, "agent host %s", how);
        return 0;
    }
    if (m->exit_thread != -2)
        thread = m->exit_thread;
    else if (m->crash_sig)
        thread = m->crash_thread;
    if (thread == -1 || thread == -3 || thread == -2) {
        memcpy(&s, &m->main, sizeof s);
        if (s.phase != OL_MARK_IDLE) {
            if (s.phase == OL_MARK_HANDLE)
                snprintf(why, why_cap, "%s in handle() of a %s event", how,
                         ol__event_name((int)s.event));
            else
                snprintf(why, why_cap, "%s in %s", how,
                         ol__mark_phase_name(s.phase));
            who[0][0] = s.slot;
            who[0][1] = s.gen;
            return 1;
        }
    }
    if (thread >= 0 && thread < OL_MARK_WORKERS) {
        memcpy(&s, &m->worker[thread], sizeof s);
        if (s.phase != OL_MARK_IDLE) {
            snprintf(why, why_cap, "%s in a work function", how);
            who[0][0] = s.slot;
            who[0][1] = s.gen;
            return 1;
        }
    }
    /* No thread named: every work function running is a suspect. */
    for (int i = 0; i < OL_MARK_WORKERS && n < cap; i++) {
        memcpy(&s, &m->worker[i], sizeof s);
        if (s.phase == OL_MARK_IDLE)
            continue;
        who[n][0] = s.slot;
        who[n][1] = s.gen;
        n++;
    }
    snprintf(why, why_cap, "agent host %s%s", how,
             n ? " while work functions ran" : "");
    return n;
}

static void dead(struct ol__hostproc *hp)
{
    uint32_t who[OL_MARK_WORKERS][2];
    char why[200];
    int n_who, kind = OL_CRASH_SIGNAL, expected = hp->closing && !hp->killed;
    struct ol__code *c = hp->code;

    n_who = expected ? 0 : culprits(hp, who, OL_MARK_WORKERS, why,
                                    sizeof why, &kind);
    if (!expected)
        hp->node->n.host_deaths++;
    if (!expected && hp->state == OL_HP_STARTING && c) {
        char msg[OL_ERRMSG_SIZE];

        ol__errf(msg, "plugin '%s': its host died while loading it (%s)",
                 c->kind, why);
        hp->state = OL_HP_DEAD;
        ol__code_loaded(c, OL_EPLUGIN, "", msg);
    }
    hp->state = OL_HP_DEAD;
    if (!expected && hp->n_agents)
        ol_log(OL_LOG_WARN, "agent host for '%s' (pid %d) died: %s; %u "
                            "agent(s) resume from their last checkpoints",
               c ? c->kind : "?", hp->proc.pid, why, hp->n_agents);
    if (c && !expected) {
        uint64_t now = ol__mono_ms();

        /* A host that keeps dying soon after it starts with nobody to
         * blame is restarted after a growing pause (an agent to blame is
         * paused by its own crash record instead). */
        if (n_who == 0 && now - hp->started_ms < 10000)
            c->hp_quick_deaths++;
        else
            c->hp_quick_deaths = 0;
        c->hp_not_before_ms =
            now + (c->hp_quick_deaths > 1
                       ? 100u << (c->hp_quick_deaths > 5 ? 5
                                                         : c->hp_quick_deaths)
                       : 0);
    }
    /* Off the code first, so the agents restarted below get a new host;
     * then tell each agent (which may restart it at once). */
    if (c && c->hp == hp)
        c->hp = NULL;
    for (uint32_t i = 0; i < hp->n_slots; i++) {
        struct ol_agent *a = hp->slots[i];
        int how = OL_LOST_OTHER;

        if (a == NULL)
            continue;
        for (int k = 0; k < n_who; k++)
            if (who[k][0] == i && who[k][1] == hp->gens[i])
                how = OL_LOST_CRASH;
        if (c && c->state == OL_CODE_FAILED)
            how = OL_LOST_LOAD;
        hp->slots[i] = NULL;
        hp->n_agents--;
        a->hp = NULL;
        ol__agent_host_lost(a, how, kind,
                            how == OL_LOST_LOAD ? c->errmsg : why);
    }
    close_handles(hp);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct ol__hostproc *hp = p->data;

    hp->exited = 1;
    hp->exit_status = status;
    hp->term_signal = sig;
    uv_read_stop((uv_stream_t *)&hp->pipe);
    ol__hp_out_drain(hp);
    dead(hp);
}

/* ---- starting ---- */

static int mark_page(struct ol__hostproc *hp)
{
    int fd = memfd_create("outlast-mark", MFD_CLOEXEC);

    if (fd < 0)
        return -1;
    if (ftruncate(fd, OL_MARK_SIZE) != 0) {
        close(fd);
        return -1;
    }
    hp->mark = mmap(NULL, OL_MARK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
                    fd, 0);
    if (hp->mark == MAP_FAILED) {
        hp->mark = NULL;
        close(fd);
        return -1;
    }
    ol__mark_init(hp->mark);
    return fd;
}

/* The descriptors a new host inherits: its end of the channel (3), the
 * mark page (4), the plugin file (5) and its log pipe (1 and 2). */
struct host_fds {
    int sv[2], mfd, cfd, ofd;
};

static void close_fds(struct host_fds *f)
{
    int *all[] = {&f->sv[0], &f->sv[1], &f->mfd, &f->cfd, &f->ofd};

    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (*all[i] >= 0) {
            close(*all[i]);
            *all[i] = -1;
        }
}

/* The host's command line; the strings it points into live in `a`. */
struct host_argv {
    char workers[16], mem[16], parent[24], net[4], hide[PATH_MAX];
    char *args[28];
};

static void host_args(struct ol__node *n, struct ol__code *c,
                      struct host_argv *a)
{
    char **args = a->args;
    int k = 0;

    snprintf(a->workers, sizeof a->workers, "%u", c->cfg.work_threads);
    snprintf(a->mem, sizeof a->mem, "%u", c->cfg.memory_mb);
    snprintf(a->parent, sizeof a->parent, "%ld", (long)getpid());
    snprintf(a->net, sizeof a->net, "%d", c->cfg.allow_network ? 1 : 0);
    args[k++] = n->host_exe;
    args[k++] = "--fd";
    args[k++] = "3";
    args[k++] = "--mark-fd";
    args[k++] = "4";
    args[k++] = "--code-fd";
    args[k++] = "5";
    args[k++] = "--kind";
    args[k++] = c->kind;
    args[k++] = "--node";
    args[k++] = n->cfg.node_name;
    args[k++] = "--parent";
    args[k++] = a->parent;
    args[k++] = "--workers";
    args[k++] = a->workers;
    args[k++] = "--memory-mb";
    args[k++] = a->mem;
    args[k++] = "--network";
    args[k++] = a->net;
    args[k++] = "--user";
    args[k++] = n->cfg.host_user;
    args[k++] = "--source";
    args[k++] = c->src;
    /* What the host is to keep away from: the data directory, by the
     * path the kernel resolves it to. */
    if (realpath(n->cfg.data_dir, a->hide) != NULL) {
        args[k++] = "--hide";
        args[k++] = a->hide;
    }
    args[k] = NULL;
}

/* The channel (our end on hp->pipe), the mark page and the plugin file. */
static int open_channel(struct ol__hostproc *hp, struct ol__node *n,
                        struct ol__code *c, struct host_fds *f)
{
    int one = SOCK_BUF;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->sv) != 0 ||
        (f->mfd = mark_page(hp)) < 0 ||
        (f->cfd = open(c->path, O_RDONLY | O_CLOEXEC)) < 0) {
        ol_log(OL_LOG_ERROR, "plugin '%s': cannot set up its host: %s",
               c->kind, strerror(errno));
        return OL_EIO;
    }
    for (int i = 0; i < 2; i++) {
        setsockopt(f->sv[i], SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
        setsockopt(f->sv[i], SOL_SOCKET, SO_RCVBUF, &one, sizeof one);
    }
    uv_pipe_init(n->loop, &hp->pipe, 0);
    hp->pipe.data = hp;
    hp->pipe_init = 1;
    hp->handles++;
    if (uv_pipe_open(&hp->pipe, f->sv[0]) != 0)
        return OL_EIO;
    f->sv[0] = -1;
    return 0;
}

static int spawn_host(struct ol__hostproc *hp, struct ol__node *n,
                      struct ol__code *c, struct host_fds *f)
{
    const int child_fd[6] = {-1, f->ofd, f->ofd, f->sv[1], f->mfd, f->cfd};
    uv_process_options_t po;
    uv_stdio_container_t io[6];
    struct host_argv a;
    int rv;

    host_args(n, c, &a);
    memset(io, 0, sizeof io);
    io[0].flags = UV_IGNORE;
    for (int i = 1; i < 6; i++) {
        io[i].flags = UV_INHERIT_FD;
        io[i].data.fd = child_fd[i];
    }
    memset(&po, 0, sizeof po);
    po.file = n->host_exe;
    po.args = a.args;
    po.exit_cb = exit_cb;
    po.stdio = io;
    po.stdio_count = 6;
    /* Its own session: a terminal's ^C and kill(0, ...) stay with it. */
    po.flags = UV_PROCESS_DETACHED;
    hp->proc.data = hp;
    rv = uv_spawn(n->loop, &hp->proc, &po);
    if (rv != 0) {
        ol_log(OL_LOG_ERROR, "plugin '%s': cannot start %s: %s", c->kind,
               n->host_exe, uv_strerror(rv));
        return OL_EIO;
    }
    return 0;
}

/* A host is running: start reading it and put it on the node's list. */
static void host_started(struct ol__hostproc *hp, struct ol__node *n,
                         struct ol__code *c)
{
    void *v;

    hp->spawned = 1;
    hp->handles++;
    n->n.host_starts++;
    ol__hp_out_start(hp, c->kind, hp->proc.pid);
    ol__hp_read_start(hp);
    uv_timer_start(&hp->watch, watch_cb, WATCH_MS, WATCH_MS);
    /* The host starts out knowing which mailboxes are full. */
    for (size_t i = 0; ol__map_next(&n->full, &i, &v);)
        ol__hp_full(hp, v, 1);
    hp->next = n->hps;
    if (n->hps)
        n->hps->prev = hp;
    n->hps = hp;
}

int ol__hostproc_create(struct ol__node *n, struct ol__code *c,
                        struct ol__hostproc **out)
{
    struct ol__hostproc *hp = calloc(1, sizeof *hp);
    struct host_fds f = {{-1, -1}, -1, -1, -1};
    int rv;

    if (hp == NULL)
        return OL_ENOMEM;
    hp->node = n;
    hp->code = c;
    hp->state = OL_HP_STARTING;
    hp->started_ms = ol__mono_ms();
    ol__buf_init(&hp->out);
    ol__buf_init(&hp->in);
    uv_timer_init(n->loop, &hp->watch);
    hp->watch.data = hp;
    hp->handles = 1;
    if ((rv = open_channel(hp, n, c, &f)) != 0)
        goto fail;
    if (ol__hp_out_open(hp, n->loop, &f.ofd) != 0) {
        rv = OL_EIO;
        goto fail;
    }
    if ((rv = spawn_host(hp, n, c, &f)) != 0)
        goto fail;
    close_fds(&f);
    host_started(hp, n, c);
    *out = hp;
    return 0;
fail:
    close_fds(&f);
    hp->code = NULL;
    hp->state = OL_HP_DEAD;
    /* Not on the node's list yet; close_handles copes. */
    close_handles(hp);
    return rv;
}

/* ---- going away ---- */

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    (void)status;
    free(req);
}

void ol__hostproc_close(struct ol__hostproc *hp)
{
    uv_shutdown_t *req;

    if (hp == NULL || hp->closing)
        return;
    hp->closing = 1;
    if (hp->code && hp->code->hp == hp)
        hp->code->hp = NULL;
    hp->code = NULL;
    if (hp->exited || !hp->spawned) {
        close_handles(hp);
        return;
    }
    ol__hp_flush_one(hp);
    /* EOF tells the host to finish the CLOSE items and exit; the watchdog
     * kills it if it takes longer than the grace period. */
    req = calloc(1, sizeof *req);
    if (req == NULL ||
        uv_shutdown(req, (uv_stream_t *)&hp->pipe, shutdown_cb) != 0) {
        free(req);
        uv_process_kill(&hp->proc, SIGKILL);
    }
    hp->eof_ms = ol__mono_ms();
}

void ol__hostproc_abandon(struct ol__hostproc *hp)
{
    if (hp == NULL)
        return;
    if (hp->spawned && !hp->exited)
        uv_process_kill(&hp->proc, SIGKILL);
    hp->code = NULL;
}
