/*
 * config.c: the sources of a config (config.h): defaults from the key table,
 * INI files and text through libinih, `--set` assignments, the argv helper,
 * validation, the INI dump and the help text. Every error names its source
 * (file and line, or the --set flag), the key and the value, with a hint.
 * Values are parsed in config_value.c; keys and rules live in config_keys.c.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "util.h"

/* Longest text a value may have on the way in (longer is an error) and out
 * (every key's longest value fits, see config_value_max_len). */
#define VALUE_TEXT_MAX 1024
/* Values echoed in error messages are cut to this many characters. */
#define ECHO_MAX 48

static void *key_field(struct config *c, const struct config_key *k)
{
    return (char *)c + k->offset;
}

static const void *key_field_const(const struct config *c,
                                   const struct config_key *k)
{
    return (const char *)c + k->offset;
}

const struct config_key *config_find_key(const char *section, const char *key)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    for (size_t i = 0; i < count; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
            return &keys[i];
    return NULL;
}

static bool section_exists(const char *section)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    for (size_t i = 0; i < count; i++)
        if (strcmp(keys[i].section, section) == 0)
            return true;
    return false;
}

void config_defaults(struct config *c)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < count; i++) {
        char why[ERR_LEN];
        if (config_parse_value(&keys[i], keys[i].def, key_field(c, &keys[i]),
                               why) < 0) {
            fprintf(stderr, "%s: config table: default %s.%s = \"%s\": %s\n",
                    util_program(), keys[i].section, keys[i].key, keys[i].def, why);
            CHECK(!"every default in config_keys.c parses");
        }
    }
}

/* ---- hints for unknown names ---------------------------------------- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Close enough to be a typo: a third of the name's letters, at least 2. */
static bool is_close(const char *typed, const char *name, size_t distance)
{
    size_t allowed = strlen(typed) / 3;
    return distance <= (allowed > 2 ? allowed : 2) && distance < strlen(name);
}

/* Appends s to buf (size n) if it fits whole; returns false when it did not. */
static bool append(char *buf, size_t n, const char *s)
{
    size_t used = strlen(buf);
    if (used + strlen(s) + 1 > n)
        return false;
    memcpy(buf + used, s, strlen(s) + 1);
    return true;
}

static void describe_unknown_section(const char *section, char *out, size_t n)
{
    size_t count, best_d = SIZE_MAX;
    const struct config_key *keys = config_keys(&count);
    const char *best = NULL;
    char names[ERR_LEN] = "";
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && strcmp(keys[i].section, keys[i - 1].section) == 0)
            continue;
        size_t d = edit_distance(section, keys[i].section);
        if (d < best_d) {
            best_d = d;
            best = keys[i].section;
        }
        if (i > 0)
            append(names, sizeof names, ", ");
        append(names, sizeof names, keys[i].section);
    }
    if (best && is_close(section, best, best_d))
        snprintf(out, n, "unknown section [%s]; did you mean [%s]?", section, best);
    else
        snprintf(out, n, "unknown section [%s] (sections: %s)", section, names);
}

static void describe_unknown_key(const char *section, const char *key,
                                 char *out, size_t n)
{
    size_t count, best_d = SIZE_MAX;
    const struct config_key *keys = config_keys(&count);
    const char *best = NULL, *elsewhere = NULL;
    char names[ERR_LEN] = "";
    bool all_listed = true;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(keys[i].section, section) != 0) {
            if (strcmp(keys[i].key, key) == 0)
                elsewhere = keys[i].section;
            continue;
        }
        size_t d = edit_distance(key, keys[i].key);
        if (d < best_d) {
            best_d = d;
            best = keys[i].key;
        }
        char item[80];
        snprintf(item, sizeof item, "%s%s", names[0] ? ", " : "", keys[i].key);
        if (all_listed && !append(names, 120, item))
            all_listed = false;
    }
    if (elsewhere)
        snprintf(out, n, "unknown key %s in [%s]; it belongs in [%s]", key,
                 section, elsewhere);
    else if (best && is_close(key, best, best_d))
        snprintf(out, n, "unknown key %s in [%s]; did you mean %s?", key,
                 section, best);
    else
        snprintf(out, n, "unknown key %s in [%s]; its keys: %s%s", key, section,
                 names, all_listed ? "" : " ... (--help-config lists them all)");
}

static void describe_unknown(const char *section, const char *key, char *out,
                             size_t n)
{
    if (!section_exists(section))
        describe_unknown_section(section, out, n);
    else
        describe_unknown_key(section, key, out, n);
}

