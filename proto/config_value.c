/*
 * config_value.c: text <-> value for one config key, by type (config.h).
 * Parsing is strict: no trailing garbage, no overflow, no NaN/inf, values
 * within the row's bounds, strings that survive a trip through an INI line.
 * Formatting writes the text the parser reads back to the identical bytes.
 * Knows nothing about files, sections or the table as a whole.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* "%.17g" can need 24 characters ("-2.2250738585072014e-308"). */
#define FLOAT_TEXT_MAX 24

static int parse_bool(const char *s, bool *out, char *err)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return errf(err, "not a boolean (use true/false, yes/no, on/off or 1/0)");
}

/* A number must start right away: strto* would skip spaces, and strtoull
 * would silently negate "-1". */
static int check_number_start(const char *s, bool allow_minus, char *err)
{
    if (!*s)
        return errf(err, "empty value, expected a number");
    const char *p = s;
    if (*p == '+' || (allow_minus && *p == '-'))
        p++;
    if (!isdigit((unsigned char)*p) && *p != '.')
        return errf(err, "not a%s number", allow_minus ? "" : " non-negative");
    return 0;
}

static int parse_i64(const char *s, int64_t *out, char *err)
{
    if (check_number_start(s, true, err) < 0)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s)
        return errf(err, "not an integer");
    if (*end)
        return errf(err, "trailing characters \"%.20s\" after the integer", end);
    if (errno == ERANGE)
        return errf(err, "out of the range of a 64-bit integer");
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out, char *err)
{
    if (check_number_start(s, false, err) < 0)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s)
        return errf(err, "not an integer");
    if (*end)
        return errf(err, "trailing characters \"%.20s\" after the integer", end);
    if (errno == ERANGE)
        return errf(err, "out of the range of a 64-bit unsigned integer");
    *out = v;
    return 0;
}

static int parse_f64(const char *s, double *out, char *err)
{
    if (check_number_start(s, true, NULL) < 0)
        return errf(err, *s ? "not a finite number" : "empty value, expected a number");
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s)
        return errf(err, "not a number");
    if (*end)
        return errf(err, "trailing characters \"%.20s\" after the number", end);
    if (errno == ERANGE || !isfinite(v))
        return errf(err, "out of the range of a double (or denormal)");
    *out = v;
    return 0;
}

static int check_int_bounds(const struct config_key *k, int64_t v, char *err)
{
    if (v < k->int_min || v > k->int_max)
        return errf(err, "%s the %s %" PRId64 " (allowed %" PRId64 "..%" PRId64 ")",
                    v < k->int_min ? "below" : "above",
                    v < k->int_min ? "minimum" : "maximum",
                    v < k->int_min ? k->int_min : k->int_max,
                    k->int_min, k->int_max);
    return 0;
}

static int check_float_bounds(const struct config_key *k, double v, char *err)
{
    if (v < k->float_min || v > k->float_max)
        return errf(err, "%s the %s %.17g (allowed %g..%g)",
                    v < k->float_min ? "below" : "above",
                    v < k->float_min ? "minimum" : "maximum",
                    v < k->float_min ? k->float_min : k->float_max,
                    k->float_min, k->float_max);
    return 0;
}

/* charset is a bracket expression without brackets: "A-Za-z0-9._-". */
static bool charset_allows(const char *set, unsigned char ch)
{
    for (const char *p = set; *p; p++) {
        if (p[1] == '-' && p[2]) {
            if (ch >= (unsigned char)p[0] && ch <= (unsigned char)p[2])
                return true;
            p += 2;
        } else if (ch == (unsigned char)*p) {
            return true;
        }
    }
    return false;
}

/* Rejects what an INI line cannot carry back: control characters, leading or
 * trailing spaces (libinih strips them) and " ;" (starts a comment). */
