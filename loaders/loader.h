/*
 * loader.h: what the pieces of lejepa-loader share: the command-line
 * options, the log prefix and the entry point of the connection loop
 * (loader_loop.c). The program is a long-lived worker: it connects to the
 * trainer's work socket, serves TICKETs with BATCHes through forked decode
 * workers (loader_work.c) and reconnects whenever the trainer goes away,
 * until SIGINT/SIGTERM (DESIGN.md §3, proto/PROTOCOL.md).
 */
#ifndef LEJEPA_LOADER_H
#define LEJEPA_LOADER_H

#include "util.h"

#include <stdint.h>

#include "dataset.h"
#include "keys.h"

/* Longest --name kept (the routing id adds pid and a counter within 255). */
#define LOADER_NAME_MAX 200
/* Seconds one sample may take before its worker is killed ("timed out"). */
#define LOADER_SAMPLE_TIMEOUT_S 60.0
/* Address space of one decode worker, MB (--worker-memory-mb; 0: no
 * limit). Generous: a worker holds one decoded image (views.max_pixels
 * bounds it) plus libvips, glib and the C library's reservations. */
#define LOADER_WORKER_MEMORY_MB 2048
#define LOADER_WORKER_MEMORY_MB_MAX (1L << 24)

struct loader_opts {
    const char *endpoint;       /* trainer's work socket, tcp://HOST:5555 */
    const char *data;           /* dataset root */
    char name[LOADER_NAME_MAX]; /* for logs and HELLO */
    int workers;                /* decode processes */
    uint32_t credit;            /* tickets held at once (HELLO.credit) */
    double sample_timeout_s;
    struct keys_client keys;    /* --key, --server-key */
    long worker_memory_mb;      /* RLIMIT_AS per worker; 0: none */
};

/* Log line on stderr: "<time> [<name>] message". */
/* The loader logs through util_log ("HH:MM:SS [name] message"). */
#define loader_log_set_name util_log_set_name
#define loader_log util_log

/* Runs until stopped: returns the process exit status (0 after a clean
 * shutdown on a signal, 1 on REFUSE or a second signal). stop_fd is the read
 * end of the self-pipe the signal handler writes one byte per signal to. */
int loader_run(const struct loader_opts *o, const struct dataset *d, int stop_fd);

#endif
