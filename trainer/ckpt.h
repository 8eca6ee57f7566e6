/*
 * ckpt.h: checkpoints as safetensors files (DESIGN.md §8): every learnable
 * tensor and BatchNorm statistic under its PyTorch state_dict name, the
 * AdamW moments under "optim.m.<name>" / "optim.v.<name>", and string
 * metadata (format, version, step, optimizer step count, the run's config,
 * the sampler state, whatever the caller adds). A weights-only file (no
 * optimizer) is what `lejepa embed` and PyTorch users load.
 * Loading validates everything before it copies anything: a file that does
 * not match the model exactly is refused and the model is left untouched.
 */
#ifndef LEJEPA_CKPT_H
#define LEJEPA_CKPT_H

#include "adamw.h"
#include "params.h"
#include "safetensors.h"

#define CKPT_FORMAT "lejepa-checkpoint"
/* Version 2 files must carry a checksum (safetensors.h, ST_META_CHECKSUM);
 * version 1 files were written before checksums and load with a warning. */
#define CKPT_VERSION "2"
#define CKPT_VERSION_UNCHECKED "1"

/* Size of the note buffers below: enough for a few file names and reasons. */
#define CKPT_NOTE_LEN 2048

/* Writes the model (and the optimizer state when o is not NULL) with the
 * caller's metadata pairs, atomically. Returns 0 or -1 with err. */
int ckpt_save(const char *path, const struct params *p, const struct adamw *o,
              const char *const *keys, const char *const *values, size_t n,
              char *err);

/* Loads weights and statistics (and, when o is not NULL, the optimizer
 * moments and step count) into an already built model of the same shape.
 * On success f stays open so the caller can read the metadata (st_meta);
 * the caller closes it. On failure nothing was changed and f is closed.
 * A checksum mismatch fails naming the file; a version 1 file (no
 * checksum) loads with a warning on the log. */
int ckpt_load(const char *path, struct params *p, struct adamw *o,
              struct st_file *f, char *err);

/* Opens path and checks that it is a whole, uncorrupted checkpoint of this
 * format (checksum, format, version), without a model. Returns 0 when it
 * verifies, 1 when it is a version 1 file that has no checksum to verify
 * (note says so, CKPT_NOTE_LEN bytes, may be NULL), -1 with err. */
int ckpt_verify(const char *path, char *note, char *err);

/* The checkpoint a run directory resumes from: the file `latest` names (a
 * file holding a name, as train_ckpt.c writes it, or a symlink), when it
 * verifies; otherwise the newest ckpt-<step>.safetensors that verifies.
 * Writes its path into path (len bytes) and returns 0; note (CKPT_NOTE_LEN
 * bytes) is empty when `latest` was used and verified, and otherwise says
 * which files were missing or corrupt and why, and which one was chosen:
 * log it. Returns -1 with err when no checkpoint in run_dir verifies. */
int ckpt_find_newest_valid(const char *run_dir, char *path, size_t len,
                           char *note, char *err);

/* Removes the temp files of atomic writes (name.tmp.<pid>, see
 * util_atomic_open) left in run_dir by a process that died mid-write: those
 * whose pid is not a live process. A live pid's file is kept (another
 * program writing into the run directory, e.g. the monitor's dashboard);
 * a reused pid only means a stale file stays until the next start. Call
 * with the run directory locked (util_lock_dir), before writing. *removed
 * counts the files removed; -1 with err if run_dir cannot be listed (a
 * file that cannot be removed is an error too, naming it). */
int ckpt_remove_stale_tmp(const char *run_dir, int *removed, char *err);

/* The checkpoint an argument names: a checkpoint file as it is; a run
 * directory, or its `latest`, through ckpt_find_newest_valid (note as
 * there: log it when not empty). 0, or -1 with err naming arg. */
int ckpt_resolve(const char *arg, char *path, size_t len, char *note,
                 char *err);

/* The steps of the ckpt-<step>.safetensors files in run_dir, newest first
 * (malloc'd, *n of them; the caller frees); NULL with err when run_dir
 * cannot be listed. */
uint64_t *ckpt_list_steps(const char *run_dir, size_t *n, char *err);

/* The step of a file named ckpt-<step>.safetensors (decimal, no leading
 * zeros), as the trainer names them; false for any other name. */
bool ckpt_step_of_name(const char *name, uint64_t *step);

#endif
