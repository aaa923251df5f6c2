/*
 * sd_notify through libsystemd when the build has it; without it the
 * daemon still runs, and these report that no manager was told.
 */
#include "notify.h"

#include "base/err.h"
#include "ol_config.h"

#ifdef OL_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

int ol__notify(const char *state)
{
    int rv = sd_notify(0, state);

    return rv < 0 ? ol__err_from_errno(-rv) : rv;
}

uint64_t ol__notify_watchdog_us(void)
{
    uint64_t us = 0;

    return sd_watchdog_enabled(0, &us) > 0 ? us : 0;
}
#else
int ol__notify(const char *state)
{
    (void)state;
    return 0;
}

uint64_t ol__notify_watchdog_us(void)
{
    return 0;
}
#endif
