/*
 * prep_png.c: PNG encode/publish and verify for lejepa-prep (see
 * prep_png.h). Every vips object made here is unreffed before returning.
 */
#include "prep_png.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vips/vips.h>

#include "util.h"

/* Copies libvips' last error (trimmed) into err and clears it. */
static int vips_errf(char *err, const char *path, const char *what)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s", vips_error_buffer());
    vips_error_clear();
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    return errf(err, "%s: %s failed: %s", path, what, msg);
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int prep_png_write(const char *path, const char *tmp, const uint8_t *pix,
                   int w, int h, char *err)
{
    int rc = -1, fd = -1;
    void *buf = NULL;
    size_t len = 0;
    VipsImage *img = vips_image_new_from_memory(pix, (size_t)w * (size_t)h, w,
                                                h, 1, VIPS_FORMAT_UCHAR);
    if (!img)
        return vips_errf(err, path, "vips_image_new_from_memory");
    if (vips_pngsave_buffer(img, &buf, &len, "strip", TRUE, NULL) != 0) {
        vips_errf(err, path, "PNG encoding");
        goto cleanup;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        errf(err, "%s: cannot create: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (write_all(fd, buf, len) != 0) {
        errf(err, "%s: write failed: %s", tmp, strerror(errno));
        goto cleanup;
    }
    int closed = close(fd);
    fd = -1;
    if (closed != 0) {
        errf(err, "%s: close failed: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (rename(tmp, path) != 0) {
        errf(err, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        unlink(tmp);
    g_free(buf);
    g_object_unref(img);
    return rc;
}

int prep_png_matches(const char *path, const uint8_t *pix, int w, int h)
{
    int same = 0;
    size_t len = 0;
    VipsImage *img = NULL;
    void *mem = NULL;
    char *file = util_read_file(path, &len, NULL);
    if (!file)
        return 0;
    if (vips_pngload_buffer(file, len, &img, NULL) != 0) {
        vips_error_clear();
        goto cleanup;
    }
    if (img->Xsize != w || img->Ysize != h || img->Bands != 1 ||
        img->BandFmt != VIPS_FORMAT_UCHAR)
        goto cleanup;
    size_t size = 0;
    mem = vips_image_write_to_memory(img, &size);
    if (!mem) {
        vips_error_clear();
        goto cleanup;
    }
    same = size == (size_t)w * (size_t)h && memcmp(mem, pix, size) == 0;
cleanup:
    g_free(mem);
    if (img)
        g_object_unref(img);
    free(file);
    return same;
}
