/*
 * test_pipeline_util.h: helpers of test_pipeline.c, which runs the real
 * lejepa-loader against the real lejepa-train: a generated ImageFolder of
 * small gray PNGs (libvips; the caller has run VIPS_INIT), real loaders
 * and evaluators started in process groups of their own, and the end of
 * every process a case started. The trainer side (environment, start_trainer, metrics
 * lines) comes from test_train_util.h.
 */
#ifndef LEJEPA_TEST_PIPELINE_UTIL_H
#define LEJEPA_TEST_PIPELINE_UTIL_H

#include <stdint.h>
#include <sys/types.h>

#include "test_train_util.h"
#include "testing.h"

/* Classes of the generated dataset and the side of its images. */
#define PIPE_CLASSES 3
#define PIPE_SIDE 20
/* The four corrupt files pipe_add_corrupt writes, relative to the root. */
#define PIPE_N_CORRUPT 4
#define PIPE_MAX_LOADERS 8
extern const char *const pipe_corrupt_paths[PIPE_N_CORRUPT];

/* Writes DIR/train/<class>/NNN.png (per_class each) and DIR/val/<class>/
 * (val_per_class each) under e->dir/rel: class 0 a bright disk, class 1
 * horizontal bars, class 2 a dark square on a light ground, each at a
 * seeded position with seeded noise. Returns the root (malloc'd). */
char *pipe_make_dataset(const struct env *e, const char *rel, int per_class,
                        int val_per_class, uint64_t seed);
/* Adds the files of pipe_corrupt_paths under root: a PNG cut in half, an
 * empty .png, random bytes named .png and a text file named .jpg. */
void pipe_add_corrupt(const char *root, uint64_t seed);

/* Starts the real lejepa-loader (one decode worker) on the data root, in a
 * process group of its own that dies with this process (PR_SET_PDEATHSIG),
 * its output in e->dir/<name>.out. extra: more arguments (NULL-ended);
 * env_set: one "NAME=VALUE" for its environment, or NULL. */
pid_t pipe_start_loader(const struct env *e, const char *name, const char *data,
                        const char *const *extra, const char *env_set);
/* Starts the real lejepa-eval (one thread, --out e->dir/<name>) against
 * e->work the same way, in a group of its own, its output in
 * e->dir/<name>.out. extra: more arguments (NULL-ended). */
pid_t pipe_start_evaluator(const struct env *e, const char *name,
                           const char *const *extra);
/* Makes this process the reaper of the loaders' orphaned decode workers
 * (PR_SET_CHILD_SUBREAPER), so pipe_group_gone can see a group end even
 * where init does not reap orphans. Call once at start. */
void pipe_init(void);
/* Registers a process (the trainer) for pipe_kill_all. */
void pipe_track(pid_t pid);
/* True when no process of the loader's group is left (reaps the ones that
 * ended). */
int pipe_group_gone(pid_t loader);
/* SIGKILL to every tracked process still running and to every loader's
 * whole group (its decode workers), then reaps them. Returns the number of
 * groups that still had a process 2 s later. */
int pipe_kill_all(void);

/* Stops a loader with SIGTERM and asserts that it exits 0. */
void pipe_stop_loader(pid_t pid);
/* The tickets a stopped loader says it served ("exiting: N tickets
 * served" in e->dir/<name>.out); -1 when it did not say. */
int pipe_loader_served(const struct env *e, const char *name);
/* A whole run: the trainer (start_trainer with trainer_args), then, once it
 * has bound its sockets, `loaders` real loaders named NAME-loaderI; asserts
 * that the trainer exits 0, then stops the loaders (exit 0 asserted).
 * Returns the train lines (out: MAX_LINES). */
int pipe_run(const struct env *e, const char *name, const char *data, int loaders,
             const char *const *trainer_args, const char *const *loader_args,
             struct line *out);
/* The same with loader i on its own copy datas[i]. */
int pipe_run_each(const struct env *e, const char *name, const char *const *datas,
                  int loaders, const char *const *trainer_args,
                  const char *const *loader_args, struct line *out);

/* A case's environment (env_init; one case at a time), and its end:
 * pipe_kill_all (asserting that every group ended), then the temporary
 * directory removed. pipe_case_abandon does the same without asserting,
 * for main after the suite: it ends a case a fatal assertion cut short. */
struct env *pipe_case_begin(void);
void pipe_case_end(void);
void pipe_case_abandon(void);

/* main() of a pipeline test program: SIGPIPE ignored, pipe_init, libvips
 * started, the cases run (all, or the one argv[1] names), every process
 * left ended, libvips shut down. Returns the exit status. */
int pipe_main(const char *suite, const struct testing_case *cases, int argc, char **argv);

/* Occurrences of needle in the file e->dir/rel. */
int pipe_count_text(const struct env *e, const char *rel, const char *needle);
/* Mean loss of the train lines [from, to). */
double pipe_mean_loss(const struct line *l, int from, int to);

#endif
