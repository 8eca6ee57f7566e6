/*
 * fake_trainer.h: a FAKE TRAINER for the tests of the client programs
 * (lejepa-eval, lejepa-monitor): a ROUTER and an XPUB on ephemeral loopback
 * ports, speaking proto/msg.h. It answers HELLO (WELCOME with the fields
 * set here, or REFUSE), counts HEARTBEATs and BYEs and the gaps between
 * heartbeats, notes the subscriptions the XPUB sees, sends HEARTBEAT while
 * `beating`, and hands every other message to the test's on_message. Also:
 * starting a program with its output in a log and waiting for it while the
 * fake keeps serving. Assertions go through CUnit.
 */
#ifndef LEJEPA_FAKE_TRAINER_H
#define LEJEPA_FAKE_TRAINER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "msg.h"

#define FAKE_HEARTBEAT_MS 100
#define FAKE_TOPICS 8

struct fake_trainer {
    void *ctx, *router, *xpub;
    char work_ep[256], pub_ep[256];
    struct msg_limits lim;
    struct msg_arena arena;
    uint8_t peer[256];              /* the last peer heard from */
    size_t peer_len;
    /* the HELLO expected and the answer */
    enum msg_role role;
    const char *software;           /* must occur in HELLO.software */
    const char *config;             /* WELCOME.config */
    const char *broadcast;          /* WELCOME.broadcast; NULL: pub_ep */
    uint64_t client_id;
    const char *refuse;             /* non-NULL: REFUSE every HELLO with this */
    bool beating;
    /* every message but HELLO, HEARTBEAT and BYE; after every poll */
    void (*on_message)(struct fake_trainer *f, const struct msg *m);
    void (*after_poll)(struct fake_trainer *f);
    char topics[FAKE_TOPICS][16];
    bool topic_on[FAKE_TOPICS];
    int n_topics;
    int hellos, heartbeats_in, byes_in;
    int beats_since_hello; /* heartbeats on the newest connection: it is welcomed */
    double last_beat, last_hb_in, max_hb_gap;
};

/* Binds both sockets; the test then sets role, software, config, ... */
void fake_trainer_init(struct fake_trainer *f);
void fake_trainer_free(struct fake_trainer *f);
/* To the last peer. */
void fake_trainer_send(struct fake_trainer *f, const struct msg *m);
void fake_trainer_publish(struct fake_trainer *f, const struct msg *m);
/* One turn: waits up to ms, handles messages and subscriptions, beats. */
void fake_trainer_poll(struct fake_trainer *f, int ms);
/* Whether a subscriber is subscribed to topic now. */
bool fake_trainer_subscribed(const struct fake_trainer *f, const char *topic);

/* `exec BUILD_ROOT/program ARGS > LOG 2>&1` through /bin/sh. */
pid_t fake_spawn(const char *program, const char *args, const char *log);
/* Exit status of the child (128 + signal when killed), serving f (NULL:
 * none) meanwhile; -1 on timeout, after killing it. */
int fake_wait_child(struct fake_trainer *f, pid_t pid, double seconds);
/* Prints the log file to stderr under a title (after a failure). */
void fake_print_log(const char *title, const char *log);

/* Serves the fake until cond holds or seconds pass; returns cond. */
#define FAKE_SERVE_UNTIL(f, seconds, cond)                                   \
    ({                                                                       \
        double end_ = util_time_mono() + (seconds);                         \
        while (!(cond) && util_time_mono() < end_)                           \
            fake_trainer_poll((f), 10);                                      \
        (cond);                                                              \
    })

#endif
