/*
 * numa-probe: the small static helper the NUMA guest runs beside prezero.
 * busybox cannot map a file, read numa_maps for it, speak a Unix socket or
 * take huge pages on one node, so this does those few things and nothing else.
 *
 *   numa-probe map FILE             map FILE shared, fault every page in (read only),
 *                                   print "pages=P N0=a N1=b ..." from /proc/self/numa_maps
 *   numa-probe write FILE BYTE      fill FILE with BYTE through a shared mapping
 *   numa-probe zero FILE            exit 0 if every byte of FILE is zero, else 1
 *   numa-probe send SOCKET JSON     send one request line to prezerod, print the answer
 *   numa-probe hog NODE PAGES SECS  take PAGES anonymous huge pages bound to NODE,
 *                                   one mapping per page, hold them SECS seconds
 *                                   (HOG_BULK=1: one mapping for all, as QEMU's
 *                                   prealloc does: its host-wide reservation shows)
 *
 * Built with `gcc -static` by scripts/numa.sh at test time.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef MPOL_BIND
#define MPOL_BIND 2
#endif

static void die(const char *what, const char *arg) {
    fprintf(stderr, "numa-probe: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
    exit(2);
}

/* Maps a whole hugetlbfs file shared; its huge-page size is the file's st_blksize. */
static unsigned char *map_file(const char *path, int writable, size_t *len, size_t *page) {
    int fd = open(path, writable ? O_RDWR : O_RDONLY);
    if (fd < 0) die("open", path);
    struct stat st;
    if (fstat(fd, &st) < 0) die("fstat", path);
    *len = (size_t)st.st_size;
    *page = (size_t)st.st_blksize;
    if (*len == 0) { fprintf(stderr, "numa-probe: %s is empty\n", path); exit(2); }
    void *p = mmap(NULL, *len, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap", path);
    close(fd);
    return p;
}

/* The numa_maps line of the mapping that starts at p, with its per-node page counts. */
static int cmd_map(const char *path) {
    size_t len, page;
    volatile unsigned char *p = map_file(path, 0, &len, &page);
    unsigned sum = 0;
    for (size_t off = 0; off < len; off += page) sum += p[off];   /* fault each page in */
    (void)sum;
    char want[32];
    snprintf(want, sizeof want, "%lx ", (unsigned long)(uintptr_t)p);
    FILE *f = fopen("/proc/self/numa_maps", "r");
    if (!f) die("open", "/proc/self/numa_maps");
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, want, strlen(want)) != 0) continue;
        printf("pages=%zu", len / page);
        for (char *tok = strtok(line, " \n"); tok; tok = strtok(NULL, " \n"))
            if (tok[0] == 'N' && tok[1] >= '0' && tok[1] <= '9') printf(" %s", tok);
        printf("\n");
        return 0;
    }
    fprintf(stderr, "numa-probe: no numa_maps line for the mapping of %s\n", path);
    return 2;
}

static int cmd_write(const char *path, const char *byte) {
    size_t len, page;
    unsigned char *p = map_file(path, 1, &len, &page);
    memset(p, (int)strtol(byte, NULL, 0), len);
    if (msync(p, len, MS_SYNC) < 0) die("msync", path);
    return 0;
}

static int cmd_zero(const char *path) {
    size_t len, page;
    const unsigned char *p = map_file(path, 0, &len, &page);
    for (size_t i = 0; i < len; i++) {
        if (p[i] != 0) { printf("nonzero byte 0x%02x at offset %zu\n", p[i], i); return 1; }
    }
    return 0;
}

static int cmd_send(const char *sock, const char *json) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0) die("socket", sock);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect", sock);
    size_t n = strlen(json);
    if (write(s, json, n) != (ssize_t)n || write(s, "\n", 1) != 1) die("write", sock);
    shutdown(s, SHUT_WR);
    char buf[65536];
    ssize_t r;
    while ((r = read(s, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)r, stdout);
    return r < 0 ? 2 : 0;
}

/* One mapping of the default huge-page size per page, so the host-wide reservation never exceeds one page. */
static int cmd_hog(const char *node, const char *pages, const char *secs) {
    unsigned long mask = 1UL << atoi(node);
    if (syscall(SYS_set_mempolicy, MPOL_BIND, &mask, sizeof mask * 8) < 0) die("set_mempolicy", node);
    size_t page = 0;
    FILE *mi = fopen("/proc/meminfo", "r");
    char line[256];
    while (mi && fgets(line, sizeof line, mi))
        if (sscanf(line, "Hugepagesize: %zu kB", &page) == 1) page <<= 10;
    if (mi) fclose(mi);
    if (page == 0) { fprintf(stderr, "numa-probe: no Hugepagesize in /proc/meminfo\n"); return 2; }
    long n = atol(pages), got = 0;
    if (getenv("HOG_BULK")) {
        unsigned char *p = mmap(NULL, page * n, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        if (p == MAP_FAILED) die("mmap", "bulk");
        for (; got < n; got++) p[got * page] = 1;
        printf("hog: took %ld of %ld pages on node %s in one mapping\n", got, n, node);
        fflush(stdout);
        sleep((unsigned)atoi(secs));
        return 0;
    }
    for (; got < n; got++) {
        unsigned char *p = mmap(NULL, page, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        if (p == MAP_FAILED) break;
        p[0] = 1;   /* fault it in on the bound node (SIGBUS if the node has none left) */
    }
    printf("hog: took %ld of %ld pages on node %s\n", got, n, node);
    fflush(stdout);
    sleep((unsigned)atoi(secs));
    return got == n ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "map")) return cmd_map(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "write")) return cmd_write(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "zero")) return cmd_zero(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "send")) return cmd_send(argv[2], argv[3]);
    if (argc == 5 && !strcmp(argv[1], "hog")) return cmd_hog(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: numa-probe map FILE | write FILE BYTE | zero FILE | send SOCKET JSON | hog NODE PAGES SECS\n");
    return 64;
}
