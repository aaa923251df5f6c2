/* Sample records shared by the codec tests. */
#ifndef OL_TEST_SAMPLE_H
#define OL_TEST_SAMPLE_H

#include "record/ckpt.h"

/* Fill a checkpoint with every field set; owned pointers are malloc'd. */
void sample_ckpt_fill(struct ol__ckpt *c, const struct ol__key *k,
                      const char *agent, uint64_t seq);

#endif
