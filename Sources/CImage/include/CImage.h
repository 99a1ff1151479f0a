#ifndef DISTILL_CIMAGE_H
#define DISTILL_CIMAGE_H

#include <stddef.h>

/* Decodes a PNG or JPEG held in memory into 8-bit pixels, interleaved, with `channels`
   (1: grayscale, 3: RGB) per pixel. Images of more than `max_pixels` pixels are refused
   before any pixel memory is allocated. Returns 0 and sets *pixels (free with
   distill_image_free), *width and *height; or returns non-zero with a message. Nothing is
   printed: libjpeg's and libpng's warnings are swallowed and errors returned. */
int distill_image_decode(const unsigned char *data, size_t size, int channels, long max_pixels,
                         unsigned char **pixels, int *width, int *height,
                         char *message, size_t message_size);

void distill_image_free(unsigned char *pixels);

#endif
