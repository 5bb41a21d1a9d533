#define _GNU_SOURCE
#include "csystem.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

int workfcgi_limit_malloc_arenas(int arenas) { return mallopt(M_ARENA_MAX, arenas); }

int workfcgi_thread_sched_idle(void) {
    struct sched_param param = {0};
    return pthread_setschedparam(pthread_self(), SCHED_IDLE, &param);
}

void workfcgi_name_thread(const char *name) {
    char shortened[16] = {0};
    strncpy(shortened, name, sizeof shortened - 1);
    pthread_setname_np(pthread_self(), shortened);
}
