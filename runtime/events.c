/*
 * Recent events: a ring, plus (in a cluster) each agent's last known owner
 * so a change of owner is recognised as a move.  The first row seen for an
 * agent only records its owner: placing a new agent is not a move.
 */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "state/store.h"

struct owner_ent {
    uint64_t owner;
    int status;
    char name[]; /* the map's key */
};

void ol__events_init(struct ol__events *ev, int track_owners)
{
    memset(ev, 0, sizeof *ev);
    ev->track_owners = track_owners;
    ol__map_init(&ev->owners);
}

void ol__events_close(struct ol__events *ev)
{
    void *v;

    for (size_t i = 0; ol__map_next(&ev->owners, &i, &v);)
        free(v);
    ol__map_close(&ev->owners);
}

void ol__events_add(struct ol__events *ev, int kind, const char *agent,
                    uint64_t from, uint64_t to, uint64_t epoch,
                    const char *text)
{
    struct ol__event *e;

    if (ev->count == OL_EVENTS_MAX) {
        ev->head = (ev->head + 1) % OL_EVENTS_MAX;
        ev->count--;
    }
    e = &ev->ring[(ev->head + ev->count) % OL_EVENTS_MAX];
    ev->count++;
    ev->total++;
    memset(e, 0, sizeof *e);
    e->time_ms = ol__wall_ms();
    e->kind = kind;
    snprintf(e->agent, sizeof e->agent, "%s", agent ? agent : "");
    e->from = from;
    e->to = to;
    e->epoch = epoch;
    snprintf(e->text, sizeof e->text, "%s", text ? text : "");
}

void ol__events_agent(struct ol__events *ev, const struct ol__sm_agent *row,
                      int initial)
{
    struct owner_ent *o = NULL;
    uint64_t prev_owner = 0;
    int prev_status = 0, known = 0;

    if (ev->track_owners) {
        o = ol__map_get(&ev->owners, row->name);
        if (o) {
            known = 1;
            prev_owner = o->owner;
            prev_status = o->status;
        } else {
            size_t n = strlen(row->name) + 1;

            o = malloc(sizeof *o + n);
            if (o == NULL)
                return;
            memcpy(o->name, row->name, n);
            if (ol__map_put(&ev->owners, o->name, o) != 0) {
                free(o);
                return;
            }
        }
        o->owner = row->owner;
        o->status = row->status;
    }
    if (initial)
        return;
    if (row->status == OL_AGENT_QUARANTINED &&
        (!known || prev_status != OL_AGENT_QUARANTINED)) {
        /* A single node keeps no owners: skip a repeat of the event
         * before. */
        const struct ol__event *last =
            ev->count ? &ev->ring[(ev->head + ev->count - 1) %
                                  OL_EVENTS_MAX]
                      : NULL;

        if (ev->track_owners || last == NULL ||
            last->kind != OL_EV_QUARANTINED ||
            strcmp(last->agent, row->name) != 0 || last->epoch != row->epoch)
            ol__events_add(ev, OL_EV_QUARANTINED, row->name, row->owner,
                           row->owner, row->epoch, row->reason);
        return;
    }
    if (known && prev_owner != 0 && row->owner != 0 &&
        row->owner != prev_owner &&
        (row->status == OL_AGENT_RUNNING || row->status == OL_AGENT_STOPPING))
        ol__events_add(ev, OL_EV_MOVED, row->name, prev_owner, row->owner,
                       row->epoch, NULL);
}

uint32_t ol__events_copy(const struct ol__events *ev, struct ol__event *out)
{
    for (uint32_t i = 0; i < ev->count; i++)
        out[i] = ev->ring[(ev->head + i) % OL_EVENTS_MAX];
    return ev->count;
}

const char *ol__event_kind_name(int kind)
{
    switch (kind) {
    case OL_EV_MOVED:
        return "moved";
    case OL_EV_QUARANTINED:
        return "quarantined";
    case OL_EV_LEASE_LOST:
        return "lease_lost";
    case OL_EV_LEASE_HELD:
        return "lease_held";
    }
    return "?";
}
