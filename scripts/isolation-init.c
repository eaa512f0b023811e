/* /init of the tenant guests of `make isolation` (scripts/isolation.sh): the only
 * program of guest userspace, told by the kernel command line what to do.
 *
 *   prezero.write=HEX  tenant A: the 64-byte marker HEX, written into every 64-byte
 *                      slot of all the memory the guest kernel gives it (MemAvailable
 *                      less a margin, so that the OOM killer never takes init);
 *                      prints "PREZERO-WROTE <MiB> MiB".
 *   prezero.scan=HEX   tenant B: every 64-byte slot of the guest's physical RAM, read
 *                      through /proc/kcore, compared with the marker; prints
 *                      "PREZERO-SCANNED <MiB> MiB <matches> MATCHES".
 *
 * Why /proc/kcore: Debian's kernel is built with STRICT_DEVMEM, so /dev/mem reads
 * nothing past the first MiB, while /proc/kcore (PROC_KCORE, no lockdown without
 * Secure Boot) maps every page of System RAM, free or not, as an ELF segment. The
 * kernel is booted with init_on_alloc=0 init_on_free=0, so it zeroes no page itself
 * and any byte the host hands over stays visible to the scan.
 *
 * The scanner never holds the marker: the command line carries it as hex, it is
 * decoded straight into its complement, and a slot matches when it XORs with the
 * complement to all ones. So its own memory (the command line, its buffers) cannot
 * match, and B's count is what the host handed over and nothing else. */
#define _GNU_SOURCE
#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MARKER = 64, CHUNK = 4 << 20, MARGIN_MIB = 24 };

static int console = -1;

static void say(const char *fmt, unsigned long long a, unsigned long long b) {
    char line[160];
    int n = snprintf(line, sizeof line, fmt, a, b);
    if (console >= 0 && n > 0) write(console, line, (size_t)n);
}

static void idle(void) {
    for (;;) pause();
}

/* HEX (128 digits) into 64 bytes, each XORed with `flip`. */
static int decode(const char *hex, uint8_t out[MARKER], uint8_t flip) {
    for (int i = 0; i < MARKER; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v ^ flip;
    }
    return 0;
}

static unsigned long long mem_available_mib(void) {
    char buf[4096];
    int fd = open("/proc/meminfo", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strstr(buf, "MemAvailable:");
    return p ? strtoull(p + 13, 0, 10) / 1024 : 0;
}

static void write_marker(const uint8_t marker[MARKER]) {
    unsigned long long avail = mem_available_mib(), want = avail > MARGIN_MIB ? avail - MARGIN_MIB : 0, done = 0;
    while (done + CHUNK / (1 << 20) <= want) {
        uint8_t *p = mmap(0, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) break;
        for (size_t off = 0; off < CHUNK; off += MARKER) memcpy(p + off, marker, MARKER);
        done += CHUNK / (1 << 20);
    }
    say("\nPREZERO-WROTE %llu MiB (of %llu available)\n", done, avail);
}

static void scan(const uint8_t flipped[MARKER]) {
    int fd = open("/proc/kcore", O_RDONLY);
    Elf64_Ehdr eh;
    if (fd < 0 || pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG)) {
        say("\nPREZERO-SCAN-FAILED cannot read /proc/kcore (%llu %llu)\n", (unsigned long long)fd, 0);
        return;
    }
    uint64_t want[MARKER / 8];
    memcpy(want, flipped, MARKER);
    static uint8_t buf[CHUNK] __attribute__((aligned(64)));
    unsigned long long bytes = 0, matches = 0;
    for (int i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph) continue;
        /* RAM segments: the direct map, with a physical address. The kernel's text
         * (also in RAM, at 0xffffffff8...) and vmalloc/vmemmap (p_paddr -1) are left. */
        if (ph.p_type != PT_LOAD || ph.p_paddr == (Elf64_Addr)-1 || ph.p_vaddr >= 0xffffffff80000000ULL) continue;
        for (uint64_t off = 0; off < ph.p_filesz; off += CHUNK) {
            size_t len = ph.p_filesz - off < CHUNK ? (size_t)(ph.p_filesz - off) : CHUNK;
            ssize_t got = pread(fd, buf, len, (off_t)(ph.p_offset + off));
            if (got <= 0) break;
            for (ssize_t s = 0; s + MARKER <= got; s += MARKER) {
                const uint64_t *slot = (const uint64_t *)(buf + s);
                int k = 0;
                while (k < MARKER / 8 && (slot[k] ^ want[k]) == ~0ULL) k++;
                if (k == MARKER / 8) matches++;
            }
            bytes += (unsigned long long)got;
        }
    }
    close(fd);
    say("\nPREZERO-SCANNED %llu MiB %llu MATCHES\n", bytes >> 20, matches);
}

int main(void) {
    mkdir("/dev", 0755);
    mkdir("/proc", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
    mount("proc", "/proc", "proc", 0, 0);
    console = open("/dev/ttyS0", O_WRONLY | O_NOCTTY);
    static char cmdline[4096];
    int fd = open("/proc/cmdline", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, cmdline, sizeof cmdline - 1) : -1;
    if (n > 0) cmdline[n] = 0;
    uint8_t given[MARKER];   /* A: the marker; B: its complement */
    char *arg;
    if ((arg = strstr(cmdline, "prezero.write=")) && decode(arg + 14, given, 0) == 0) {
        write_marker(given);
    } else if ((arg = strstr(cmdline, "prezero.scan=")) && decode(arg + 13, given, 0xff) == 0) {
        scan(given);
    } else {
        say("\nPREZERO-NO-TASK %llu %llu\n", 0, 0);
    }
    idle();
}
