/*
 * Telling a service manager how the daemon is doing, through systemd's
 * sd_notify protocol (a datagram to $NOTIFY_SOCKET; nothing happens when
 * it is not set, so outside systemd these are no-ops):
 *   READY=1     once the node is up: store open, agents hosted, control
 *               socket (and the HTTP endpoint, if any) listening;
 *   STOPPING=1  when a drain starts;
 *   STATUS=...  a one-line summary with each of those;
 *   WATCHDOG=1  from a loop timer at half of $WATCHDOG_USEC, so a loop
 *               that stops turning gets the service restarted.
 */
#ifndef OL_NOTIFY_H
#define OL_NOTIFY_H

#include <stdint.h>

/* Send `state` (e.g. "READY=1\nSTATUS=up").  Returns 1 if a service
 * manager was told, 0 if none listens, or a negative OL_E* code. */
int ol__notify(const char *state);

/* The watchdog interval the service manager expects pings at, in
 * microseconds, or 0 (none asked for, or not under systemd). */
uint64_t ol__notify_watchdog_us(void);

#endif
