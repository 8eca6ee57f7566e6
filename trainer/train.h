/*
 * train.h: lejepa-train as parts with one owner each (DESIGN.md §3, §5, §8).
 *
 *   train_net      sockets, client registry, sends, heartbeats  (main thread)
 *   train_tickets  who holds which ticket, credit, answer checks (main thread)
 *   train_step     sampler, steps in flight, the step job         (main; its
 *                  job's slot belongs to the compute thread while out)
 *   train_eval     snapshots and the eval forward job             (likewise)
 *   train_engine   model, optimizer, the compute thread           (the worker
 *                  while a job is out, the main thread otherwise)
 *   train_rundir   config.ini, metrics.jsonl; train_log the log (main thread)
 *   train_ckpt     the checkpoints: a copy taken between steps    (main; the
 *                  writer thread writes it while its job is out)
 *
 * struct train only composes them for the files that glue them: the hub
 * (train_hub.c: what a message means), the loop (train_loop.c: when a step
 * starts, what follows it), checkpoints (train_ckpt.c) and main.
 */
#ifndef LEJEPA_TRAIN_H
#define LEJEPA_TRAIN_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "train_ckpt.h"
#include "train_dist.h"
#include "train_engine.h"
#include "train_eval.h"
#include "train_log.h"
#include "train_net.h"
#include "train_rundir.h"
#include "train_step.h"
#include "train_tickets.h"

/* Longest wait of the main loop's poll. */
#define TRAIN_POLL_MS 50
/* End of a run: wait for the evaluators' results of the final snapshot at
 * most this long, and until none came for the quiet time. */
#define TRAIN_RESULT_WAIT_S 120
#define TRAIN_RESULT_QUIET_S 3
/* eval.wait_evaluators: the longest wait for them before the first step. */
#define TRAIN_EVALS_WAIT_S 60

/* The run's dataset: from --data, the checkpoint, or the first loader. */
struct train_dataset {
    bool known;
    uint64_t fingerprint, n_train, n_val;
    uint32_t n_classes;
    char **classes;   /* (n_classes) or NULL when unknown */
    char source[256]; /* "--data DIR", "loader NAME", "checkpoint" */
};

/* Where the run stands and its schedule (DESIGN.md §5 optimizer). */
struct train_progress {
    uint64_t step;    /* optimizer steps done */
    uint64_t total;   /* steps of the run */
    bool total_fixed; /* false while timing a time budget */
    long warmup;
    uint64_t steps_per_epoch0; /* for the warm-up */
    uint64_t last_ckpt_step;
    bool have_ckpt;
    double start_time, timing_t0;
    uint64_t first_step; /* step at which this process began (a resume) */
    /* a time budget's seconds and step cap, and the window its re-fits
     * time (from step refit_step at refit_t0); pause_step: the last
     * snapshot's */
    double budget_s, refit_t0;
    uint64_t steps_cap, refit_step, pause_step;
};

/* What the step lines and metrics average over a log interval. */
struct train_interval {
    double t0;
    uint64_t images;
    double probe_loss_sum;
    long probe_steps, probe_correct, probe_total;
    uint64_t skipped_steps; /* the run's, not the interval's */
};

/* Whether and how the run ends, and the waits for evaluators. */
struct train_control {
    bool stopping;        /* a first signal: finish the step, stop */
    bool interrupted;     /* SIGINT/SIGTERM stopped the run */
    char fatal[512];      /* set: the run stops with this error */
    int fatal_code;       /* its exit status */
    double evals_wait_t0; /* eval.wait_evaluators: wait began (0: not) */
    bool evals_wait_over;
    double last_result_at;  /* monotonic time of the last RESULT */
    double final_wait_from; /* when the end-of-run wait began */
};

struct train {
    struct config cfg;
    char *config_text;          /* config_to_string(&cfg) */
    char resume[4096];          /* checkpoint path, "" = fresh run */
    struct train_net_keys keys; /* --key, --allow */
    bool insecure;              /* --insecure */
    const char *bind;           /* --bind */
    struct train_dist dist;     /* the ranks under mpirun (one without) */
    struct train_rundir rundir;
    struct train_net net;
    struct train_tickets tickets;
    struct train_dataset data;
    bool engine_ready;
    struct train_engine engine;
    struct train_ckpt_writer ckpt; /* started with the engine */
    struct train_step steps;
    struct train_eval *eval;
    struct train_progress prog;
    struct train_interval iv;
    struct train_control ctl;
};

void train_dataset_free(struct train_dataset *d);

/* train_loop.c: builds the model, the steps and the snapshots once the
 * dataset is known (main, or the hub at the first loader's HELLO). */
void train_engine_init(struct train *t);
/* train_loop.c: the main loop until the run ends, a signal stops it or an
 * error; returns the exit status (0, 1 error, 3 non-finite, 130 second
 * signal). */
int train_loop_run(struct train *t, volatile sig_atomic_t *signals);

/* train_hub.c: every waiting message of the work socket (a bounded burst),
 * then heartbeats and silence. */
void train_hub_serve(struct train *t);
/* One decoded message of peer id (frame: its body frame, for the sender's
 * key identity). Everything train_hub_serve does per message; exported for
 * the message-handler fuzz target. */
void train_hub_handle(struct train *t, const uint8_t *id, size_t id_len,
                      zmq_msg_t *frame, const struct msg *m);
/* A client leaves (BYE, silence, HELLO again): its tickets go to others. */
void train_hub_remove(struct train *t, struct train_client *c, const char *why);
/* Removes the clients a send marked to drop (train_client.drop). */
void train_hub_sweep(struct train *t);
/* BYE with the reason to every client (the run ends). */
void train_hub_bye_all(struct train *t, const char *reason);
/* Hands out tickets: a snapshot's first, then the steps'. */
void train_hub_issue(struct train *t);

/* train_ckpt.c: the checkpoint of t->prog.step, with the compute thread
 * idle. train_ckpt_begin copies it for the writer thread and returns; a
 * write still out is waited for first, and its failure is returned instead
 * (nothing is copied). train_ckpt_write writes it on the calling thread,
 * after any write that is out (the end of a run). 0, or -1 with err. */
int train_ckpt_begin(struct train *t, char *err);
int train_ckpt_write(struct train *t, char *err);
/* Takes the outcome of the write that was out, waiting for it with wait: a
 * written one becomes the last good checkpoint (t->prog); -1 with err when
 * it failed, 0 otherwise (also when nothing was out or, without wait, it
 * is still out). */
int train_ckpt_collect(struct train *t, bool wait, char *err);
/* The config text stored in a checkpoint (malloc'd) and the path of the
 * checkpoint a --resume argument names (a file or a run directory). */
char *train_ckpt_read_config(const char *arg, char *path, size_t path_len,
                             char *err);
/* Loads the model, optimizer, sampler and progress after the engine is
 * built. */
int train_ckpt_restore(struct train *t, char *err);
/* Reads the dataset identity a checkpoint was trained on. */
int train_ckpt_read_dataset(const char *path, struct train_dataset *d,
                            char *err);

#endif