static int parse_string(const struct config_key *k, const char *s, char *out,
                        char *err)
{
    size_t len = strlen(s);
    if (len > (size_t)k->len_max)
        return errf(err, "%zu characters, at most %d allowed", len, k->len_max);
    if (len < (size_t)k->len_min)
        return errf(err, len ? "%zu characters, at least %d needed"
                             : "empty (%zu characters), at least %d needed",
                    len, k->len_min);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f)
            return errf(err, "control character 0x%02x at position %zu", ch, i + 1);
        if (k->charset && !charset_allows(k->charset, ch))
            return errf(err, "character '%c' at position %zu is not allowed "
                        "(allowed: [%s])", ch, i + 1, k->charset);
        if (ch == ';' && i > 0 && isspace((unsigned char)s[i - 1]))
            return errf(err, "\" ;\" would start an INI comment");
    }
    if (len && (isspace((unsigned char)s[0]) || isspace((unsigned char)s[len - 1])))
        return errf(err, "leading or trailing spaces are not kept by INI files");
    memset(out, 0, CONFIG_STR_LEN);
    memcpy(out, s, len);
    return 0;
}

static int parse_enum(const struct config_key *k, const char *s, int *out,
                      char *err)
{
    char names[ERR_LEN] = "";
    size_t used = 0;
    for (int i = 0; k->choices[i]; i++) {
        if (strcmp(s, k->choices[i]) == 0) {
            *out = i;
            return 0;
        }
        int w = snprintf(names + used, sizeof names - used, "%s%s",
                         i ? ", " : "", k->choices[i]);
        if (w > 0 && used + (size_t)w < sizeof names)
            used += (size_t)w;
    }
    return errf(err, "not one of: %s", names);
}

/* Splits "a, b,c" into trimmed items in buf; returns the item count or -1. */
static int split_list(const struct config_key *k, const char *s,
                      char items[][64], char *err)
{
    if (!*s)
        return 0;
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        if (n >= k->len_max)
            return errf(err, "more than %d items", k->len_max);
        if (len == 0)
            return errf(err, "item %d is empty", n + 1);
        if (len >= 64)
            return errf(err, "item %d is too long", n + 1);
        memcpy(items[n], p, len);
        items[n][len] = '\0';
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return n;
}

static int parse_list(const struct config_key *k, const char *s, void *field,
                      char *err)
{
    char items[CONFIG_LIST_MAX][64];
    char why[ERR_LEN];
    int n = split_list(k, s, items, err);
    if (n < 0)
        return -1;
    if (n < k->len_min)
        return errf(err, "%d items, at least %d needed", n, k->len_min);
    struct config_int_list ints;
    struct config_float_list floats;
    memset(&ints, 0, sizeof ints);
    memset(&floats, 0, sizeof floats);
    ints.n = floats.n = n;
    for (int i = 0; i < n; i++) {
        int rc;
        if (k->type == CONFIG_INT_LIST)
            rc = parse_i64(items[i], &ints.v[i], why) < 0
                     ? -1 : check_int_bounds(k, ints.v[i], why);
        else
            rc = parse_f64(items[i], &floats.v[i], why) < 0
                     ? -1 : check_float_bounds(k, floats.v[i], why);
        if (rc < 0)
            return errf(err, "item %d \"%s\": %s", i + 1, items[i], why);
    }
    if (k->type == CONFIG_INT_LIST)
        memcpy(field, &ints, sizeof ints);
    else
        memcpy(field, &floats, sizeof floats);
    return 0;
}

