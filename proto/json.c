/*
 * json.c: strict recursive-descent JSON parser (RFC 8259) into a tree whose
 * nodes and unescaped strings live in one block sized from the input. Its
 * inputs include files a user was handed (safetensors headers up to 64 MiB),
 * so every step is linear or n log n in the input: a counting pass bounds
 * the nodes, duplicate member names are found by sorting each object's
 * names once, and nesting has a hard cap whatever the caller asks for.
 */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct parser {
    const char *p, *end, *start;
    struct json *nodes;
    size_t n_nodes, cap_nodes;
    char *strings;            /* bump allocator for unescaped strings */
    int depth, max_depth;
    const char **names;       /* scratch for one object's member names */
    size_t cap_names;
    char *err;
};

static int fail(struct parser *ps, const char *what)
{
    return errf(ps->err, "JSON: %s at byte %zu", what,
                (size_t)(ps->p - ps->start));
}

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
                               *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static struct json *new_node(struct parser *ps, enum json_type t)
{
    CHECK(ps->n_nodes < ps->cap_nodes);
    struct json *n = &ps->nodes[ps->n_nodes++];
    memset(n, 0, sizeof *n);
    n->type = t;
    return n;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* Parses a string literal at ps->p; *out points into the string block. */
static int parse_string(struct parser *ps, const char **out, size_t *len)
{
    ps->p++; /* opening quote */
    char *o = ps->strings, *begin = ps->strings;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20)
            return fail(ps, "control character in string");
        if (c != '\\') {
            *o++ = (char)c;
            ps->p++;
            continue;
        }
        if (ps->end - ps->p < 2)
            return fail(ps, "unterminated escape");
        char e = ps->p[1];
        ps->p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (ps->end - ps->p < 4 || hex4(ps->p, &cp) != 0)
                return fail(ps, "bad \\u escape");
            ps->p += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                    hex4(ps->p + 2, &lo) != 0 || lo < 0xDC00 || lo >= 0xE000)
                    return fail(ps, "unpaired surrogate");
                ps->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return fail(ps, "unpaired surrogate");
            }
            if (cp == 0)
                return fail(ps, "NUL in string");
            o = put_utf8(o, cp);
            break;
        }
        default:
            return fail(ps, "bad escape");
        }
    }
    if (ps->p >= ps->end)
        return fail(ps, "unterminated string");
    ps->p++;
    *o++ = '\0';
    ps->strings = o;
    *out = begin;
    *len = (size_t)(o - begin - 1);
    return 0;
}

