/*
 * lejepa_runnet.h: the network side of `lejepa run` (lejepa_run.c): the
 * CurveZMQ keys of the processes it starts and the trainer's allow-list
 * (--keys DIR), and free ports when the configured ones are taken. Files
 * and probes only: the processes themselves are lejepa_proc.h's.
 */
#ifndef LEJEPA_RUNNET_H
#define LEJEPA_RUNNET_H

#include <stdbool.h>
#include <stddef.h>

#include "msg.h"

#define RUN_KEYS_TRAINER "trainer" /* DIR/trainer.key, DIR/trainer.pub */
#define RUN_KEYS_ALLOW "allow.txt" /* DIR/allow.txt */
/* Ports tried above a taken one before giving up. */
#define RUN_PORT_TRIES 100

struct run_keys_client {
    const char *name; /* key and allow-list name */
    enum msg_role role;
};

/* In dir (created if needed): the trainer's pair and one pair per client,
 * each made with keys_generate unless NAME.key and NAME.pub are there (then
 * read and checked to match), and the allow-list DIR/allow.txt holding every
 * client. An existing allow-list keeps its lines (clients on other
 * machines added by hand); the missing clients are appended. A client
 * listed under another key, role or name is an error naming the line.
 * Says on the terminal what it made. 0 or -1 with err. */
int run_keys_prepare(const char *dir, const struct run_keys_client *clients,
                     int n, char *err);

/* DIR/NAME.SUFFIX into out (cap bytes). */
void run_keys_path(char *out, size_t cap, const char *dir, const char *name,
                   const char *suffix);

/* endpoint (cap bytes) is tcp://HOST:PORT: when PORT cannot be bound on
 * HOST (in use), it becomes the first port above it that can, other than
 * avoid (the other endpoint's port, 0 for none). Returns 1 when changed,
 * 0 when left alone (free, not tcp, or a host that is not local: the
 * trainer's bind will say), -1 with err when no port was free. */
int run_port_pick(char *endpoint, size_t cap, int avoid, char *err);

/* The port of tcp://HOST:PORT, or 0. */
int run_port_of(const char *endpoint);

#endif
