/*
 * The floor: what any reader of "which functions, what are they, which group, which driver"
 * must pay. Single-threaded, no allocation per function, nothing but the reads:
 *
 *   for each entry of sys/bus/pci/devices:
 *     open + read 64 bytes + close   ADDR/config        (vendor, device, class, header)
 *     readlink                       ADDR/iommu_group   (the kernel's grouping)
 *     readlink                       ADDR/driver        (who holds it)
 *
 * and one line out per function, so the reads cannot be skipped by the compiler. Passage's
 * `passagectl list` is measured against this (benches/list-floor.sh, docs/PERFORMANCE.md).
 *
 *   cc -O2 -o floor floor.c && ./floor [ROOT]        ROOT defaults to /
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *base(const char *p, ssize_t n, char *out, size_t cap)
{
	if (n <= 0) {
		snprintf(out, cap, "-");
		return out;
	}
	const char *s = p + n;
	while (s > p && s[-1] != '/')
		s--;
	snprintf(out, cap, "%.*s", (int)(p + n - s), s);
	return out;
}

int main(int argc, char **argv)
{
	const char *root = argc > 1 ? argv[1] : "/";
	int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		perror(root);
		return 1;
	}
	int devfd = openat(rootfd, "sys/bus/pci/devices", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (devfd < 0) {
		perror("sys/bus/pci/devices");
		return 1;
	}
	DIR *d = fdopendir(devfd);
	if (!d) {
		perror("fdopendir");
		return 1;
	}
	static char out[1 << 16];
	setvbuf(stdout, out, _IOFBF, sizeof out);
	struct dirent *e;
	unsigned long n = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[512], link[512], g[64], drv[64];
		unsigned char cfg[64];
		memset(cfg, 0xff, sizeof cfg);
		snprintf(path, sizeof path, "%s/config", e->d_name);
		int fd = openat(devfd, path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (read(fd, cfg, sizeof cfg) < 0)
				memset(cfg, 0xff, sizeof cfg);
			close(fd);
		}
		snprintf(path, sizeof path, "%s/iommu_group", e->d_name);
		ssize_t ln = readlinkat(devfd, path, link, sizeof link);
		base(link, ln, g, sizeof g);
		snprintf(path, sizeof path, "%s/driver", e->d_name);
		ln = readlinkat(devfd, path, link, sizeof link);
		base(link, ln, drv, sizeof drv);
		printf("%s %02x%02x:%02x%02x %02x%02x%02x %02x %s %s\n", e->d_name, cfg[1], cfg[0],
		       cfg[3], cfg[2], cfg[11], cfg[10], cfg[9], cfg[14], g, drv);
		n++;
	}
	closedir(d);
	fprintf(stderr, "%lu functions\n", n);
	return 0;
}
