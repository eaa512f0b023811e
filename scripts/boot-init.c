/* /init of the boot-time guest (`prezero bench libvirt --boot`): the first program
 * of guest userspace. It mounts devtmpfs, writes the marker the bench waits for on
 * the first serial port, and idles until the guest is destroyed. */
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void) {
    static const char marker[] = "\nPREZERO-BOOT-USERSPACE\n";
    mkdir("/dev", 0755);
    mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
    int fd = open("/dev/ttyS0", O_WRONLY | O_NOCTTY);
    if (fd >= 0) write(fd, marker, strlen(marker));
    for (;;) pause();
}
