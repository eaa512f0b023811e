// idle-load: the busy host of the release-to-reuse benchmark. N processes, each with
// THREADS threads (itself included) and FDS open descriptors, all idle. A scan of
// /proc/*/task/*/fd would stat every one of them; the kernel's write lease does not care.
//   idle-load N THREADS FDS      prints "ready" once all are up; SIGTERM ends them all.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void *idle(void *arg) {
    (void)arg;
    for (;;) pause();
    return NULL;
}

static void child(int threads, int fds, int ready) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the benchmark, however it ends
    for (int i = 0; i < fds; i++) {
        if (open("/dev/null", O_RDONLY) < 0) _exit(3);
    }
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 << 10);
    for (int i = 1; i < threads; i++) {
        pthread_t t;
        if (pthread_create(&t, &a, idle, NULL) != 0) _exit(4);
    }
    if (write(ready, "x", 1) != 1) _exit(5);
    close(ready);
    for (;;) pause();
}

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: idle-load N THREADS FDS\n");
        return 2;
    }
    int n = atoi(argv[1]), threads = atoi(argv[2]), fds = atoi(argv[3]);
    if (n <= 0 || threads <= 0 || fds < 0) {
        fprintf(stderr, "idle-load: N and THREADS must be positive, FDS not negative\n");
        return 2;
    }
    pid_t *pids = calloc((size_t)n, sizeof(pid_t));
    int p[2];
    if (!pids || pipe(p) != 0) return 1;
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] < 0) {
            fprintf(stderr, "idle-load: fork %d of %d failed\n", i + 1, n);
            stop = 1;
            n = i;
            break;
        }
        if (pids[i] == 0) {
            close(p[0]);
            child(threads, fds, p[1]);
        }
    }
    close(p[1]);
    int up = 0;
    char c;
    while (!stop && up < n && read(p[0], &c, 1) == 1) up++;
    if (!stop) {
        printf("ready: %d processes, %d threads and %d descriptors each\n", up, threads, fds);
        fflush(stdout);
    }
    while (!stop) pause();
    for (int i = 0; i < n; i++) kill(pids[i], SIGKILL);
    while (wait(NULL) > 0 || errno == EINTR) {}
    return 0;
}
