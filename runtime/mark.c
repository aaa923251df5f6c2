/*
 * Step marks (see mark.h): the slot protocol, and the crash handlers that
 * note which thread faulted before the process dies.
 */
#include "mark.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "outlast/agent.h"
#include "base/err.h"

static struct ol__mark *the_mark;
static __thread int thread_index = -3; /* not a thread that runs plugins */
static struct sigaction old_act[NSIG];
static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ol__mark_init(struct ol__mark *m)
{
    memset(m, 0, sizeof *m);
    m->magic = OL_MARK_MAGIC;
    m->version = OL_MARK_VERSION;
    m->exit_thread = -2;
}

void ol__mark_begin(struct ol__mark_slot *s, uint32_t phase, uint32_t slot,
                    uint32_t gen, uint32_t event)
{
    __atomic_add_fetch(&s->count, 1, __ATOMIC_ACQ_REL);
    s->slot = slot;
    s->gen = gen;
    s->event = event;
    s->started_ms = mono_ms();
    __atomic_store_n(&s->phase, phase, __ATOMIC_RELEASE);
    __atomic_add_fetch(&s->count, 1, __ATOMIC_ACQ_REL);
}

void ol__mark_end(struct ol__mark_slot *s)
{
    __atomic_add_fetch(&s->count, 1, __ATOMIC_ACQ_REL);
    __atomic_store_n(&s->phase, OL_MARK_IDLE, __ATOMIC_RELEASE);
    __atomic_add_fetch(&s->count, 1, __ATOMIC_ACQ_REL);
}

int ol__mark_read(const struct ol__mark_slot *s, struct ol__mark_slot *out)
{
    uint32_t c1 = __atomic_load_n(&s->count, __ATOMIC_ACQUIRE), c2;

    if (c1 & 1)
        return -1;
    memcpy(out, s, sizeof *out);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    c2 = __atomic_load_n(&s->count, __ATOMIC_ACQUIRE);
    return c1 == c2 ? 0 : -1;
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
    struct ol__mark *m = the_mark;
    int32_t none = 0;

    (void)si;
    (void)uc;
    if (m && __atomic_compare_exchange_n(&m->crash_sig, &none, sig, 0,
                                         __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        m->crash_thread = thread_index;
    /* Let the disposition that was there before act: the process dies
     * (or a sanitizer reports) exactly as it would have without us. */
    sigaction(sig, &old_act[sig], NULL);
    raise(sig);
}

static void on_exit_cb(void)
{
    struct ol__mark *m = the_mark;

    if (m && m->exit_thread == -2)
        m->exit_thread = thread_index;
    (void)m;
}

int ol__mark_install(struct ol__mark *m)
{
    struct sigaction sa;

    the_mark = m;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fatal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        if (sigaction(fatal[i], &sa, &old_act[fatal[i]]) != 0)
            return OL_EIO;
    if (atexit(on_exit_cb) != 0)
        return OL_ENOMEM;
    return 0;
}

void ol__mark_uninstall(void)
{
    if (the_mark == NULL)
        return;
    the_mark = NULL;
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        sigaction(fatal[i], &old_act[fatal[i]], NULL);
}

static __thread void *own_stack;

#define ALT_STACK (64 * 1024)

int ol__mark_thread(int index)
{
    stack_t ss, old;

    thread_index = index;
    /* A thread that has an alternate stack already (sanitizers give every
     * thread one) keeps it: the handler runs on it just as well. */
    if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
        return 0;
    memset(&ss, 0, sizeof ss);
    ss.ss_size = ALT_STACK;
    ss.ss_sp = mmap(NULL, ALT_STACK, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ss.ss_sp == MAP_FAILED)
        return OL_ENOMEM;
    /* Kept for the thread's life: the handler may run on it at any time. */
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(ss.ss_sp, ALT_STACK);
        return OL_EIO;
    }
    own_stack = ss.ss_sp;
    return 0;
}

void ol__mark_thread_done(void)
{
    stack_t ss;

    if (own_stack == NULL)
        return;
    memset(&ss, 0, sizeof ss);
    ss.ss_flags = SS_DISABLE;
    if (sigaltstack(&ss, NULL) == 0)
        munmap(own_stack, ALT_STACK);
    own_stack = NULL;
}

const char *ol__mark_phase_name(uint32_t phase)
{
    switch (phase) {
    case OL_MARK_LOAD:
        return "loading the plugin";
    case OL_MARK_OPEN:
        return "open()";
    case OL_MARK_RESTORE:
        return "restore()";
    case OL_MARK_HANDLE:
        return "handle()";
    case OL_MARK_SAVE:
        return "save()";
    case OL_MARK_CLOSE:
        return "close()";
    case OL_MARK_WORK:
        return "a work function";
    }
    return "host code";
}

const char *ol__signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGILL:
        return "SIGILL";
    case SIGFPE:
        return "SIGFPE";
    case SIGABRT:
        return "SIGABRT";
    case SIGKILL:
        return "SIGKILL";
    case SIGTERM:
        return "SIGTERM";
    case SIGXCPU:
        return "SIGXCPU";
    case SIGSYS:
        return "SIGSYS";
    }
    return "a signal";
}
