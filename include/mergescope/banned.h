/*
 * banned.h - libc functions that have no place in code reading hostile
 * files. Included (last) by every source file of mergescope; a use of one
 * of these is a compile error. Use snprintf, memcpy with a checked length,
 * ms_sb_* from util.h, strtol/strtod with end checks, localtime_r.
 */
#ifndef MERGESCOPE_BANNED_H
#define MERGESCOPE_BANNED_H

#define MS_BANNED(func) sorry_##func##_is_banned_in_mergescope

#undef strcpy
#define strcpy(x, y) MS_BANNED(strcpy)
#undef strcat
#define strcat(x, y) MS_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) MS_BANNED(strncpy)
#undef strncat
#define strncat(x, y, n) MS_BANNED(strncat)
#undef sprintf
#define sprintf(...) MS_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) MS_BANNED(vsprintf)
#undef gets
#define gets(x) MS_BANNED(gets)
#undef strtok
#define strtok(x, y) MS_BANNED(strtok)
#undef atoi
#define atoi(x) MS_BANNED(atoi)
#undef atol
#define atol(x) MS_BANNED(atol)
#undef atof
#define atof(x) MS_BANNED(atof)
#undef localtime
#define localtime(t) MS_BANNED(localtime)
#undef gmtime
#define gmtime(t) MS_BANNED(gmtime)
#undef asctime
#define asctime(t) MS_BANNED(asctime)
#undef ctime
#define ctime(t) MS_BANNED(ctime)

#endif
