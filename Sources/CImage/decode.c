#include "CImage.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

static void set_message(char *message, size_t size, const char *text) {
    if (size > 0) {
        strncpy(message, text, size - 1);
        message[size - 1] = 0;
    }
}

static int decode_png(const unsigned char *data, size_t size, int channels, long max_pixels,
                      unsigned char **pixels, int *width, int *height, char *message, size_t message_size) {
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
    size_t bytes = PNG_IMAGE_SIZE(image);
    unsigned char *buffer = malloc(bytes);
    if (!buffer) {
        set_message(message, message_size, "out of memory");
        png_image_free(&image);
        return 1;
    }
    if (!png_image_finish_read(&image, NULL, buffer, 0, NULL)) {
        set_message(message, message_size, image.message[0] ? image.message : "PNG data is invalid");
        free(buffer);
        png_image_free(&image);
        return 1;
    }
    *pixels = buffer;
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
                       unsigned char **pixels, int *width, int *height, char *message, size_t message_size) {
    struct jpeg_decompress_struct info;
    struct jpeg_failure failure;
    unsigned char *volatile buffer = NULL;
    info.err = jpeg_std_error(&failure.manager);
    failure.manager.error_exit = jpeg_fail;
    failure.manager.emit_message = jpeg_quiet;
    if (setjmp(failure.jump)) {
        char text[JMSG_LENGTH_MAX];
        (*info.err->format_message)((j_common_ptr)&info, text);
        snprintf(message, message_size, "JPEG data is invalid: %s", text);
        jpeg_destroy_decompress(&info);
        free(buffer);
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
    buffer = malloc(stride * info.output_height);
    if (!buffer) {
        set_message(message, message_size, "out of memory");
        jpeg_destroy_decompress(&info);
        return 1;
    }
    while (info.output_scanline < info.output_height) {
        unsigned char *row = buffer + (size_t)info.output_scanline * stride;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    *width = (int)info.output_width;
    *height = (int)info.output_height;
    jpeg_destroy_decompress(&info);
    *pixels = buffer;
    return 0;
}

int distill_image_decode(const unsigned char *data, size_t size, int channels, long max_pixels,
                         unsigned char **pixels, int *width, int *height,
                         char *message, size_t message_size) {
    *pixels = NULL;
    if (channels != 1 && channels != 3) {
        set_message(message, message_size, "channels must be 1 or 3");
        return 1;
    }
    if (size >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0)
        return decode_png(data, size, channels, max_pixels, pixels, width, height, message, message_size);
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return decode_jpeg(data, size, channels, max_pixels, pixels, width, height, message, message_size);
    set_message(message, message_size, "is neither PNG nor JPEG (unrecognised signature)");
    return 1;
}

void distill_image_free(unsigned char *pixels) { free(pixels); }
