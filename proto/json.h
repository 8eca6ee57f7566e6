/*
 * json.h: a small strict JSON reader and writer helpers for the project's own
 * files: safetensors headers, metrics.jsonl lines, marker files. It parses a
 * whole document into a tree held in one allocation; it is not a streaming
 * parser. Hostile input costs at most O(n log n) time and bounded stack.
 */
#ifndef LEJEPA_JSON_H
#define LEJEPA_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum json_type {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

struct json {
    enum json_type type;
    double number;           /* JSON_NUMBER */
    const char *string;      /* JSON_STRING: NUL-terminated, unescaped */
    size_t len;              /* string length, or element count */
    const char *key;         /* member name when the parent is an object */
    struct json *child;      /* first element / member */
    struct json *next;       /* next sibling */
};

/* Nesting deeper than this is refused whatever max_depth says: the parser
 * recurses once per level, and its stack must stay small. */
#define JSON_DEPTH_CAP 256

/* Parses text[0..len) as one JSON value (surrounding whitespace allowed),
 * with nesting at most max_depth (and JSON_DEPTH_CAP). An object that names
 * a member twice is refused. Time is O(len log len), memory a small
 * multiple of len. Returns the root, or NULL with the reason (and byte
 * offset) in err. The whole tree is one allocation: free it with
 * json_free(root). */
struct json *json_parse(const char *text, size_t len, int max_depth, char *err);
void json_free(struct json *root);

/* Member of an object by name (first match), or NULL. */
const struct json *json_get(const struct json *obj, const char *key);

/* Exact integer value of a number in [0, 2^53], or -1 with err. */
int json_get_u64(const struct json *v, uint64_t *out);

/* Writes s as a JSON string literal (quotes and escapes included). */
void json_write_string(FILE *out, const char *s);

#endif