static int parse_number(struct parser *ps, double *out)
{
    const char *s = ps->p;
    if (s < ps->end && *s == '-')
        s++;
    if (s >= ps->end || !(*s >= '0' && *s <= '9'))
        return fail(ps, "bad number");
    if (*s == '0' && s + 1 < ps->end && s[1] >= '0' && s[1] <= '9')
        return fail(ps, "leading zero in number");
    while (s < ps->end && ((*s >= '0' && *s <= '9') || *s == '.' || *s == 'e' ||
                           *s == 'E' || *s == '+' || *s == '-'))
        s++;
    char buf[64];
    size_t n = (size_t)(s - ps->p);
    if (n >= sizeof buf)
        return fail(ps, "number too long");
    memcpy(buf, ps->p, n);
    buf[n] = '\0';
    char *endp;
    double v = strtod(buf, &endp);
    if (endp != buf + n || !isfinite(v))
        return fail(ps, "bad number");
    *out = v;
    ps->p = s;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Refuses an object that names a member twice: readers take the first
 * match, so a second "dtype" or "__metadata__" would be silently ignored by
 * us and maybe not by another reader. Sorting the names and comparing
 * neighbours costs m log m per object of m members (an 80k-tensor
 * safetensors header took seconds when this was a pairwise scan). Children
 * are complete when their parent closes, so one scratch array serves all. */
static int check_unique_names(struct parser *ps, const struct json *obj)
{
    if (obj->len < 2)
        return 0;
    if (obj->len > ps->cap_names) {
        ps->cap_names = obj->len;
        ps->names = xrealloc(ps->names, ps->cap_names * sizeof *ps->names);
    }
    size_t i = 0;
    for (const struct json *c = obj->child; c; c = c->next)
        ps->names[i++] = c->key;
    qsort(ps->names, obj->len, sizeof *ps->names, cmp_name);
    for (i = 1; i < obj->len; i++)
        if (strcmp(ps->names[i - 1], ps->names[i]) == 0)
            return errf(ps->err, "JSON: member name '%.64s' appears twice in the "
                        "object ending at byte %zu", ps->names[i],
                        (size_t)(ps->p - ps->start));
    return 0;
}

static int parse_value(struct parser *ps, struct json **out);

static int parse_container(struct parser *ps, struct json *node, char close)
{
    if (++ps->depth > ps->max_depth)
        return fail(ps, "nesting too deep");
    ps->p++;
    skip_ws(ps);
    struct json **tail = &node->child;
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        const char *key = NULL;
        size_t klen;
        skip_ws(ps);
        if (close == '}') {
            if (ps->p >= ps->end || *ps->p != '"')
                return fail(ps, "expected member name");
            if (parse_string(ps, &key, &klen) != 0)
                return -1;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return fail(ps, "expected ':'");
            ps->p++;
        }
        struct json *child;
        if (parse_value(ps, &child) != 0)
            return -1;
        child->key = key;
        *tail = child;
        tail = &child->next;
        node->len++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            ps->depth--;
            return close == '}' ? check_unique_names(ps, node) : 0;
        }
        return fail(ps, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int parse_literal(struct parser *ps, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "unexpected token");
    ps->p += n;
    return 0;
}

static int parse_value(struct parser *ps, struct json **out)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, "unexpected end");
    struct json *n;
    switch (*ps->p) {
    case '{':
        n = new_node(ps, JSON_OBJECT);
        *out = n;
        return parse_container(ps, n, '}');
    case '[':
        n = new_node(ps, JSON_ARRAY);
        *out = n;
        return parse_container(ps, n, ']');
    case '"':
        n = new_node(ps, JSON_STRING);
        *out = n;
        return parse_string(ps, &n->string, &n->len);
    case 't':
        *out = new_node(ps, JSON_TRUE);
        return parse_literal(ps, "true");
    case 'f':
        *out = new_node(ps, JSON_FALSE);
        return parse_literal(ps, "false");
    case 'n':
        *out = new_node(ps, JSON_NULL);
        return parse_literal(ps, "null");
    default:
        n = new_node(ps, JSON_NUMBER);
        *out = n;
        return parse_number(ps, &n->number);
    }
}

/* An upper bound on the nodes of text: the root, plus one per '[' or '{'
 * (its first element) and one per ',' (each later element). Counting these
 * bytes inside strings too only over-estimates. */
static size_t count_nodes(const char *text, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += text[i] == ',' || text[i] == '[' || text[i] == '{';
    return n;
}

struct json *json_parse(const char *text, size_t len, int max_depth, char *err)
{
    /* The node array comes first in the block so json_free(root) frees it
     * all; strings unescape no longer than they are written. Sizing nodes by
     * count_nodes rather than one per input byte keeps a 64 MiB header at
     * a few hundred MB instead of 3.7 GB. */
    size_t cap = count_nodes(text, len);
    if (cap > (SIZE_MAX - len - 1) / sizeof(struct json)) {
        errf(err, "JSON: document too large");
        return NULL;
    }
    char *block = xmalloc(cap * sizeof(struct json) + len + 1);
    struct parser ps = {
        .p = text, .end = text + len, .start = text,
        .nodes = (struct json *)block, .cap_nodes = cap,
        .strings = block + cap * sizeof(struct json),
        .max_depth = max_depth < JSON_DEPTH_CAP ? max_depth : JSON_DEPTH_CAP,
        .err = err,
    };
    struct json *root = NULL;
    if (parse_value(&ps, &root) != 0)
        goto fail;
    skip_ws(&ps);
    if (ps.p != ps.end) {
        fail(&ps, "trailing characters");
        goto fail;
    }
    free(ps.names);
    return root;
fail:
    free(ps.names);
    free(block);
    return NULL;
}

void json_free(struct json *root)
{
    free(root);
}

const struct json *json_get(const struct json *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    for (const struct json *c = obj->child; c; c = c->next)
        if (strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

int json_get_u64(const struct json *v, uint64_t *out)
{
    if (!v || v->type != JSON_NUMBER || v->number < 0 ||
        v->number > 9007199254740992.0 || v->number != floor(v->number))
        return -1;
    *out = (uint64_t)v->number;
    return 0;
}

void json_write_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}
