/*
 * lejepa_quiet.c: the quiet terminal's rule (lejepa_quiet.h), in one place.
 * It must stay a plain test of a line's text: no state, no knowledge of
 * which child wrote the line, no timing.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "lejepa_quiet.h"

/* Lines a person watching needs although nothing is wrong: the trainer's
 * progress, epochs, checkpoints and end, and results (the evaluators' kNN,
 * linear and few-shot top-1 and segmentation IoU, the trainer's online
 * probe on val). Result names end in a space: the monitor's "name=value"
 * echoes of the same numbers stay in its log. */
static const char *const progress[] = {
    "lejepa-train: step ",
    "lejepa-train: epoch ",
    "lejepa-train: checkpoint ",
    "lejepa-train: done at step ",
    "lejepa-train: stopped at step ",
    "top1 ",
    ": iou ",
    "probe_acc_val ",
};

/* Words of trouble, matched case-insensitively anywhere in a word
 * ("refused", "Failures", "ERROR:"), unless that word is a zero count:
 * "0 failures", "failures 0", "refused=0" are the chatter of healthy
 * loaders and monitors, "3 failures" is news. */
static const char *const trouble[] = {"error", "warning", "refus", "fail",
                                      "cannot"};

/* The first case-insensitive match of word in s[from, len), or -1. */
static long find_ci(const char *s, size_t len, size_t from, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = from; i + n <= len; i++)
        if (strncasecmp(s + i, word, n) == 0)
            return (long)i;
    return -1;
}

/* Whether s[i, len) starts with a number that is exactly 0 ("0", "0,",
 * "0)"; not "0.5", "05" or "10"). */
static bool is_zero_at(const char *s, size_t len, size_t i)
{
    return i < len && s[i] == '0' &&
        (i + 1 == len ||
         (!isdigit((unsigned char)s[i + 1]) && s[i + 1] != '.'));
}

/* Whether the word s[start, end) is counted as zero by a "0 " before it
 * or a " 0", "=0" or ": 0" after it. */
static bool zero_count(const char *s, size_t len, size_t start, size_t end)
{
    if (start >= 2 && s[start - 1] == ' ' && s[start - 2] == '0') {
        char c = start > 2 ? s[start - 3] : ' ';
        if (!isalnum((unsigned char)c) && c != '.')
            return true;
    }
    size_t i = end;
    if (i < len && (s[i] == '=' || s[i] == ':'))
        i++;
    while (i < len && s[i] == ' ')
        i++;
    return i > end && is_zero_at(s, len, i);
}

bool run_line_shown(const char *line, size_t len)
{
    for (size_t k = 0; k < sizeof progress / sizeof progress[0]; k++)
        if (find_ci(line, len, 0, progress[k]) >= 0)
            return true;
    for (size_t k = 0; k < sizeof trouble / sizeof trouble[0]; k++) {
        for (long at = find_ci(line, len, 0, trouble[k]); at >= 0;
             at = find_ci(line, len, (size_t)at + 1, trouble[k])) {
            size_t start = (size_t)at, end = start + strlen(trouble[k]);
            while (start > 0 && isalpha((unsigned char)line[start - 1]))
                start--;
            while (end < len && isalpha((unsigned char)line[end]))
                end++;
            if (!zero_count(line, len, start, end))
                return true;
        }
    }
    return false;
}
