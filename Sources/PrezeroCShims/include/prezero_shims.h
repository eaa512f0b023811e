// C shims for calls Swift cannot see (_GNU_SOURCE-only, variadic) and for the
// zero check, which must run at full speed even in a debug build.
#ifndef PREZERO_SHIMS_H
#define PREZERO_SHIMS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/types.h>

#define PZ_MADV_POPULATE_WRITE 23

/// openat(2) with an explicit mode (the libc one is variadic).
int pz_openat(int dirfd, const char *path, int flags, mode_t mode);
/// O_PATH, O_NOFOLLOW, O_DIRECTORY, O_CLOEXEC, O_CREAT, O_EXCL, O_RDWR, O_RDONLY.
int pz_flag_path(void);
int pz_flag_nofollow(void);
int pz_flag_directory(void);
int pz_flag_cloexec(void);
int pz_flag_creat_excl(void);

/// fallocate(2); mode 0 allocates, punch = 1 punches a hole (keeping the size).
int pz_fallocate(int fd, int punch, int64_t offset, int64_t length);
/// fcntl(F_SETLEASE): write = 1 takes a write lease (F_WRLCK), 0 drops it (F_UNLCK).
int pz_setlease(int fd, int write);
/// fcntl(F_GETLEASE): 1 while this descriptor holds a write lease, 0 otherwise, -1 on error.
int pz_haswritelease(int fd);
/// renameat2(2) with RENAME_NOREPLACE: a state change never overwrites a file.
int pz_rename_noreplace(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);

/// SO_PEERCRED of a connected Unix socket.
int pz_peercred(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);
/// SO_PEERGROUPS: the peer's supplementary groups as they were at connect(), at most cap of
/// them written to out. Returns how many it has (more than cap: call again), or -1.
int pz_peergroups(int fd, uint32_t *out, int cap);

/// The calling thread's supplementary groups (the raw system call: this thread only), at
/// most cap written to out; returns how many it has, or -1.
int pz_thread_groups(uint32_t *out, int cap);
/// Takes on, for the calling thread only, the file-system identity of uid and gid with these
/// supplementary groups (raw setgroups, then setfsgid, then setfsuid; glibc's setgroups would
/// change every thread). A non-zero fsuid drops the capabilities that bypass permission
/// checks. Returns 0, or -1 with errno and the thread's identity as it was.
int pz_fs_identity_enter(uint32_t uid, uint32_t gid, const uint32_t *groups, int n);
/// Back to the thread's own file-system identity (its euid and egid) and these groups.
/// Returns 0, or -1 when the kernel did not take it back.
int pz_fs_identity_leave(const uint32_t *groups, int n);
/// The calling thread becomes uid and gid with these groups for good, real, effective and
/// saved ids alike (raw system calls: this thread only). For a thread that then ends.
int pz_thread_become(uint32_t uid, uint32_t gid, const uint32_t *groups, int n);

/// sched_setaffinity(2) of the calling thread to the given CPUs.
int pz_set_thread_cpus(const int *cpus, int count);
/// CPUs the calling thread may run on, written to out (at most cap); returns the count or -1.
int pz_thread_cpus(int *out, int cap);
int pz_gettid(void);
/// prctl(PR_SET_CHILD_SUBREAPER): orphans of this process's descendants are reparented to it.
int pz_set_child_subreaper(int on);

/// Does the range hold only zero bytes?
int pz_is_zero(const void *p, size_t n);

/// accept4(2) with SOCK_CLOEXEC.
/* accept4 with SOCK_NONBLOCK: -1 with EAGAIN when no connection waits. */
int pz_accept_nonblocking(int fd);
/* O_NONBLOCK on an open descriptor. */
int pz_set_nonblocking(int fd);
/* epoll: the packed struct epoll_event stays in C. `token` comes back with the events. */
int pz_epoll_create(void);
int pz_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t token);
int pz_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);
/* An eventfd counter, non-blocking, for waking an epoll loop. */
int pz_eventfd(void);
/// fstatfs(2): filesystem magic and block size (the page size on hugetlbfs).
int pz_fstatfs(int fd, int64_t *magic, uint64_t *bsize);

/// A writer-preferring read-write lock (glibc's default prefers readers, so a steady
/// stream of readers would starve a writer). Returns NULL when out of memory.
void *pz_rwlock_new(void);
void pz_rwlock_lock(void *l, int exclusive);
void pz_rwlock_unlock(void *l);
void pz_rwlock_free(void *l);
/* A plain (non-PI, adaptive) pthread mutex. */
void *pz_mutex_new(void);
void pz_mutex_lock(void *m);
void pz_mutex_unlock(void *m);
void pz_mutex_free(void *m);

#endif
