/*
 * test_attack_util.h: the attacker's side of tests/test_attack.c: raw
 * DEALER sockets of the test's own that speak (or abuse) the work protocol,
 * the trainer's state read from outside (alive, VmRSS, the counters of its
 * latest train line) and the check that it still serves: it steps and a new
 * client gets its WELCOME. Process and run-directory helpers come from
 * test_train_util.h.
 */
#ifndef LEJEPA_TEST_ATTACK_UTIL_H
#define LEJEPA_TEST_ATTACK_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "msg.h"
#include "test_train_util.h"

/* Trainer memory an attack may add (VmRSS). */
#define ATTACK_RSS_BOUND_KB (64 * 1024)

/* One ZeroMQ context and decoding state for all of a test's sockets. */
struct attacker {
    void *ctx;
    struct msg_limits lim;
    struct msg_arena arena;
};

void attacker_init(struct attacker *a);
void attacker_free(struct attacker *a);

/* A DEALER connected to endpoint with routing id `id`, linger 0, receive
 * high-water mark rcvhwm (0: libzmq's default) and a 200 ms send timeout,
 * so a trainer that stops reading cannot hang the test. */
void *attack_dealer(struct attacker *a, const char *endpoint, const char *id,
                    int rcvhwm);
/* HELLO in a role: a loader's carries fake_loader's dataset and credit.
 * Returns 0 when sent. */
int attack_hello(void *s, enum msg_role role, const char *name, uint32_t credit);
/* Sends m (flags: 0 or ZMQ_DONTWAIT); 0 when sent. */
int attack_send(void *s, const struct msg *m, int flags);
/* Reads s until a message of kind `want` arrives (1) or timeout_ms passes
 * without one (0); other kinds are read and dropped. */
int attack_expect(struct attacker *a, void *s, enum msg_kind want, int timeout_ms);
/* Reads and drops what is waiting on s. */
void attack_drain(void *s);
/* A RESULT of `source` with n values named PREFIX<k> padded with 'x' to
 * key_len bytes (<= MSG_NAME_MAX), each the value k. */
int attack_result(void *s, enum msg_source source, double time, uint64_t step,
                  const char *prefix, int n, int key_len, int flags);

/* Whether pid runs (exists and is no zombie). */
bool proc_alive(pid_t pid);
/* VmRSS of pid in kB (-1 when unreadable). */
long proc_rss_kb(pid_t pid);

/* The latest train line of run `name`: *step (0 when none) and the value
 * of key in it (NAN when there is no line or no such number). */
double train_last(const struct env *e, const char *name, const char *key,
                  uint64_t *step);
/* Waits until a train line of step >= step is logged; 1 if it was. */
int wait_step(const struct env *e, const char *name, uint64_t step, double timeout);
/* Waits until the run's metrics.jsonl holds >= bytes; 1 if it does. */
int wait_metrics_bytes(const struct env *e, const char *name, long bytes,
                       double timeout);
/* Bytes of the lines of the run's metrics.jsonl containing needle. */
long metrics_bytes_with(const struct env *e, const char *name, const char *needle);

/* The trainer is alive, logs at least `steps` more steps, and a new
 * monitor gets its WELCOME. Asserts each; returns 1 when all held. */
int check_serving(struct attacker *a, const struct env *e, const char *name,
                  pid_t tr, uint64_t steps);

/* The trainer for an attack: the tiny model, --steps 100000, eval off,
 * then extra (NULL-ended); waits until its sockets are bound. */
pid_t start_target(const struct env *e, const char *name, const char *const *extra);
/* SIGINT to the trainer: it exits 0; then each loader (NULL-ended pids,
 * 0 ends) exits 0. */
void stop_target(pid_t tr, const pid_t *loaders);
/* stop_target when the trainer still served (check_serving), else SIGKILL
 * to it and the loaders: a stuck trainer would not answer SIGINT. */
void end_target(int serving, pid_t tr, const pid_t *loaders);

#endif
