#include "CImage.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

/* The planar conversion must give the same floats as the Swift formulas it replaced (and as
   in-memory normalisation in Swift): no fused multiply-adds. */
#pragma STDC FP_CONTRACT OFF

static void set_message(char *message, size_t size, const char *text) {
    if (size > 0) {
        strncpy(message, text, size - 1);
        message[size - 1] = 0;
    }
}

/* Makes *buffer hold at least `bytes`, keeping it when it already does. */
static int reserve(unsigned char **buffer, size_t *capacity, size_t bytes) {
    if (*buffer && *capacity >= bytes) return 1;
    unsigned char *grown = realloc(*buffer, bytes);
    if (!grown) return 0;
    *buffer = grown;
    *capacity = bytes;
    return 1;
}

static int decode_png(const unsigned char *data, size_t size, int channels, long max_pixels,
                      unsigned char **buffer, size_t *capacity, int *width, int *height, char *message, size_t message_size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        set_message(message, message_size, image.message[0] ? image.message : "PNG header is invalid");
        return 1;
    }
    if (image.width == 0 || image.height == 0 || (long)image.width * (long)image.height > max_pixels) {
        snprintf(message, message_size, "PNG is %ux%u pixels, outside the accepted 1..%ld", image.width, image.height, max_pixels);
        png_image_free(&image);
        return 1;
    }
    image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    if (!reserve(buffer, capacity, PNG_IMAGE_SIZE(image))) {
        set_message(message, message_size, "out of memory");
        png_image_free(&image);
        return 1;
    }
    if (!png_image_finish_read(&image, NULL, *buffer, 0, NULL)) {
        set_message(message, message_size, image.message[0] ? image.message : "PNG data is invalid");
        png_image_free(&image);
        return 1;
    }
    *width = (int)image.width;
    *height = (int)image.height;
    return 0;
}

struct jpeg_failure {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
};

static void jpeg_fail(j_common_ptr info) {
    longjmp(((struct jpeg_failure *)info->err)->jump, 1);
}

static void jpeg_quiet(j_common_ptr info, int level) { (void)info; (void)level; }

