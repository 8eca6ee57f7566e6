/*
 * test_msg_samples.h: valid sample messages of every kind (static storage),
 * a deep field-by-field comparison, and a check that every decoded blob lies
 * inside the buffer it was decoded from. Shared by the protocol tests and the
 * fuzz target's seed corpus.
 */
#ifndef LEJEPA_TEST_MSG_SAMPLES_H
#define LEJEPA_TEST_MSG_SAMPLES_H

#include <stdbool.h>

#include "msg.h"

/* Variants per kind: 0 .. MSG_SAMPLE_VARIANTS-1 (e.g. HELLO from a loader or a
 * monitor, EMBED chunk or end marker, FEATMAP with or without attention). */
#define MSG_SAMPLE_VARIANTS 2

/* Fills m with a sample of kind k; pointers refer to static storage. */
void msg_sample(struct msg *m, enum msg_kind k, int variant);

/* Limits that fit every sample exactly (small, so oversize cases are easy). */
void msg_sample_limits(struct msg_limits *l);

/* Field-by-field equality, blob contents included. On a difference writes
 * the field's name into why (ERR_LEN) and returns false. */
bool msg_sample_equal(const struct msg *a, const struct msg *b, char *why);

/* True when every blob of m lies inside [buf, buf+len) with the size its
 * shape implies. */
bool msg_sample_blobs_inside(const struct msg *m, const void *buf, size_t len);

#endif
