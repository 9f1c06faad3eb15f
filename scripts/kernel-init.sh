#!/bin/busybox sh
# The init of the kernel matrix's initramfs (scripts/kernels.sh builds it): loads the modules
# that reach the host's root, shared read-only over 9p, puts a tmpfs overlay on it (so the
# guest can write, in RAM) and the unpacked kernel's modules at /lib/modules, runs the command
# from the kernel command line in it, prints its status for the host and powers off.
# An arm64 guest's root is a minimal userland instead (scripts/kernels.sh): the checkout comes
# as a second share (hotspotd.checkout=PATH), and busybox provides sh and the small tools.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do
  insmod "/modules/$m" || echo "init: cannot load $m"
done

modules= cmdfile= checkout= share=
for word in $(cat /proc/cmdline); do
  case $word in
  hotspotd.modules=*) modules=${word#hotspotd.modules=} ;;
  hotspotd.checkout=*) checkout=${word#hotspotd.checkout=} ;;
  hotspotd.share=*) share=1 ;;
  hotspotd.cmdfile=*) cmdfile=${word#hotspotd.cmdfile=} ;;
  esac
done

mkdir -p /mnt/lower /mnt/rw /mnt/root
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /mnt/lower \
  || { echo "init: cannot mount the shared root"; echo "hotspotd-guest-status=125"; poweroff -f; }
mount -t tmpfs -o size=75% rw /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /mnt/root \
  || { echo "init: cannot mount the overlay"; echo "hotspotd-guest-status=125"; poweroff -f; }
# The checkout, kept at /mnt/checkout too: the tmpfs on /tmp below would hide one under /tmp.
mkdir -p /mnt/checkout
if [ -n "$share" ]; then
  # A second share (arm64: the root is a minimal userland).
  mkdir -p "/mnt/root$checkout"
  mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose checkout /mnt/checkout \
    || { echo "init: cannot mount the checkout"; echo "hotspotd-guest-status=125"; poweroff -f; }
  mount --bind /mnt/checkout "/mnt/root$checkout"
else
  mount --bind "/mnt/root$checkout" /mnt/checkout
fi
cmd=$(cat "/mnt/root$cmdfile") \
  || { echo "init: cannot read the command $cmdfile"; echo "hotspotd-guest-status=125"; poweroff -f; }
# The host's own modules are for its kernel; this one's come from the unpacked package.
mkdir -p /mnt/root/lib/modules
mount --bind "/mnt/root$modules" /mnt/root/lib/modules
for fs in proc sys dev; do mount --move "/$fs" "/mnt/root/$fs"; done
# The minimal userland: busybox links for the tools it lacks (in the overlay; none replaces a file).
[ -f /mnt/root/.hotspotd-userland ] && chroot /mnt/root /bin/busybox --install -s
mount -t tmpfs tmpfs /mnt/root/run
mount -t tmpfs tmpfs /mnt/root/tmp
case $checkout in /tmp/*) mkdir -p "/mnt/root$checkout" && mount --bind /mnt/checkout "/mnt/root$checkout" ;; esac
mount -t bpf bpf /mnt/root/sys/fs/bpf
mount -t cgroup2 cgroup2 /mnt/root/sys/fs/cgroup 2>/dev/null
mkdir -p /mnt/root/dev/pts /mnt/root/dev/shm
mount -t devpts devpts /mnt/root/dev/pts
mount -t tmpfs tmpfs /mnt/root/dev/shm

printf '%s\n' "$cmd" >/mnt/root/run/hotspotd-guest-cmd
cat >/mnt/root/run/hotspotd-guest <<'STAGE2'
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root
hostname hotspotd-guest
ip link set lo up
echo "guest: Linux $(uname -r), $(nproc) CPUs"
sh -e /run/hotspotd-guest-cmd
echo "hotspotd-guest-status=$?"
sync
# Power off; the shell must not exit meanwhile (init exiting is a panic) nor run a
# program from the root being unmounted.
echo o >/proc/sysrq-trigger
while :; do :; done
STAGE2
chmod +x /mnt/root/run/hotspotd-guest
exec switch_root /mnt/root /run/hotspotd-guest
