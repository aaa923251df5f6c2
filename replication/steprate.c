/*
 * Per-agent step rates on the leader (steprate.h): one small record per
 * agent in a hash map by name, holding the EWMA and when it was last fed.
 */
#include "steprate.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/map.h"
#include "base/sizes.h"

struct rate {
    char agent[OL_NAME_MAX + 1];
    double per_s;
    uint64_t last_ms;
    int hot; /* per_s reached OL_STEPRATE_HOT_CPS: in `hot` too */
};

struct ol__steprate {
    struct ol__map by;
    /* The records whose rate was at least OL_STEPRATE_HOT_CPS when last
     * fed.  A rate only decays between checkpoints, so no other agent can
     * be that busy, and a placement pass asks about every agent: this
     * small map answers most of them without touching their records. */
    struct ol__map hot;
    size_t n;
};

struct ol__steprate *ol__steprate_create(void)
{
    struct ol__steprate *r = calloc(1, sizeof *r);

    if (r) {
        ol__map_init(&r->by);
        ol__map_init(&r->hot);
    }
    return r;
}

void ol__steprate_destroy(struct ol__steprate *r)
{
    void *v;

    if (r == NULL)
        return;
    for (size_t i = 0; ol__map_next(&r->by, &i, &v);)
        free(v);
    ol__map_close(&r->by);
    ol__map_close(&r->hot);
    free(r);
}

void ol__steprate_note(struct ol__steprate *r, const char *agent,
                       uint64_t now_ms)
{
    const double tau = OL_STEPRATE_TAU_MS;
    struct rate *e = ol__map_get(&r->by, agent);
    double dt;

    if (e == NULL) {
        if (r->n >= OL_STEPRATE_MAX || (e = calloc(1, sizeof *e)) == NULL)
            return;
        snprintf(e->agent, sizeof e->agent, "%s", agent);
        if (ol__map_put(&r->by, e->agent, e) != 0) {
            free(e);
            return;
        }
        e->last_ms = now_ms;
        r->n++;
    }
    dt = now_ms > e->last_ms ? (double)(now_ms - e->last_ms) : 0.0;
    e->per_s = e->per_s * tau / (tau + dt) + 1000.0 / (tau + dt);
    e->last_ms = now_ms;
    if (!e->hot && e->per_s >= OL_STEPRATE_HOT_CPS)
        e->hot = ol__map_put(&r->hot, e->agent, e) == 0;
    else if (e->hot && e->per_s < OL_STEPRATE_HOT_CPS) {
        ol__map_del(&r->hot, e->agent);
        e->hot = 0;
    }
}

double ol__steprate_get(const struct ol__steprate *r, const char *agent,
                        uint64_t now_ms)
{
    const double tau = OL_STEPRATE_TAU_MS;
    const struct rate *e = r ? ol__map_get(&r->by, agent) : NULL;
    double idle;

    if (e == NULL)
        return 0.0;
    idle = now_ms > e->last_ms ? (double)(now_ms - e->last_ms) : 0.0;
    return e->per_s * tau / (tau + idle);
}

int ol__steprate_busy(const struct ol__steprate *r, const char *agent,
                      uint64_t now_ms, double cps)
{
    if (r == NULL)
        return 0;
    if (cps >= OL_STEPRATE_HOT_CPS &&
        (r->hot.count == 0 || ol__map_get(&r->hot, agent) == NULL))
        return 0;
    return ol__steprate_get(r, agent, now_ms) >= cps;
}

size_t ol__steprate_hot(const struct ol__steprate *r)
{
    return r ? r->hot.count : 0;
}

size_t ol__steprate_count(const struct ol__steprate *r)
{
    return r ? r->n : 0;
}
