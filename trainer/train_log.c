/*
 * train_log.c: the trainer's log (train_log.h). It never fails the run: a
 * log file that cannot be written leaves stderr.
 */
#include "train_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "util.h"

static FILE *log_file;
static char log_tag[64] = "lejepa-train";
/* Lines logged before the run directory exists (the trainer checks its
 * data and binds its ports first, so a bad --data or a busy port leaves no
 * run directory): kept here and written first when the file opens. */
#define TRAIN_LOG_EARLY_MAX (256 * 1024)
static char *early;
static size_t early_len;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

int train_log_open(const char *path, char *err)
{
    FILE *f = fopen(path, "a");
    if (!f)
        return errf(err, "%s: %s", path, strerror(errno));
    pthread_mutex_lock(&log_mu);
    log_file = f;
    if (early_len) {
        fwrite(early, 1, early_len, f);
        fflush(f);
    }
    free(early);
    early = NULL;
    early_len = 0;
    pthread_mutex_unlock(&log_mu);
    return 0;
}

void train_log_set_tag(const char *tag)
{
    pthread_mutex_lock(&log_mu);
    snprintf(log_tag, sizeof log_tag, "%s", tag);
    pthread_mutex_unlock(&log_mu);
}

void train_log_close(void)
{
    pthread_mutex_lock(&log_mu);
    if (log_file)
        fclose(log_file);
    log_file = NULL;
    pthread_mutex_unlock(&log_mu);
}

void train_log_raw(const char *text)
{
    pthread_mutex_lock(&log_mu);
    fputs(text, stderr);
    size_t n = strlen(text);
    if (log_file) {
        fputs(text, log_file);
        fflush(log_file);
    } else if (early_len + n <= TRAIN_LOG_EARLY_MAX) {
        early = xrealloc(early, early_len + n + 1);
        memcpy(early + early_len, text, n + 1);
        early_len += n;
    }
    pthread_mutex_unlock(&log_mu);
}

void train_log(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
    char line[2200];
    snprintf(line, sizeof line, "%s %s: %s\n", stamp, log_tag, msg);
    train_log_raw(line);
}

bool train_log_thin(uint64_t count)
{
    return count <= TRAIN_LOG_FIRST || count % TRAIN_LOG_EVERY == 0;
}