static int decode_jpeg(const unsigned char *data, size_t size, int channels, long max_pixels,
                       unsigned char **buffer, size_t *capacity, int *width, int *height, char *message, size_t message_size) {
    struct jpeg_decompress_struct info;
    struct jpeg_failure failure;
    info.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = jpeg_fail;
    failure.manager.emit_message = jpeg_quiet;
    if (setjmp(failure.jump)) {
        char text[JMSG_LENGTH_MAX];
        (*info.err->format_message)((j_common_ptr)&info, text);
        snprintf(message, message_size, "JPEG data is invalid: %s", text);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_read_header(&info, TRUE);
    if (info.image_width == 0 || info.image_height == 0 || (long)info.image_width * (long)info.image_height > max_pixels) {
        snprintf(message, message_size, "JPEG is %ux%u pixels, outside the accepted 1..%ld", info.image_width, info.image_height, max_pixels);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    info.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&info);
    size_t stride = (size_t)info.output_width * (size_t)info.output_components;
    if (!reserve(buffer, capacity, stride * info.output_height)) {
        set_message(message, message_size, "out of memory");
        jpeg_destroy_decompress(&info);
        return 1;
    }
    while (info.output_scanline < info.output_height) {
        unsigned char *rows[4];
        int count = 0;
        for (; count < 4 && info.output_scanline + count < info.output_height; count++)
            rows[count] = *buffer + (size_t)(info.output_scanline + count) * stride;
        jpeg_read_scanlines(&info, rows, (JDIMENSION)count);
    }
    jpeg_finish_decompress(&info);
    *width = (int)info.output_width;
    *height = (int)info.output_height;
    jpeg_destroy_decompress(&info);
    return 0;
}

static int decode_into(const unsigned char *data, size_t size, int channels, long max_pixels,
                       unsigned char **buffer, size_t *capacity, int *width, int *height, char *message, size_t message_size) {
    if (channels != 1 && channels != 3) {
        set_message(message, message_size, "channels must be 1 or 3");
        return 1;
    }
    if (size >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
        return decode_png(data, size, channels, max_pixels, buffer, capacity, width, height, message, message_size);
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(data, size, channels, max_pixels, buffer, capacity, width, height, message, message_size);
    set_message(message, message_size, "is neither PNG nor JPEG (unrecognised signature)");
    return 1;
}

int distill_image_decode(const unsigned char *data, size_t size, int channels, long max_pixels,
                         unsigned char **pixels, int *width, int *height,
                         char *message, size_t message_size) {
    unsigned char *buffer = NULL;
    size_t capacity = 0;
    *pixels = NULL;
    int status = decode_into(data, size, channels, max_pixels, &buffer, &capacity, width, height, message, message_size);
    if (status != 0) {
        free(buffer);
        return status;
    }
    *pixels = buffer;
    return 0;
}

void distill_image_free(unsigned char *pixels) { free(pixels); }

static int read_exact(FILE *file, unsigned char *into, size_t count) { return fread(into, 1, count, file) == count; }

int distill_image_probe_file(const char *path, int *width, int *height, char *message, size_t message_size) {
    FILE *file = fopen(path, "rb");
    if (!file) {
        snprintf(message, message_size, "cannot open: %s", strerror(errno));
        return 1;
    }
    unsigned char head[24];
    int status = 1;
    if (!read_exact(file, head, 3)) {
        set_message(message, message_size, "is too short to be an image");
    } else if (head[0] == 0x89 && head[1] == 'P' && head[2] == 'N') {
        if (!read_exact(file, head + 3, 21) || memcmp(head, "\x89PNG\r\n\x1a\n", 8) != 0 || memcmp(head + 12, "IHDR", 4) != 0) {
            set_message(message, message_size, "PNG header is invalid");
        } else {
            *width = (int)(((unsigned)head[16] << 24 | (unsigned)head[17] << 16 | (unsigned)head[18] << 8 | head[19]) & 0x7FFFFFFF);
            *height = (int)(((unsigned)head[20] << 24 | (unsigned)head[21] << 16 | (unsigned)head[22] << 8 | head[23]) & 0x7FFFFFFF);
            status = 0;
        }
    } else if (head[0] == 0xFF && head[1] == 0xD8 && head[2] == 0xFF) {
        /* Walk the segments: each marker is 0xFF, a code, then (for most) a big-endian length
           that counts itself; start-of-frame markers hold the precision, height and width. */
        int code = 0, c;
        set_message(message, message_size, "JPEG has no frame header (SOF) before its image data");
        for (;;) {
            while ((c = fgetc(file)) == 0xFF) {}
            if (c == EOF) break;
            code = c;
            if (code == 0xD8 || code == 0x01 || (code >= 0xD0 && code <= 0xD7)) {
                if ((c = fgetc(file)) != 0xFF) break;
                continue;
            }
            if (code == 0xD9 || code == 0xDA) break;
            unsigned char length[2];
            if (!read_exact(file, length, 2)) break;
            long size = (long)length[0] << 8 | length[1];
            if (size < 2) break;
            if (code >= 0xC0 && code <= 0xCF && code != 0xC4 && code != 0xC8 && code != 0xCC) {
                unsigned char frame[5];
                if (!read_exact(file, frame, 5)) break;
                *height = frame[1] << 8 | frame[2];
                *width = frame[3] << 8 | frame[4];
                status = 0;
                break;
            }
            if (fseek(file, size - 2, SEEK_CUR) != 0) break;
            if ((c = fgetc(file)) != 0xFF) break;
        }
    } else {
        set_message(message, message_size, "is neither PNG nor JPEG (unrecognised signature)");
    }
    fclose(file);
    return status;
}

struct distill_image_buffers {
    unsigned char *file;
    size_t file_capacity;
    unsigned char *pixels;
    size_t pixel_capacity;
    /* table[c][v]: the normalised value of 8-bit level v in channel c, for the statistics in
       table_mean and table_std (table_channels 0: not yet computed). */
    float table[3][256];
    float table_mean[3], table_std[3];
    int table_channels;
};

distill_image_buffers *distill_image_buffers_create(void) { return calloc(1, sizeof(distill_image_buffers)); }

void distill_image_buffers_free(distill_image_buffers *buffers) {
    if (!buffers) return;
    free(buffers->file);
    free(buffers->pixels);
    free(buffers);
}

/* Fills table[c][v] = (v / 255 - mean[c]) / std[c]: the same floats as computing it per pixel. */
static void fill_table(float table[3][256], int channels, const float *mean, const float *std) {
    for (int c = 0; c < channels; c++)
        for (int v = 0; v < 256; v++) table[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
}

static void to_planar(const unsigned char *pixels, int width, int height, int channels, int out_height, int out_width,
                      const float *mean, const float *std, float table[3][256], float *out) {
    size_t plane = (size_t)out_height * (size_t)out_width;
    if (width == out_width && height == out_height) {
        /* Same size: one table lookup a value (a division per value cost 40% of a JPEG's time). */
        if (channels == 1) {
            for (size_t i = 0; i < plane; i++) out[i] = table[0][pixels[i]];
        } else {
            float *r = out, *g = out + plane, *b = out + 2 * plane;
            for (size_t i = 0; i < plane; i++) {
                r[i] = table[0][pixels[3 * i]];
                g[i] = table[1][pixels[3 * i + 1]];
                b[i] = table[2][pixels[3 * i + 2]];
            }
        }
        return;
    }
    const float scale_y = (float)height / (float)out_height, scale_x = (float)width / (float)out_width;
    for (int y = 0; y < out_height; y++) {
        float sy = ((float)y + 0.5f) * scale_y - 0.5f;
        if (sy < 0) sy = 0;
        int y0 = (int)sy < height - 1 ? (int)sy : height - 1;
        int y1 = y0 + 1 < height - 1 ? y0 + 1 : height - 1;
        const float fy = sy - (float)y0;
        const unsigned char *row0 = pixels + (size_t)y0 * (size_t)width * (size_t)channels;
        const unsigned char *row1 = pixels + (size_t)y1 * (size_t)width * (size_t)channels;
        for (int x = 0; x < out_width; x++) {
            float sx = ((float)x + 0.5f) * scale_x - 0.5f;
            if (sx < 0) sx = 0;
            int x0 = (int)sx < width - 1 ? (int)sx : width - 1;
            int x1 = x0 + 1 < width - 1 ? x0 + 1 : width - 1;
            const float fx = sx - (float)x0;
            for (int c = 0; c < channels; c++) {
                const float p00 = (float)row0[x0 * channels + c] / 255.0f, p01 = (float)row0[x1 * channels + c] / 255.0f;
                const float p10 = (float)row1[x0 * channels + c] / 255.0f, p11 = (float)row1[x1 * channels + c] / 255.0f;
                const float top = p00 * (1 - fx) + p01 * fx;
                const float bottom = p10 * (1 - fx) + p11 * fx;
                const float v = top * (1 - fy) + bottom * fy;
                out[(size_t)c * plane + (size_t)y * (size_t)out_width + (size_t)x] = (v - mean[c]) / std[c];
            }
        }
    }
}

int distill_image_load(const char *path, distill_image_buffers *buffers, int channels, long max_pixels,
                       long max_file_bytes, int height, int width, int resize,
                       const float *mean, const float *std, float *out,
                       int *found_width, int *found_height, char *message, size_t message_size) {
    int descriptor = open(path, O_RDONLY | O_CLOEXEC);
    if (descriptor < 0) {
        snprintf(message, message_size, "cannot open: %s", strerror(errno));
        return 1;
    }
    struct stat info;
    if (fstat(descriptor, &info) != 0 || !S_ISREG(info.st_mode)) {
        set_message(message, message_size, "is not a regular file");
        close(descriptor);
        return 1;
    }
    size_t size = (size_t)info.st_size;
    if (size == 0 || (long)size > max_file_bytes) {
        snprintf(message, message_size, size == 0 ? "is empty" : "is %zu bytes, more than the accepted %ld", size, max_file_bytes);
        close(descriptor);
        return 1;
    }
    if (!reserve(&buffers->file, &buffers->file_capacity, size)) {
        set_message(message, message_size, "out of memory");
        close(descriptor);
        return 1;
    }
    size_t done = 0;
    while (done < size) {
        ssize_t got = read(descriptor, buffers->file + done, size - done);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            snprintf(message, message_size, "cannot read: %s", got < 0 ? strerror(errno) : "the file shrank while being read");
            close(descriptor);
            return 1;
        }
        done += (size_t)got;
    }
    close(descriptor);
    int status = decode_into(buffers->file, size, channels, max_pixels, &buffers->pixels, &buffers->pixel_capacity,
                             found_width, found_height, message, message_size);
    if (status != 0) return status;
    if (!resize && (*found_width != width || *found_height != height)) return 2;
    if (buffers->table_channels != channels || memcmp(buffers->table_mean, mean, sizeof(float) * (size_t)channels) != 0
        || memcmp(buffers->table_std, std, sizeof(float) * (size_t)channels) != 0) {
        fill_table(buffers->table, channels, mean, std);
        memcpy(buffers->table_mean, mean, sizeof(float) * (size_t)channels);
        memcpy(buffers->table_std, std, sizeof(float) * (size_t)channels);
        buffers->table_channels = channels;
    }
    to_planar(buffers->pixels, *found_width, *found_height, channels, height, width, mean, std, buffers->table, out);
    return 0;
}
