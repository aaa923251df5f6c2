/*
 * The effect chain of one agent, checked across consecutive checkpoints
 * (record/ckpt.h: an effect is declared in checkpoint S, carried while
 * open, and leaves the open list in the checkpoint that records its
 * outcome).  For checkpoint N after N-1:
 *
 *   - an intent with seq N is new: the new ones have indexes 0..k-1 and
 *     key ol__effect_key(agent, N, idx, prev_hash of N);
 *   - any other intent was open in N-1, with the same id, kind, payload
 *     and key;
 *   - an intent open in N-1 and not in N has an outcome in N;
 *   - every outcome in N is of an intent open in N-1.
 *
 * Where N-1 is not at hand (the first stored checkpoint of a pruned
 * chain, a gap, or a row that did not verify) only what N says of itself
 * is checked, and the check starts again from N.
 */
#ifndef OL_VERIFY_FX_H
#define OL_VERIFY_FX_H

#include <stddef.h>
#include <stdint.h>

#include "base/sizes.h"
#include "record/ckpt.h"

/* The open effects of the last checkpoint checked. */
struct ol__vfx_chain {
    char agent[OL_NAME_MAX + 1];
    uint64_t seq; /* that checkpoint's seq; 0: none held */
    struct ol__intent *open;
    uint32_t n_open;
};

/* Forget what is held (the next checkpoint starts a new check). */
void ol__vfx_reset(struct ol__vfx_chain *fc);

/* Called for each problem: the effect's seq and index, and what is wrong. */
typedef void (*ol__vfx_cb)(void *data, uint64_t seq, uint32_t idx,
                           const char *problem);

/*
 * Check the effects of the verified checkpoint `c` against what `fc`
 * holds, reporting each problem through `cb`; then hold c's open effects
 * (moved out of `c`: c->effects is NULL after).  Returns the number of
 * problems.
 */
int ol__vfx_step(struct ol__vfx_chain *fc, struct ol__ckpt *c, ol__vfx_cb cb,
                 void *data);

#endif