int config_parse_value(const struct config_key *k, const char *text,
                       void *field, char *err)
{
    switch (k->type) {
    case CONFIG_BOOL: {
        bool v = false;
        if (parse_bool(text, &v, err) < 0)
            return -1;
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CONFIG_INT: {
        int64_t v = 0;
        if (parse_i64(text, &v, err) < 0 || check_int_bounds(k, v, err) < 0)
            return -1;
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CONFIG_UINT64: {
        uint64_t v = 0;
        if (parse_u64(text, &v, err) < 0)
            return -1;
        if (v < k->uint_min || v > k->uint_max)
            return errf(err, "%s the %s %" PRIu64 " (allowed %" PRIu64 "..%" PRIu64 ")",
                        v < k->uint_min ? "below" : "above",
                        v < k->uint_min ? "minimum" : "maximum",
                        v < k->uint_min ? k->uint_min : k->uint_max,
                        k->uint_min, k->uint_max);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CONFIG_FLOAT: {
        double v = 0.0;
        if (parse_f64(text, &v, err) < 0 || check_float_bounds(k, v, err) < 0)
            return -1;
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CONFIG_STRING:
        return parse_string(k, text, field, err);
    case CONFIG_ENUM: {
        int v = 0;
        if (parse_enum(k, text, &v, err) < 0)
            return -1;
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CONFIG_INT_LIST:
    case CONFIG_FLOAT_LIST:
        return parse_list(k, text, field, err);
    }
    return errf(err, "key has an unknown type %d", (int)k->type);
}

/* The shortest "%.*g" that strtod reads back to the same bits (so -0.0
 * stays -0.0): 0.3 is written "0.3", not "0.29999999999999999". */
static void format_double(double v, char *out, size_t n)
{
    char buf[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (memcmp(&back, &v, sizeof v) == 0)
            break;
    }
    snprintf(out, n, "%s", buf);
}

static void format_list(const struct config_key *k, const void *field,
                        char *out, size_t n)
{
    struct config_int_list ints;
    struct config_float_list floats;
    int count;
    if (k->type == CONFIG_INT_LIST) {
        memcpy(&ints, field, sizeof ints);
        count = ints.n;
    } else {
        memcpy(&floats, field, sizeof floats);
        count = floats.n;
    }
    CHECK(count >= 0 && count <= CONFIG_LIST_MAX);
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < count && used < n; i++) {
        char item[64];
        if (k->type == CONFIG_INT_LIST)
            snprintf(item, sizeof item, "%" PRId64, ints.v[i]);
        else
            format_double(floats.v[i], item, sizeof item);
        int w = snprintf(out + used, n - used, "%s%s", i ? "," : "", item);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

void config_format_value(const struct config_key *k, const void *field,
                         char *out, size_t n)
{
    CHECK(n > 0);
    switch (k->type) {
    case CONFIG_BOOL: {
        bool v = false;
        memcpy(&v, field, sizeof v);
        snprintf(out, n, "%s", v ? "true" : "false");
        return;
    }
    case CONFIG_INT: {
        int64_t v = 0;
        memcpy(&v, field, sizeof v);
        snprintf(out, n, "%" PRId64, v);
        return;
    }
    case CONFIG_UINT64: {
        uint64_t v = 0;
        memcpy(&v, field, sizeof v);
        snprintf(out, n, "%" PRIu64, v);
        return;
    }
    case CONFIG_FLOAT: {
        double v = 0.0;
        memcpy(&v, field, sizeof v);
        format_double(v, out, n);
        return;
    }
    case CONFIG_STRING:
        CHECK(memchr(field, '\0', CONFIG_STR_LEN) != NULL);
        snprintf(out, n, "%s", (const char *)field);
        return;
    case CONFIG_ENUM: {
        int v, count = 0;
        memcpy(&v, field, sizeof v);
        while (k->choices[count])
            count++;
        CHECK(v >= 0 && v < count);
        snprintf(out, n, "%s", k->choices[v]);
        return;
    }
    case CONFIG_INT_LIST:
    case CONFIG_FLOAT_LIST:
        format_list(k, field, out, n);
        return;
    }
    CHECK(!"unknown config type");
}

static size_t int_text_len(int64_t v)
{
    char buf[32];
    return (size_t)snprintf(buf, sizeof buf, "%" PRId64, v);
}

size_t config_value_max_len(const struct config_key *k)
{
    size_t item;
    switch (k->type) {
    case CONFIG_BOOL:
        return 5;
    case CONFIG_INT:
        item = int_text_len(k->int_min);
        return item > int_text_len(k->int_max) ? item : int_text_len(k->int_max);
    case CONFIG_UINT64: {
        char buf[32];
        return (size_t)snprintf(buf, sizeof buf, "%" PRIu64, k->uint_max);
    }
    case CONFIG_FLOAT:
        return FLOAT_TEXT_MAX;
    case CONFIG_STRING:
        return (size_t)k->len_max;
    case CONFIG_ENUM: {
        size_t longest = 0;
        for (int i = 0; k->choices[i]; i++)
            if (strlen(k->choices[i]) > longest)
                longest = strlen(k->choices[i]);
        return longest;
    }
    case CONFIG_INT_LIST:
        item = int_text_len(k->int_min);
        if (int_text_len(k->int_max) > item)
            item = int_text_len(k->int_max);
        return k->len_max ? (size_t)k->len_max * (item + 1) - 1 : 0;
    case CONFIG_FLOAT_LIST:
        return k->len_max ? (size_t)k->len_max * (FLOAT_TEXT_MAX + 1) - 1 : 0;
    }
    return 0;
}
