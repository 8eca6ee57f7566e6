/*
 * train_state.h: the state of the lejepa-train process (DESIGN.md §3, §5, §8)
 * shared by its files: the sampler (train_sampler.c), the client registry and
 * the work-socket handlers (train_clients.c), the step slots that BATCHes fill
 * (train_batch.c), the compute thread (train_compute.c), metrics and the log
 * (train_metrics.c), checkpoints (train_ckpt.c) and the main loop
 * (train_main.c). Not a library: only lejepa-train includes it.
 */
#ifndef LEJEPA_TRAIN_STATE_H
#define LEJEPA_TRAIN_STATE_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "adamw.h"
#include "config.h"
#include "lejepa.h"
#include "msg.h"
#include "train_eval.h"

/* Steps whose tickets may be out at once, the computing one included: the
 * bound on the trainer's batch memory whatever the loaders' credit. */
#define TRAIN_WINDOW 3
/* Interval of HEARTBEATs both ways (WELCOME.heartbeat_ms). */
#define TRAIN_HEARTBEAT_MS 1000
/* A peer silent for this many intervals is gone. */
#define TRAIN_SILENCE_BEATS 5
/* Longest wait of the main loop's poll. */
#define TRAIN_POLL_MS 50
/* End of a run: wait for the evaluators' results of the final snapshot at
 * most this long, and until none came for the quiet time. */
#define TRAIN_RESULT_WAIT_S 120
#define TRAIN_RESULT_QUIET_S 3
/* An evaluator gets this long after its HELLO to subscribe before a
 * snapshot is published. */
#define TRAIN_SUBSCRIBE_SETTLE_S 2.0
/* Bad messages logged one by one before the log thins out to 1 in 1000. */
#define TRAIN_BAD_LOG_FIRST 20
/* Bytes of metrics lines per HISTORY reply (well under the message limit). */
#define TRAIN_HISTORY_PAGE_BYTES (128 * 1024)
#define TRAIN_HISTORY_PAGE_LINES 1000
/* Most clients at once; more HELLOs are refused. */
#define TRAIN_MAX_CLIENTS 256
/* Most tickets one loader may hold (its credit is capped to this). */
#define TRAIN_MAX_CREDIT 1024

/* ---- sampler (train_sampler.c) ---------------------------------------- */

#define TRAIN_NOT_EXCLUDED UINT32_MAX

struct train_sampler {
    uint64_t seed, n_train;
    int batch, ticket_size, tickets_per_step;
    /* (n_train) epoch in which the sample failed, TRAIN_NOT_EXCLUDED if never;
     * epoch e's permutation leaves out every sample that failed before e. */
    uint32_t *failed_epoch;
    uint64_t n_failed;
    /* the epoch tickets are being cut from */
    uint32_t epoch;
    uint64_t epoch_start;           /* global step of its first step */
    uint64_t steps_in_epoch;        /* floor(usable / batch) */
    uint64_t *perm;                 /* (n_train) usable samples, permuted */
    uint64_t n_perm;
};

void train_sampler_init(struct train_sampler *s, uint64_t seed, uint64_t n_train,
                        int batch, int ticket_size);
void train_sampler_free(struct train_sampler *s);
/* Cuts epoch `epoch` starting at global step `start`. -1 with err when fewer
 * usable samples than one batch remain. */
int train_sampler_start_epoch(struct train_sampler *s, uint32_t epoch,
                              uint64_t start, char *err);
/* The batch's sample indices of global step `step` of the current epoch. */
void train_sampler_step_indices(const struct train_sampler *s, uint64_t step,
                                uint64_t *out);
/* Records a failed sample; returns 1 when it was not excluded before. */
int train_sampler_exclude(struct train_sampler *s, uint64_t index, uint32_t epoch);
/* Exclusions as text "index@epoch,..." (malloc'd, caller frees) and back. */
char *train_sampler_format_excluded(const struct train_sampler *s);
int train_sampler_parse_excluded(struct train_sampler *s, const char *text,
                                 char *err);

/* ---- clients (train_clients.c) ---------------------------------------- */

struct train_client {
    uint8_t id[256];                /* ROUTER routing id */
    size_t id_len;
    uint64_t client_id;
    char name[128];
    enum msg_role role;
    uint32_t credit;
    uint64_t *held;                 /* (credit) ticket ids out to this loader */
    uint32_t n_held;
    double last_seen;               /* monotonic seconds */
    uint64_t batches;
    double joined_at;               /* monotonic seconds of its HELLO */
    bool has_result;                /* an evaluator sent a RESULT ... */
    uint64_t result_step;           /* ... for this step, last */
};

