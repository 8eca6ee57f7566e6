/*
 * companion.c: runs a benchmark's PyTorch companion and reads its JSON line
 * (companion.h). The script's stderr passes through to ours.
 */
#include "companion.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "util.h"

#define COMPANION_LINE_MAX 4096
#define COMPANION_JSON_DEPTH 4

int companion_run(const char *script, const char *args,
                  const struct companion_field *fields, int n, char *err)
{
    char cmd[8192];
    if ((size_t)snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' %s", script, args) >=
        sizeof cmd)
        return errf(err, "%s: command line too long", script);
    FILE *p = popen(cmd, "r");
    if (!p)
        return errf(err, "%s: cannot start /usr/bin/python3", script);
    char line[COMPANION_LINE_MAX] = "";
    char *got = fgets(line, sizeof line, p);
    int rc = pclose(p);
    if (rc != 0)
        return errf(err, "%s exited with status %d", script, rc);
    if (!got)
        return errf(err, "%s printed nothing", script);
    char jerr[ERR_LEN];
    struct json *j = json_parse(line, strlen(line), COMPANION_JSON_DEPTH, jerr);
    if (!j)
        return errf(err, "%s: its first line is not JSON: %s", script, jerr);
    for (int i = 0; i < n; i++) {
        const struct json *v = json_get(j, fields[i].key);
        bool number = fields[i].number != NULL;
        if (!v || v->type != (number ? JSON_NUMBER : JSON_STRING)) {
            errf(err, "%s: no %s '%s' in its output", script,
                 number ? "number" : "string", fields[i].key);
            json_free(j);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        const struct json *v = json_get(j, fields[i].key);
        if (fields[i].number)
            *fields[i].number = v->number;
        else
            snprintf(fields[i].text, fields[i].text_len, "%s", v->string);
    }
    json_free(j);
    return 0;
}
