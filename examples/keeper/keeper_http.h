/*
 * keeper_http.h - the keeper's perform() and reconcile(): orders to the
 * exchange over HTTP with libcurl, on a work-pool thread.
 */
#ifndef KEEPER_HTTP_H
#define KEEPER_HTTP_H

#include <stdint.h>

#include <outlast/agent.h>

#define KEEPER_URL_MAX 200                 /* bytes in the exchange's URL */
#define KEEPER_NUM_MAX ((uint64_t)1 << 53) /* the exchange's number limit */

/* Checks an exchange base URL (http:// or https://) and cuts trailing
 * slashes off it.  Returns 0 or -1. */
int keeper_url_check(char *url);

/* POST /orders with the effect's key and epoch (see keeper.c). */
int keeper_perform(const struct ol_effect *e, const struct ol_sink *result);

/* GET /orders/KEY: DONE when the exchange has it, UNKNOWN when not. */
int keeper_reconcile(const struct ol_effect *e, const struct ol_sink *result);

#endif /* KEEPER_HTTP_H */