/* ---- step slots (train_batch.c) --------------------------------------- */

enum train_ticket_state { TICKET_UNISSUED, TICKET_OUT, TICKET_DONE };

struct train_slot {
    bool used, computing;
    uint64_t step;
    uint32_t epoch;
    uint64_t epoch_start;           /* global step where its epoch began */
    uint64_t *indices;              /* (batch) samples, permutation order */
    uint8_t *ok;                    /* (batch) 1: pixels arrived */
    int32_t *labels;                /* (batch) */
    uint8_t *pixels[2];             /* group g: (views, batch, C, size, size) */
    uint8_t *tstate;                /* (tickets_per_step) enum train_ticket_state */
    int tickets_done;
};

/* ---- compute thread (train_compute.c) --------------------------------- */

struct train_step_result {
    bool skipped;                   /* fewer than 2 samples survived */
    bool finite;
    int n;                          /* samples trained on */
    uint64_t hash;                  /* FNV-1a 64 of the assembled pixels, labels */
    struct lejepa_losses losses;
    double lr_factor;
    double seconds;
    char err[256];
};

struct train_compute {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, has_job, quit, busy;
    int wake[2];                    /* the thread writes a byte when done */
    int threads;
    struct train_slot *slot;        /* job: the slot to train on */
    bool eval_job;                  /* job: an eval forward (train_eval.c) */
    double lr_factor;
    struct train_step_result result;
};

/* ---- the process ------------------------------------------------------ */

struct train_dataset {
    bool known;
    uint64_t fingerprint, n_train, n_val;
    uint32_t n_classes;
    char **classes;                 /* (n_classes) or NULL when unknown */
    char source[256];               /* "--data DIR", "loader NAME", "checkpoint" */
};

struct train {
    struct config cfg;
    char *config_text;              /* config_to_string(&cfg) */
    char run_dir[4096];
    char resume[4096];              /* checkpoint path, "" = fresh run */
    FILE *log, *metrics;
    uint64_t *line_off;             /* (metrics_lines) where each line starts */
    uint64_t metrics_lines, line_cap;

    void *zctx, *router, *pub;
    struct msg_limits limits;
    struct msg_arena arena;
    int sig_fd;                     /* stop-signal self-pipe (util_stop_signals_init) */

    struct train_dataset data;
    struct train_client *clients[TRAIN_MAX_CLIENTS];
    int n_clients;
    double last_result_at;          /* monotonic time of the last RESULT */
    double final_wait_from;         /* when the end-of-run wait began */
    uint64_t next_client_id;
    int rr;                         /* round-robin start for ticket issue */
    double last_beat;

    bool engine_ready;
    struct lejepa model;
    struct adamw opt;
    float mean[3], std[3];
    struct train_sampler sampler;
    struct train_slot slots[TRAIN_WINDOW];
    struct train_compute compute;
    struct train_eval *eval;        /* snapshots (train_eval.c) */

    uint64_t step;                  /* optimizer steps done */
    uint64_t total;                 /* steps of the run */
    bool total_fixed;               /* false while timing a time budget */
    long warmup;
    uint64_t steps_per_epoch0;      /* for the warm-up */
    uint64_t next_open;             /* next step to open a slot for */
    uint64_t last_ckpt_step;
    bool have_ckpt;
    double start_time, timing_t0;
    /* eval.wait_evaluators: when the wait began (0: not yet), and done */
    double evals_wait_t0;
    bool evals_wait_over;

    char sampler_err[256];          /* no next epoch: fatal once the open
                                     * steps are trained */
    bool interrupted;               /* SIGINT/SIGTERM stopped the run */
    char fatal[512];                /* set: the run stops with this error */
    int fatal_code;                 /* its exit status */

    /* counters */
    uint64_t bad_messages, duplicates, skipped_steps;
    /* log interval accumulators */
    double interval_t0;
    uint64_t interval_images;
    double probe_loss_sum;
    long probe_steps, probe_correct, probe_total;
};

/* train_main.c: writes the effective config to runs/<name>/config.ini */
void train_save_config(struct train *t);

/* train_loop.c: the main loop until the run ends, a signal stops it or an
 * error; returns the exit status (0, 1 error, 3 non-finite, 130 second
 * signal). */
int train_loop_run(struct train *t, volatile sig_atomic_t *signals);

