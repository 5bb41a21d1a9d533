/* The FastCGI ceiling for scripts/bench: the least a libfcgi responder can do (4 threads, a fixed small
 * JSON answer), served on the same unix socket and through the same nginx config as workfcgi. */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int listen_fd;

static void *serve(void *unused) {
    (void)unused;
    FCGX_Request request;
    FCGX_InitRequest(&request, listen_fd, 0);
    while (FCGX_Accept_r(&request) >= 0) {
        FCGX_FPrintF(request.out, "Status: 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"ok\"}\n");
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: ceiling SOCKET\n"); return 2; }
    FCGX_Init();
    unlink(argv[1]);
    listen_fd = FCGX_OpenSocket(argv[1], 256);
    if (listen_fd < 0) { perror("listen"); return 1; }
    chmod(argv[1], 0666); /* a throwaway socket in the bench's own temporary folder */
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, serve, NULL);
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    return 0;
}
