#define _GNU_SOURCE
#include "csystem.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

int workfcgi_tune_malloc(int arenas) {
    /* Also keep up to 16 MiB of freed memory instead of returning it at once: giving it back with madvise
     * on every burst cost deliveryd's recorder thread a sixth of its time (perf). */
    mallopt(M_TRIM_THRESHOLD, 16 << 20);
    return mallopt(M_ARENA_MAX, arenas);
}

int workfcgi_thread_sched_idle(void) {
    struct sched_param param = {0};
    return pthread_setschedparam(pthread_self(), SCHED_IDLE, &param);
}

void workfcgi_name_thread(const char *name) {
    char shortened[16] = {0};
    strncpy(shortened, name, sizeof shortened - 1);
    pthread_setname_np(pthread_self(), shortened);
}
