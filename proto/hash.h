/*
 * hash.h: the project's two checksums, one implementation each. FNV-1a 64
 * identifies bytes (the dataset fingerprint, a step's batch hash, source
 * files); CRC-32C (Castagnoli, reflected, as in iSCSI, ext4 and TFRecord)
 * guards bytes on disk against corruption. Neither is a cryptographic hash.
 */
#ifndef LEJEPA_HASH_H
#define LEJEPA_HASH_H

#include <stddef.h>
#include <stdint.h>

/* 64-bit FNV-1a: start from HASH_FNV_OFFSET, continue with the returned h. */
#define HASH_FNV_OFFSET UINT64_C(0xcbf29ce484222325)
uint64_t hash_fnv1a(uint64_t h, const void *data, size_t len);

/* CRC-32C of len bytes continuing crc (start from 0): the standard check
 * value is hash_crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t hash_crc32c(uint32_t crc, const void *data, size_t len);
/* The same, a byte at a time: the reference the test compares against. */
uint32_t hash_crc32c_ref(uint32_t crc, const void *data, size_t len);

#endif
