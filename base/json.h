/*
 * JSON <-> msgpack for the CLI and the control protocol, over jansson.
 *
 * msgpack -> JSON keeps every value visible:
 *   nil, bool, str, array    -> the same JSON type
 *   int                      -> integer; a uint64 above INT64_MAX -> a
 *                               decimal string
 *   float32/64               -> real; NaN and infinities -> the strings
 *                               "nan", "inf", "-inf"
 *   bin                      -> {"$bin": "<hex>"}
 *   ext                      -> {"$ext": <type>, "hex": "<hex>"}
 *   str that is not UTF-8    -> {"$str": "<hex>"}
 *   map with a non-str key   -> the key stringified (ints in decimal,
 *                               true/false/null, bin as hex, containers as
 *                               compact JSON)
 *
 * JSON -> msgpack is the plain mapping (objects become maps with str keys,
 * integers int, reals float64); "$bin" objects are not reinterpreted.
 */
#ifndef OL_JSON_H
#define OL_JSON_H

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>

#include "buf.h"

#define WUR __attribute__((warn_unused_result))

/*
 * Arrays, objects and maps nest at most this deep in a message or an agent
 * config.  The node reads every request with msgpack-c, whose unpacker
 * stops at 32 levels, and a value is later carried inside other maps (the
 * request, an agent's state, a reply to `show`), so the limit leaves room
 * for those.
 */
#define OL_JSON_MAX_DEPTH 16

/* How deep arrays and objects (maps) nest in a value: 0 for a scalar, 1
 * for [1, 2].  Counting stops just past OL_JSON_MAX_DEPTH. */
size_t ol__json_depth(const json_t *j);
size_t ol__mp_object_depth(const msgpack_object *o);

/* Convert a msgpack object.  Returns a new reference, or NULL when out of
 * memory. */
json_t *ol__json_from_object(const msgpack_object *o);

/*
 * Convert untrusted bytes holding exactly one msgpack object: they are
 * checked with ol__mp_check() before msgpack-c unpacks them.  *out gets a
 * new reference.  Returns 0, OL_EMALFORMED (errmsg names the byte offset,
 * or says the value nests too deep for the unpacker) or OL_ENOMEM.
 */
int ol__json_from_msgpack(const void *p, size_t len, json_t **out,
                          char *errmsg) WUR;

/* Pack a JSON value with `pk`.  Returns 0 or OL_ENOMEM. */
int ol__json_pack(const json_t *j, msgpack_packer *pk);

/*
 * Parse JSON text (any value at the top level; duplicate object keys are
 * refused) and append its msgpack encoding to `out`.  Returns 0,
 * OL_EMALFORMED with errmsg "line L column C: <what>", OL_ETOOBIG (nested
 * deeper than OL_JSON_MAX_DEPTH) or OL_ENOMEM.
 */
int ol__json_to_msgpack(const char *text, size_t len, struct ol__buf *out,
                        char *errmsg) WUR;

/* Parse JSON text into a new reference, errors as ol__json_to_msgpack(),
 * plus OL_ETOOBIG (errmsg says so) for a value nested deeper than
 * OL_JSON_MAX_DEPTH. */
int ol__json_parse(const char *text, size_t len, json_t **out,
                   char *errmsg) WUR;

#endif
