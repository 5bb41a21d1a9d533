/* Linux specifics that Swift's Glibc module does not expose (it does not define _GNU_SOURCE). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <pthread.h>
#include <sched.h>

/* glibc's malloc tuning: at most `arenas` arenas instead of eight per core. */
static inline int workfcgi_limit_malloc_arenas(int arenas) { return mallopt(M_ARENA_MAX, arenas); }

/* The calling thread runs only when no normal thread wants the CPU (SCHED_IDLE). */
static inline int workfcgi_thread_sched_idle(void) {
    struct sched_param param = {0};
    return pthread_setschedparam(pthread_self(), SCHED_IDLE, &param);
}

/* Names the calling thread for ps, top and /proc (at most 15 bytes are kept). */
static inline void workfcgi_name_thread(const char *name) {
    char shortened[16] = {0};
    for (int i = 0; i < 15 && name[i]; i++) shortened[i] = name[i];
    pthread_setname_np(pthread_self(), shortened);
}
