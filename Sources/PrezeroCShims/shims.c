#include "prezero_shims.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

int pz_openat(int dirfd, const char *path, int flags, mode_t mode) {
    return openat(dirfd, path, flags, mode);
}
int pz_flag_path(void) { return O_PATH; }
int pz_flag_nofollow(void) { return O_NOFOLLOW; }
int pz_flag_directory(void) { return O_DIRECTORY; }
int pz_flag_cloexec(void) { return O_CLOEXEC; }
int pz_flag_creat_excl(void) { return O_CREAT | O_EXCL; }

int pz_fallocate(int fd, int punch, int64_t offset, int64_t length) {
    int mode = punch ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) : 0;
    return fallocate(fd, mode, (off_t)offset, (off_t)length);
}

int pz_setlease(int fd, int write) {
    return fcntl(fd, F_SETLEASE, write ? F_WRLCK : F_UNLCK);
}

int pz_haswritelease(int fd) {
    int l = fcntl(fd, F_GETLEASE);
    return l < 0 ? -1 : (l == F_WRLCK ? 1 : 0);
}

int pz_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, RENAME_NOREPLACE);
}

int pz_peercred(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int pz_peergroups(int fd, uint32_t *out, int cap) {
    socklen_t len = (socklen_t)(cap * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, out, &len) != 0) {
        // Too small a buffer: the kernel says how much it needs.
        if (errno == ERANGE) return (int)(len / sizeof(gid_t));
        return -1;
    }
    return (int)(len / sizeof(gid_t));
}

int pz_thread_groups(uint32_t *out, int cap) {
    return (int)syscall(SYS_getgroups, cap, out);
}

// setfsuid and setfsgid return the previous id and never fail visibly: the id they
// hold is read back (an invalid id, -1, changes nothing) to see whether it took.
static int fsuid_is(uint32_t uid) { return (uint32_t)setfsuid((uid_t)-1) == uid; }
static int fsgid_is(uint32_t gid) { return (uint32_t)setfsgid((gid_t)-1) == gid; }

int pz_fs_identity_leave(const uint32_t *groups, int n) {
    uid_t uid = geteuid();
    gid_t gid = getegid();
    // fsuid first: back to 0, it brings back the capabilities the other two need.
    setfsuid(uid);
    setfsgid(gid);
    int groupsBack = syscall(SYS_setgroups, n, groups) == 0;
    return fsuid_is(uid) && fsgid_is(gid) && groupsBack ? 0 : -1;
}

int pz_fs_identity_enter(uint32_t uid, uint32_t gid, const uint32_t *groups, int n) {
    int saved_n = (int)syscall(SYS_getgroups, 0, NULL);
    if (saved_n < 0) return -1;
    gid_t saved[saved_n > 0 ? saved_n : 1];
    if (syscall(SYS_getgroups, saved_n, saved) != saved_n) return -1;
    if (syscall(SYS_setgroups, n, groups) != 0) return -1;
    setfsgid(gid);
    setfsuid(uid);
    if (fsgid_is(gid) && fsuid_is(uid)) return 0;
    pz_fs_identity_leave(saved, saved_n);
    errno = EPERM;
    return -1;
}

int pz_thread_become(uint32_t uid, uint32_t gid, const uint32_t *groups, int n) {
    if (syscall(SYS_setgroups, n, groups) != 0) return -1;
    if (syscall(SYS_setresgid, gid, gid, gid) != 0) return -1;
    if (syscall(SYS_setresuid, uid, uid, uid) != 0) return -1;
    return 0;
}

int pz_set_thread_cpus(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    }
    return sched_setaffinity(0, sizeof(set), &set);
}

int pz_thread_cpus(int *out, int cap) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    int n = 0;
    for (int i = 0; i < CPU_SETSIZE && n < cap; i++) {
        if (CPU_ISSET(i, &set)) out[n++] = i;
    }
    return n;
}

int pz_gettid(void) { return (int)syscall(SYS_gettid); }

int pz_set_child_subreaper(int on) { return prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0); }

int pz_is_zero(const void *p, size_t n) {
    static const char zeros[4096];
    const char *c = (const char *)p;
    while (n >= sizeof(zeros)) {
        if (memcmp(c, zeros, sizeof(zeros)) != 0) return 0;
        c += sizeof(zeros);
        n -= sizeof(zeros);
    }
    return memcmp(c, zeros, n) == 0;
}

int pz_accept_nonblocking(int fd) { return accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK); }

int pz_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

int pz_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int pz_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = token;
    return epoll_ctl(epfd, op, fd, &ev);
}

int pz_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event evs[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        tokens[i] = evs[i].data.u64;
        events[i] = evs[i].events;
    }
    return n;
}

int pz_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int pz_fstatfs(int fd, int64_t *magic, uint64_t *bsize) {
    struct statfs s;
    if (fstatfs(fd, &s) != 0) return -1;
    *magic = (int64_t)s.f_type;
    *bsize = (uint64_t)s.f_bsize;
    return 0;
}

void *pz_rwlock_new(void) {
    pthread_rwlock_t *l = malloc(sizeof *l);
    pthread_rwlockattr_t a;
    if (!l) return NULL;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(l, &a);
    pthread_rwlockattr_destroy(&a);
    return l;
}

void pz_rwlock_lock(void *l, int exclusive) {
    if (exclusive) pthread_rwlock_wrlock(l); else pthread_rwlock_rdlock(l);
}

void pz_rwlock_unlock(void *l) { pthread_rwlock_unlock(l); }

void pz_rwlock_free(void *l) {
    pthread_rwlock_destroy(l);
    free(l);
}

void *pz_mutex_new(void) {
    pthread_mutex_t *m = malloc(sizeof *m);
    pthread_mutexattr_t a;
    if (!m) return NULL;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return m;
}

void pz_mutex_lock(void *m) { pthread_mutex_lock(m); }

void pz_mutex_unlock(void *m) { pthread_mutex_unlock(m); }

void pz_mutex_free(void *m) {
    pthread_mutex_destroy(m);
    free(m);
}
