#!/bin/busybox sh
# /init of the test VM (see xtask/src/initramfs.rs): mount the kernel filesystems hangwatch
# needs, then hand over to the scenario driver, then power off so qemu exits.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
# Keep kernel messages off the console: results come as HWRESULT lines; dmesg is collected.
echo 1 > /proc/sys/kernel/printk
ulimit -l unlimited
echo "HWBOOT $(uname -r) $(cut -d' ' -f1 /proc/uptime)"
if [ -f /hw/plan.toml ]; then
	/bin/hwdriver vm-main /hw/plan.toml
fi
echo "HWEND $(cut -d' ' -f1 /proc/uptime)"
poweroff -f
