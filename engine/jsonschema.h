/*
 * jsonschema.h - JSON Schema to a GBNF grammar (engine-internal; the
 * public entry is engine_json_schema_grammar() in engine.h).
 *
 * What is honoured: type (one or a list), object (properties, required,
 * additionalProperties: false / true / absent / a schema when there are no
 * properties), array (items, prefixItems, minItems, maxItems), string
 * (minLength, maxLength, pattern as a regular expression subset, format
 * date / time / date-time / uuid), integer (minimum and maximum, exclusive
 * or not), number (minimum 0 or exclusiveMinimum 0: no sign), boolean,
 * null, enum, const, anyOf, oneOf (as anyOf: a grammar cannot exclude a
 * value that matches two branches), allOf of one schema, $ref to #, #/$defs/X
 * and #/definitions/X (recursion included), true and {}.
 *
 * Every reply the grammar allows is valid under the schema: where the
 * schema allows more than the grammar writes (properties beyond the
 * declared ones, whitespace), the grammar writes the narrower form; it
 * never writes less strictly.  Anything else that constrains values
 * (uniqueItems, multipleOf, patternProperties, minProperties, contains,
 * not, if/then/else, dependent*, a pattern outside the subset, a number
 * range it cannot write, ...) is refused with a message naming the
 * keyword and where it is ("at /properties/age: ...").  Annotations
 * (title, description, default, examples, $schema, $id, $comment,
 * deprecated, readOnly, writeOnly, unknown formats) are ignored.
 *
 * Strings: the output is malloc'd and NUL-terminated, the caller's to
 * free.  Nothing here prints or exits; any thread.
 */
#ifndef TTYCHAT_JSONSCHEMA_H
#define TTYCHAT_JSONSCHEMA_H

#include <stddef.h>

enum {
	JSONSCHEMA_OK = 0,
	JSONSCHEMA_E_NOMEM = -1,
	JSONSCHEMA_E_SCHEMA = -2,   /* not JSON, or a schema it cannot honour */
};

/* Converts the schema text[0..len) into a GBNF grammar (*out).  Returns
 * JSONSCHEMA_OK, or a negative code with a one-line message in err. */
int jsonschema_to_gbnf(const char *text, size_t len, char **out, char *err, size_t errlen);

#endif
