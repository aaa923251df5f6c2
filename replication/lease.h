/*
 * How long a lease lasts, from the failover time and the bound on how far
 * two nodes' clock rates may differ (cluster_lease.c has the rule).
 *
 * A node runs agents until its lease runs out: lease ms after it sent a
 * ping that the leader answered.  A leader moves a node's agents after
 * failover ms without hearing from it.  The longest a cut-off node can go
 * on is two leases back to back: a deposed leader that still had a
 * majority's echoes grants one more lease to a node on its side just before
 * its own runs out.  Measured on clocks whose rates differ by up to
 * d percent, that must end before the new leader's failover time has
 * passed on its own clock:
 *
 *     2 x lease x (100 + d) / 100  <=  failover x (100 - d) / 100
 *
 * so lease = failover x (100 - d) / (2 x (100 + d)).  At the default
 * d = 10 a lease is 41% of the failover time; at d = 1, 49%.
 *
 * A live move (off a node that is still answering) waits on the new
 * owner's clock for the longest lease the old owner can still hold,
 * stretched by the same bound: lease x (100 + d) / (100 - d), plus one
 * heartbeat for the tick that notices it.
 */
#ifndef OL_LEASE_H
#define OL_LEASE_H

static inline unsigned ol__cluster_lease_ms(unsigned failover_ms,
                                            unsigned drift_pct)
{
    return (unsigned)((unsigned long long)failover_ms * (100 - drift_pct) /
                      (2 * (100 + drift_pct)));
}

static inline unsigned ol__cluster_lease_stretch_ms(unsigned lease_ms,
                                                    unsigned drift_pct)
{
    return (unsigned)(((unsigned long long)lease_ms * (100 + drift_pct) +
                       (100 - drift_pct) - 1) /
                      (100 - drift_pct));
}

#endif
