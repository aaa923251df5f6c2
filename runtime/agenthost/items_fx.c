/*
 * Effects in an agent host: a PERFORM item from the node becomes one
 * attempt (ol__fxjob_run) on the plugin's work pool, and its outcome goes
 * back as R_PERFORM.  The attempt sees copies of what it needs, never the
 * instance, so the node may close the instance meanwhile: the node drops
 * an answer for an instance it no longer has.
 */
#include <stdlib.h>

#include "base/err.h"
#include "runtime/hostapi.h"
#include "runtime/ipc.h"
#include "host_int.h"

static void reply(uint32_t slot, uint32_t gen, uint64_t token, int status,
                  const void *result, uint32_t len, const char *detail)
{
    msgpack_packer *pk = ahost_packer();

    msgpack_pack_array(pk, 7);
    msgpack_pack_uint32(pk, OL_IPC_R_PERFORM);
    msgpack_pack_uint32(pk, slot);
    msgpack_pack_uint32(pk, gen);
    msgpack_pack_uint64(pk, token);
    msgpack_pack_int(pk, status);
    if (result)
        ol__ipc_bin(pk, result, len);
    else
        msgpack_pack_nil(pk);
    ol__ipc_str(pk, detail);
    ahost_item_done();
}

int ahost_do_perform(struct ol__mpr *r)
{
    struct ol__ipc_perform p;
    struct ol__fxjob *j;
    struct ol__witem *it;
    struct ol_agent *a;

    if (ol__ipc_read_perform(r, &p) != 0)
        return OL_EMALFORMED;
    a = ahost_lookup(p.slot, p.gen);
    if (a == NULL || !a->open || a->closing) {
        reply(p.slot, p.gen, p.token, OL_IPC_FX_NOT_RUN, NULL, 0,
              "the instance is gone");
        return 0;
    }
    /* Past the node's lease: the agent may be someone else's now. */
    if (p.run_by && ol__boot_ms() > p.run_by) {
        reply(p.slot, p.gen, p.token, OL_IPC_FX_NOT_RUN, NULL, 0,
              "the node's lease ran out before it could start");
        return 0;
    }
    if (!OL_VTABLE_HAS(ah.vt, perform) || ah.vt->perform == NULL) {
        reply(p.slot, p.gen, p.token, OL_EFFECT_FAILED, NULL, 0,
              "the plugin has no perform()");
        return 0;
    }
    p.e.agent = a->name;
    j = ol__fxjob_new(ah.vt, &p.e);
    it = j ? ol__witem_new(ol__fxjob_run, j, p.e.effect_id, p.e.epoch,
                           a->name)
           : NULL;
    if (it == NULL) {
        ol__fxjob_free(j);
        reply(p.slot, p.gen, p.token, OL_EFFECT_RETRY, NULL, 0,
              "out of memory");
        return 0;
    }
    j->token = p.token;
    j->run_by = p.run_by;
    j->slot = it->slot = a->slot;
    j->gen = it->gen = a->gen;
    ol__wpool_submit(ah.pool, it);
    return 0;
}

void ahost_fx_done(struct ol__witem *it)
{
    struct ol__fxjob *j = it->arg;

    reply(j->slot, j->gen, j->token, j->status, j->result, j->result_len,
          j->detail[0] ? j->detail : NULL);
    ol__fxjob_free(j);
    free(it);
}
