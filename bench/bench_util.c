/*
 * Helpers shared by the benchmarks (see bench_util.h).  None of this is
 * timed: it sets a node up, feeds it agents and reads counters around the
 * measured windows.
 */
#define _XOPEN_SOURCE 700
#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdarg.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "base/pack.h"

int bu_tmpdir(char *out, size_t cap)
{
    const char *base = getenv("TMPDIR");

    if (base == NULL || base[0] == '\0')
        base = "/tmp";
    if ((size_t)snprintf(out, cap, "%s/olbench.XXXXXX", base) >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return mkdtemp(out) ? 0 : -1;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void bu_rmrf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

long bu_status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t flen = strlen(field);
    long v = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            v = strtol(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

double bu_cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

void bu_exe_dir(char *out, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

    if (n <= 0) {
        snprintf(out, cap, ".");
        return;
    }
    exe[n] = '\0';
    snprintf(out, cap, "%s", dirname(exe));
}

void bu_perf(const char *cmd)
{
    const char *path = getenv("OL_BENCH_PERF_FIFO");
    char line[32];
    int fd, len;

    if (path == NULL || path[0] == '\0')
        return;
    fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    len = snprintf(line, sizeof line, "%s\n", cmd);
    if (write(fd, line, (size_t)len) != len)
        fprintf(stderr, "bench: perf control '%s': %s\n", path,
                strerror(errno));
    close(fd);
}

void bu_config(struct ol__config *cfg, const char *data_dir,
               const char *plugin_dir)
{
    char dir[PATH_MAX];

    ol__config_defaults(cfg);
    cfg->default_agents = 0;
    cfg->log_level = OL_LOG_WARN;
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "%s", data_dir);
    snprintf(cfg->plugin_dir, sizeof cfg->plugin_dir, "%s", plugin_dir);
    /* The agent host is built in runtime/bin/, next to outlastd. */
    bu_exe_dir(dir, sizeof dir);
    snprintf(cfg->host_exe, sizeof cfg->host_exe,
             "%.4000s/../runtime/bin/outlast-agent-host", dir);
}

int bu_fork_call(void (*fn)(void *arg, void *out), void *arg, void *out,
                 size_t out_size)
{
    int fds[2], status;
    pid_t pid;
    ssize_t got;

    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        void *mine = calloc(1, out_size);

        close(fds[0]);
        if (mine == NULL)
            _exit(2);
        fn(arg, mine);
        if (write(fds[1], mine, out_size) != (ssize_t)out_size)
            _exit(2);
        _exit(0);
    }
    close(fds[1]);
    got = read(fds[0], out, out_size);
    close(fds[0]);
    waitpid(pid, &status, 0);
    return got == (ssize_t)out_size ? 0 : -1;
}

static uint64_t map_u64(const msgpack_object *m, const char *key)
{
    size_t klen = strlen(key);

    if (m->type != MSGPACK_OBJECT_MAP)
        return 0;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        const msgpack_object *v = &m->via.map.ptr[i].val;

        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0 &&
            v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return v->via.u64;
    }
    return 0;
}

int bu_replica_counters(struct ol__node *n, uint64_t *batches,
                        uint64_t *ckpts)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    size_t off = 0;
    int rv = -1;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    n->replica->vt->status(n->replica, &pk);
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, sb.data, sb.size, &off) ==
        MSGPACK_UNPACK_SUCCESS) {
        *batches = map_u64(&u.data, "batches");
        *ckpts = map_u64(&u.data, "checkpoints");
        rv = 0;
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return rv;
}

uint32_t bu_ready(struct ol__node *n)
{
    uint32_t ready = 0;
    void *v;

    for (size_t i = 0; ol__map_next(&n->agents, &i, &v);) {
        const struct ol_agent *a = v;

        if (a->committed_seq >= 1)
            ready++;
    }
    return ready;
}

uint32_t bu_hosted(struct ol__node *n)
{
    return (uint32_t)n->agents.count;
}

void bu_agent_name(const char *prefix, uint32_t i, char *out, size_t cap)
{
    snprintf(out, cap, "%s%06u", prefix, i);
}

int bu_spawner_init(struct bu_spawner *s, struct ol__node *n,
                    const char *prefix, uint32_t total, uint32_t chunk,
                    uint32_t size, int idle)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    memset(s, 0, sizeof *s);
    s->node = n;
    s->prefix = prefix;
    s->total = total;
    s->chunk = chunk ? chunk : 1;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, idle ? 2 : 1);
    msgpack_pack_str_with_body(&pk, "size", 4);
    msgpack_pack_uint32(&pk, size);
    if (idle) {
        msgpack_pack_str_with_body(&pk, "idle", 4);
        msgpack_pack_true(&pk);
    }
    if (sb.data == NULL)
        return OL_ENOMEM;
    s->config_len = sb.size;
    s->config = (uint8_t *)msgpack_sbuffer_release(&sb);
    return 0;
}

int bu_setup_tick(struct bu_spawner *s, char *err, size_t cap)
{
    int rv = bu_spawner_step(s);

    if (rv != 0) {
        snprintf(err, cap, "propose spawn: %s", ol_strerror(rv));
        return -1;
    }
    if (s->node->n.quarantined) {
        snprintf(err, cap, "an agent was quarantined (see the log)");
        return -1;
    }
    return 0;
}

int bu_spawner_step(struct bu_spawner *s)
{
    struct ol__entry_w w;
    uint32_t end;
    int rv = 0;

    if (s->proposed >= s->total || bu_hosted(s->node) < s->proposed)
        return 0;
    end = s->proposed + s->chunk;
    if (end > s->total)
        end = s->total;
    ol__entry_w_init(&w);
    for (uint32_t i = s->proposed; i < end && rv == 0; i++) {
        char name[OL_NAME_MAX + 1];

        bu_agent_name(s->prefix, i, name, sizeof name);
        rv = ol__entry_add_spawn(&w, ol__random_id(), name, "benchload",
                                 s->config, s->config_len,
                                 s->node->self_id, 0);
    }
    if (rv == 0)
        rv = ol__node_propose(s->node, &w);
    ol__entry_w_close(&w);
    if (rv == 0)
        s->proposed = end;
    return rv;
}

void bu_spawner_close(struct bu_spawner *s)
{
    free(s->config);
    s->config = NULL;
}

void bu_target(struct bu_targets *t, const char *fmt, ...)
{
    va_list ap;

    if (t->n >= sizeof t->line / sizeof t->line[0])
        return;
    va_start(ap, fmt);
    vsnprintf(t->line[t->n++], sizeof t->line[0], fmt, ap);
    va_end(ap);
}

void bu_targets_print(const struct bu_targets *t)
{
    printf("\n");
    for (uint32_t i = 0; i < t->n; i++)
        printf("# target: %s\n", t->line[i]);
}

int bu_arg_value(int argc, char **argv, int i, void (*usage)(FILE *),
                 const char **v)
{
    if (strcmp(argv[i], "--help") == 0) {
        usage(stdout);
        return 1;
    }
    if (i + 1 >= argc) {
        usage(stderr);
        return -1;
    }
    *v = argv[i + 1];
    return 0;
}

int bu_num_opt(const struct bu_num_opt *opts, const char *a, const char *v)
{
    for (; opts->name != NULL; opts++)
        if (strcmp(a, opts->name) == 0) {
            *opts->val = (uint32_t)strtoul(v, NULL, 10);
            return 1;
        }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

double bu_median(double *v, uint32_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
