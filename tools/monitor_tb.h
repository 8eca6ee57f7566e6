/*
 * monitor_tb.h: TensorBoard event files from the monitor's metric records,
 * so a run shows up in `tensorboard --logdir DIR` beside the HTML dashboard.
 * An event file (events.out.tfevents.<unix time>.<host>) is a TFRecord
 * stream: each record is uint64 length, masked CRC-32C of those 8 bytes,
 * the data, masked CRC-32C of the data (little-endian; mask =
 * ((crc >> 15) | (crc << 17)) + 0xa282ead8). Each record's data is an Event
 * protobuf, encoded here by hand (no protobuf library): wall_time (double,
 * field 1), step (int64, field 2), then either file_version (string, field
 * 3, "brain.Event:2", the first event) or summary (field 5): a Summary of
 * one Value {tag (field 1), simple_value (float, field 2)} per finite value
 * of the record, tagged "<source>/<name>" (train/loss, knn/knn_top1).
 * One event per metrics line. Knows no sockets and draws nothing.
 */
#ifndef LEJEPA_MONITOR_TB_H
#define LEJEPA_MONITOR_TB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "monitor_history.h"

#define MONITOR_TB_FILE_VERSION "brain.Event:2"
#define MONITOR_TB_CRC_MASK_DELTA 0xa282ead8u

struct monitor_tb {
    FILE *f;
    char path[4400];
    size_t events;          /* written, the file_version event included */
};

/* A growable byte buffer for the encoders. */
struct monitor_tb_buf {
    uint8_t *p;
    size_t n, cap;
};

/* Creates DIR (and parents) and a new event file in it named for now and
 * this host, and writes the file_version event. Returns 0, or -1 with err. */
int monitor_tb_open(struct monitor_tb *tb, const char *dir, double now, char *err);

/* Appends one event for the record (nothing when no value is finite).
 * Returns 0, or -1 with err. Buffered: monitor_tb_flush makes it visible. */
int monitor_tb_add(struct monitor_tb *tb, const struct monitor_record *r, char *err);
int monitor_tb_flush(struct monitor_tb *tb, char *err);
void monitor_tb_close(struct monitor_tb *tb);

/* The masked CRC TFRecord stores. */
uint32_t monitor_tb_mask_crc(uint32_t crc);

/* Appends to b the Event protobuf of a record (its values as simple_value
 * summaries, non-finite ones left out), or, when r is NULL, the first
 * event: wall_time and file_version. Returns the number of values encoded. */
size_t monitor_tb_encode_event(struct monitor_tb_buf *b, double wall_time,
                               const struct monitor_record *r);

/* Appends the TFRecord framing of data to b. */
void monitor_tb_frame(struct monitor_tb_buf *b, const uint8_t *data, size_t len);

void monitor_tb_buf_free(struct monitor_tb_buf *b);

#endif