/* ---- INI sources ---------------------------------------------------- */

/* Parses one value into c; the message names the key and the value. */
static int assign_value(struct config *c, const struct config_key *k,
                        const char *value, char *err)
{
    char why[ERR_LEN];
    if (strlen(value) > VALUE_TEXT_MAX)
        return errf(err, "%s.%s: value of %zu characters is too long",
                    k->section, k->key, strlen(value));
    if (config_parse_value(k, value, key_field(c, k), why) < 0)
        return errf(err, "%s.%s = %.*s%s: %s", k->section, k->key, ECHO_MAX,
                    value, strlen(value) > ECHO_MAX ? "..." : "", why);
    return 0;
}

/* State of one INI source: libinih reads lines through load_read_line, so
 * we know the line of every call of load_handle and every error. */
struct load_state {
    struct config work;         /* committed to the caller only on success */
    const char *p;              /* next unread byte of the text */
    int lineno;
    bool *seen;                 /* per table row: given in this source */
    int err_line;               /* first error we found; 0 = none */
    char err[ERR_LEN];
};

static void load_fail(struct load_state *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void load_fail(struct load_state *s, const char *fmt, ...)
{
    if (s->err_line)
        return;
    s->err_line = s->lineno;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
}

/*
 * An ini_reader that hands libinih one line at a time, without its leading
 * blanks: libinih would take an indented line as the continuation of the
 * previous value, and we want indentation to be harmless. Lines longer than
 * libinih's buffer (it would split them silently) are errors, and section
 * headers are checked here so that an empty unknown section is caught too.
 */
static char *load_read_line(char *str, int num, void *stream)
{
    struct load_state *s = stream;
    if (!*s->p)
        return NULL;
    s->lineno++;
    const char *line = s->p;
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    s->p = line + len + (nl != NULL);
    while (len && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    str[0] = '\0';
    if (len + 2 > (size_t)num) {
        load_fail(s, "line of %zu characters is longer than the %d that "
                  "libinih reads", len, num - 2);
        return str;
    }
    memcpy(str, line, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    const char *close = memchr(line, ']', len);
    if (line[0] == '[' && close) {
        char section[256];
        snprintf(section, sizeof section, "%.*s", (int)(close - line - 1), line + 1);
        if (!section_exists(section)) {
            char why[ERR_LEN];
            describe_unknown_section(section, why, sizeof why);
            load_fail(s, "%s", why);
        }
    }
    return str;
}

static int load_handle(void *user, const char *section, const char *name,
                       const char *value)
{
    struct load_state *s = user;
    if (s->err_line)
        return 1;   /* only the first error is reported */
    if (!*section) {
        load_fail(s, "%s = %.*s: key outside any section; put it under "
                  "[section]", name, ECHO_MAX, value);
        return 0;
    }
    const struct config_key *k = config_find_key(section, name);
    if (!k) {
        char why[ERR_LEN];
        describe_unknown(section, name, why, sizeof why);
        load_fail(s, "%s", why);
        return 0;
    }
    size_t count;
    size_t row = (size_t)(k - config_keys(&count));
    if (s->seen[row]) {
        load_fail(s, "%s.%s is given twice in this file", section, name);
        return 0;
    }
    s->seen[row] = true;
    char why[ERR_LEN];
    if (assign_value(&s->work, k, value, why) < 0) {
        load_fail(s, "%s", why);
        return 0;
    }
    return 1;
}

/* Copies line number `lineno` (1-based) of text into out, cut to fit. */
static void quote_line(const char *text, int lineno, char *out, size_t n)
{
    const char *line = text;
    for (int i = 1; i < lineno && line; i++) {
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    if (!line)
        line = "";
    while (*line == ' ' || *line == '\t')
        line++;
    size_t len = strcspn(line, "\r\n");
    snprintf(out, n, "%.*s%s", (int)(len > ECHO_MAX ? ECHO_MAX : len), line,
             len > ECHO_MAX ? "..." : "");
}

int config_load_string(struct config *c, const char *text, const char *origin,
                       char *err)
{
    size_t count;
    config_keys(&count);
    if (!origin)
        origin = "<string>";
    struct load_state *s = xcalloc(1, sizeof *s);
    s->work = *c;
    s->p = text;
    s->seen = xcalloc(count, sizeof *s->seen);
    int rc = ini_parse_stream(load_read_line, s, load_handle, s);
    int ret = 0;
    if (rc < 0) {
        ret = errf(err, "%s: libinih failed (%d) reading it", origin, rc);
    } else if (rc > 0 && (!s->err_line || rc < s->err_line)) {
        char quoted[ECHO_MAX + 8];
        quote_line(text, rc, quoted, sizeof quoted);
        ret = errf(err, "%s:%d: cannot read \"%s\": expected [section], "
                   "key = value, or a comment starting with ; or #", origin,
                   rc, quoted);
    } else if (s->err_line) {
        ret = errf(err, "%s:%d: %s", origin, s->err_line, s->err);
    } else {
        *c = s->work;
    }
    free(s->seen);
    free(s);
    return ret;
}

int config_load_file(struct config *c, const char *path, char *err)
{
    size_t len;
    char *text = util_read_file(path, &len, err);
    if (!text)
        return -1;
    int ret;
    if (strlen(text) != len)
        ret = errf(err, "%s: contains a NUL byte; is it a text file?", path);
    else
        ret = config_load_string(c, text, path, err);
    free(text);
    return ret;
}

/* Copies s without leading and trailing blanks into out (size n); false if
 * it does not fit. */
static bool copy_trimmed(const char *s, size_t len, char *out, size_t n)
{
    while (len && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len + 1 > n)
        return false;
    memcpy(out, s, len);
    out[len] = '\0';
    return true;
}

int config_set(struct config *c, const char *assignment, char *err)
{
    char name[128], value[VALUE_TEXT_MAX + 1], why[ERR_LEN];
    const char *eq = strchr(assignment, '=');
    const char *dot = eq ? memchr(assignment, '.', (size_t)(eq - assignment)) : NULL;
    if (!eq || !dot)
        return errf(err, "--set %.80s: expected section.key=value, e.g. "
                    "views.flip_p=0.3", assignment);
    if (!copy_trimmed(assignment, (size_t)(eq - assignment), name, sizeof name))
        return errf(err, "--set %.80s...: key name too long", assignment);
    if (!copy_trimmed(eq + 1, strlen(eq + 1), value, sizeof value))
        return errf(err, "--set %.80s...: value too long", assignment);
    char *key = strchr(name, '.');
    *key++ = '\0';
    const struct config_key *k = config_find_key(name, key);
    if (!k) {
        describe_unknown(name, key, why, sizeof why);
        return errf(err, "--set %.80s: %s", assignment, why);
    }
    struct config work = *c;
    if (assign_value(&work, k, value, why) < 0)
        return errf(err, "--set: %s", why);
    *c = work;
    return 0;
}

/* ---- whole configs ---------------------------------------------------- */

int config_validate(const struct config *c, char *err)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    for (size_t i = 0; i < count; i++) {
        char text[VALUE_TEXT_MAX], why[ERR_LEN];
        union {
            char s[CONFIG_STR_LEN];
            struct config_int_list ints;
            struct config_float_list floats;
        } scratch;
        config_format_value(&keys[i], key_field_const(c, &keys[i]), text, sizeof text);
        if (config_parse_value(&keys[i], text, &scratch, why) < 0)
            return errf(err, "%s.%s = %.*s: %s", keys[i].section, keys[i].key,
                        ECHO_MAX, text, why);
    }
    return config_check_rules(c, err);
}

char *config_to_string(const struct config *c)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    size_t cap = 256 + count * (VALUE_TEXT_MAX + 64), used = 0;
    char *out = xmalloc(cap);
    used += (size_t)snprintf(out, cap, "; lejepa config: every key "
                             "(--help-config describes them)\n");
    for (size_t i = 0; i < count; i++) {
        char text[VALUE_TEXT_MAX];
        if (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0)
            used += (size_t)snprintf(out + used, cap - used, "\n[%s]\n",
                                     keys[i].section);
        config_format_value(&keys[i], key_field_const(c, &keys[i]), text, sizeof text);
        used += (size_t)snprintf(out + used, cap - used, "%s =%s%s\n",
                                 keys[i].key, text[0] ? " " : "", text);
        CHECK(used < cap);
    }
    return out;
}

static void describe_type(const struct config_key *k, char *out, size_t n)
{
    switch (k->type) {
    case CONFIG_BOOL:
        snprintf(out, n, "bool");
        return;
    case CONFIG_INT:
        snprintf(out, n, "int %lld..%lld", (long long)k->int_min,
                 (long long)k->int_max);
        return;
    case CONFIG_UINT64:
        snprintf(out, n, "uint64 %llu..%llu", (unsigned long long)k->uint_min,
                 (unsigned long long)k->uint_max);
        return;
    case CONFIG_FLOAT:
        snprintf(out, n, "float %g..%g", k->float_min, k->float_max);
        return;
    case CONFIG_STRING:
        snprintf(out, n, "string of %d..%d characters%s%s%s", k->len_min,
                 k->len_max, k->charset ? " in [" : "",
                 k->charset ? k->charset : "", k->charset ? "]" : "");
        return;
    case CONFIG_ENUM:
        out[0] = '\0';
        append(out, n, "one of ");
        for (int i = 0; k->choices[i]; i++) {
            if (i)
                append(out, n, " | ");
            append(out, n, k->choices[i]);
        }
        return;
    case CONFIG_INT_LIST:
        snprintf(out, n, "list of %d..%d ints in %lld..%lld", k->len_min,
                 k->len_max, (long long)k->int_min, (long long)k->int_max);
        return;
    case CONFIG_FLOAT_LIST:
        snprintf(out, n, "list of %d..%d floats in %g..%g", k->len_min,
                 k->len_max, k->float_min, k->float_max);
        return;
    }
}

void config_print_help(FILE *out)
{
    size_t count;
    const struct config_key *keys = config_keys(&count);
    fprintf(out, "Config keys. Give them in an INI file (--config FILE, "
                 "[section] then key = value)\nor one by one with --set "
                 "section.key=value; --set wins over files.\n");
    for (size_t i = 0; i < count; i++) {
        const struct config_key *k = &keys[i];
        char type[ERR_LEN];
        if (i == 0 || strcmp(k->section, keys[i - 1].section) != 0)
            fprintf(out, "\n[%s]\n", k->section);
        describe_type(k, type, sizeof type);
        fprintf(out, "  %-20s %s, default %s%s%s\n      %s\n", k->key, type,
                k->def[0] ? "" : "\"", k->def, k->def[0] ? "" : "\"", k->help);
    }
}

/* ---- command line ----------------------------------------------------- */

/* Value of "--flag VALUE" or "--flag=VALUE" at argv[*i], advancing *i past
 * a separate value; NULL if argv[*i] is not this flag. *missing is set when
 * the flag is there without a value. */
static const char *flag_value(const char *flag, int argc, char **argv, int *i,
                              bool *missing)
{
    size_t len = strlen(flag);
    const char *a = argv[*i];
    if (strncmp(a, flag, len) != 0)
        return NULL;
    if (a[len] == '=') {
        *missing = a[len + 1] == '\0';
        return a + len + 1;
    }
    if (a[len] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return a;
    }
    *i += 1;
    return argv[*i];
}

int config_from_args(struct config *c, int *argc, char **argv, char *err)
{
    int n = *argc, nfiles = 0, nsets = 0, ret = 0;
    const char **files = xcalloc((size_t)n + 1, sizeof *files);
    const char **sets = xcalloc((size_t)n + 1, sizeof *sets);
    bool *consumed = xcalloc((size_t)n + 1, sizeof *consumed);
    bool help = false;
    for (int i = 1; i < n && strcmp(argv[i], "--") != 0; i++) {
        bool missing = false;
        int first = i;
        const char *v;
        if (strcmp(argv[i], "--help-config") == 0) {
            help = true;
        } else if ((v = flag_value("--config", n, argv, &i, &missing))) {
            if (missing) {
                ret = errf(err, "--config needs a file name: --config FILE");
                goto cleanup;
            }
            files[nfiles++] = v;
        } else if ((v = flag_value("--set", n, argv, &i, &missing))) {
            if (missing) {
                ret = errf(err, "--set needs an assignment: --set "
                           "section.key=value");
                goto cleanup;
            }
            sets[nsets++] = v;
        } else {
            continue;
        }
        for (int j = first; j <= i; j++)
            consumed[j] = true;
    }
    if (help) {
        config_print_help(stdout);
        exit(0);
    }
    struct config work = *c;
    for (int i = 0; i < nfiles && ret == 0; i++)
        ret = config_load_file(&work, files[i], err);
    for (int i = 0; i < nsets && ret == 0; i++)
        ret = config_set(&work, sets[i], err);
    if (ret == 0)
        ret = config_validate(&work, err);
    if (ret < 0)
        goto cleanup;
    *c = work;
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (!consumed[i])
            argv[kept++] = argv[i];
    *argc = kept;
    argv[kept] = NULL;
cleanup:
    free(files);
    free(sets);
    free(consumed);
    return ret;
}