/* train_metrics.c: the log and metrics.jsonl */
void train_log(struct train *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int train_metrics_open(struct train *t, char *err);
/* Appends one line (values may be NaN: written as null), publishes it as
 * METRIC. extra: raw JSON members appended to the line (",\"k\":v") or NULL. */
void train_metrics_write(struct train *t, enum msg_source source, uint64_t step,
                         uint32_t epoch, const struct msg_value *values, int n,
                         const char *extra);
void train_metrics_result(struct train *t, const struct msg_metric *r);
void train_metrics_history(struct train *t, const uint8_t *id, size_t id_len,
                           uint64_t start);
/* Counts and logs a malformed, oversized or unexpected message. */
void train_bad_message(struct train *t, const char *who, const char *reason);

/* train_loop.c: builds the model once the dataset is known (main calls it
 * before binding when --data or a checkpoint names the dataset). */
void train_engine_init(struct train *t);

/* train_clients.c */
struct train_client *train_client_find(struct train *t, const uint8_t *id,
                                       size_t id_len);
void train_client_remove(struct train *t, struct train_client *c,
                         const char *why);
void train_clients_serve(struct train *t);
void train_clients_heartbeat(struct train *t);
void train_clients_bye_all(struct train *t, const char *reason);
/* Whether every connected evaluator has sent a RESULT for step. */
bool train_clients_evaluators_done(const struct train *t, uint64_t step);
int train_clients_evaluators(const struct train *t);
/* True while training waits for eval.wait_evaluators evaluators to join
 * (at most TRAIN_EVALS_WAIT_S from the first call; logs the start and the
 * end of the wait). */
bool train_clients_awaiting_evaluators(struct train *t);
/* Whether an evaluator joined less than TRAIN_SUBSCRIBE_SETTLE_S ago: its
 * SUB socket may not be subscribed yet, so a snapshot published now would
 * never reach it (ZeroMQ's slow joiner). */
bool train_clients_evaluators_settling(const struct train *t);
int train_clients_loaders(const struct train *t);
void train_send(struct train *t, const uint8_t *id, size_t id_len,
                const struct msg *m);
void train_dataset_free(struct train_dataset *d);

/* train_batch.c */
void train_slots_init(struct train *t);
void train_slots_free(struct train *t);
struct train_slot *train_slot_find(struct train *t, uint64_t step);
/* Opens slots for the next steps while the window and the epoch rule allow. */
void train_slots_open(struct train *t);
void train_slot_release(struct train *t, struct train_slot *s);
/* Hands out unissued tickets to loaders with free credit. */
void train_tickets_issue(struct train *t);
/* Marks an out ticket unissued again (its loader is gone or returned it). */
void train_ticket_reissue(struct train *t, uint64_t ticket);
/* True when some client holds the ticket. */
bool train_ticket_held(const struct train *t, uint64_t ticket);
/* The next loader (round-robin) with free credit, or NULL. */
struct train_client *train_loader_with_credit(struct train *t);
/* A BATCH's groups against the run's views: for work = train the global
 * group then the local one, for work = eval one view at the global size;
 * labels below the class count. 0 or -1 with err. */
int train_batch_check_groups(const struct train *t, const struct msg_batch *b,
                             char *err);
/* A decoded BATCH from loader c: checked against its ticket and the run's
 * views, copied into its step's slot, failures logged and excluded; a bad
 * one is counted and its ticket issued again; a late one dropped. */
void train_batch_accept(struct train *t, struct train_client *c,
                        const struct msg_batch *b);

/* train_compute.c */
void train_compute_start(struct train *t);
void train_compute_stop(struct train *t);
void train_compute_submit(struct train *t, struct train_slot *s, double lr_factor);
/* Runs train_eval_forward on the compute thread. */
void train_compute_submit_eval(struct train *t);
/* True once the job finished (result filled, busy cleared). */
bool train_compute_poll_done(struct train *t);

/* train_ckpt.c */
int train_ckpt_write(struct train *t, char *err);
/* The config text stored in a checkpoint (malloc'd) and the path of the
 * checkpoint a --resume argument names (a file or a run directory). */
char *train_ckpt_read_config(const char *arg, char *path, size_t path_len,
                             char *err);
/* Loads the model, optimizer and sampler state after the engine is built. */
int train_ckpt_restore(struct train *t, char *err);
/* Reads the dataset identity a checkpoint was trained on. */
int train_ckpt_read_dataset(const char *path, struct train_dataset *d, char *err);

#endif
