#ifndef MINILDR_FAKE_TYPES_H
#define MINILDR_FAKE_TYPES_H
typedef unsigned long size_t;
typedef long ssize_t;
typedef long ptrdiff_t;
typedef int wchar_t;
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long uint64_t;
typedef long intptr_t;
typedef unsigned long uintptr_t;
typedef long intmax_t;
typedef unsigned long uintmax_t;
typedef _Bool bool;
typedef struct _minildr_FILE FILE;
typedef void *va_list;
#define NULL ((void *)0)
#define true 1
#define false 0
#endif
