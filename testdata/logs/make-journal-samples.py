#!/usr/bin/env python3
"""Build a real two-boot systemd journal from testdata/dmesg/v710-zed-fault-then-timeout.log and
print it with journalctl in every -o form hangwatch reads (the samples in journal/).

Boot 1: zed (7587) page-faults at 135.79 s, then the machine is rebooted.
Boot 2: gfx_0.0.0 times out at 146.44 s naming Xwayland (6518); reset succeeds.
So `hangwatch analyze` must keep boot 1's faults out of boot 2's incident.

Needs systemd-journal-remote (Debian package systemd-journal-remote) and locales-all for the
Polish sample. Run from the repository root: python3 testdata/logs/make-journal-samples.py
"""
import os, subprocess, struct, tempfile, shutil

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "dmesg", "v710-zed-fault-then-timeout.log")
OUT = os.path.join(HERE, "journal")
HOST = "v710-vm"
MACHINE = "5f3c6a1e9b2d4c8f8e7a6b5c4d3e2f10"
BOOTS = [
    # boot id, wall clock at boot (µs since the epoch): 2026-05-08T17:00:00Z / 19:00 in Warsaw
    ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", 1778259600 * 1000000),
    ("7a8b9c0d1e2f30415263748596a7b8c9", (1778259600 + 3600) * 1000000),
]
LINUX = "Linux version 6.8.0-40-generic (buildd@lcy02-amd64-075) (x86_64-linux-gnu-gcc-13 (Ubuntu 13.2.0-23ubuntu4) 13.2.0, GNU ld (GNU Binutils for Ubuntu) 2.42) #40-Ubuntu SMP PREEMPT_DYNAMIC Fri Jul  5 10:34:03 UTC 2024 (Ubuntu 6.8.0-40.40-generic 6.8.12)"


def fixture():
    out = []
    for l in open(FIX, encoding="utf-8"):
        stamp, msg = l.rstrip("\n").split("] ", 1)
        secs = stamp.strip("[ ")
        s, f = secs.split(".")
        out.append((int(s) * 1000000 + int(f), msg))
    return out


def boot_lines():
    fx = fixture()
    faults = [x for x in fx if x[0] < 140000000]
    timeout = [x for x in fx if x[0] >= 140000000]
    common = [
        (0, 5, LINUX),
        (1444548, 6, "[drm] amdgpu kernel modesetting enabled."),
        (3232900, 6, "amdgpu 0002:00:00.0: amdgpu: SMU is initialized successfully!"),
        (60000000, 6, "usb 1-1: new high-speed USB device number 2 using xhci_hcd"),
    ]
    b1 = common + [(t, 3, m) for t, m in faults]
    b2 = common + [(t, 3, m) for t, m in timeout]
    return [b1, b2]


def field(k, v):
    v = v.encode() if isinstance(v, str) else v
    if b"\n" in v:
        return k.encode() + b"\n" + struct.pack("<Q", len(v)) + v + b"\n"
    return k.encode() + b"=" + v + b"\n"


def export():
    data = b""
    seq = 0
    for (boot_id, wall0), lines in zip(BOOTS, boot_lines()):
        for mono, prio, msg in lines:
            seq += 1
            rx_mono = max(mono, 2500000) + 5  # journald starts at 2.5 s and reads the backlog
            data += field("__CURSOR", f"s=abc;i={seq:x};b={boot_id};m={rx_mono:x}")
            data += field("__REALTIME_TIMESTAMP", str(wall0 + rx_mono))
            data += field("__MONOTONIC_TIMESTAMP", str(rx_mono))
            data += field("_BOOT_ID", boot_id)
            data += field("_SOURCE_MONOTONIC_TIMESTAMP", str(mono))
            data += field("_TRANSPORT", "kernel")
            data += field("PRIORITY", str(prio))
            data += field("SYSLOG_FACILITY", "0")
            data += field("SYSLOG_IDENTIFIER", "kernel")
            data += field("MESSAGE", msg)
            data += field("_MACHINE_ID", MACHINE)
            data += field("_HOSTNAME", HOST)
            data += b"\n"
    return data


def main():
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp()
    jfile = os.path.join(tmp, "v710.journal")
    subprocess.run(["/lib/systemd/systemd-journal-remote", "-o", jfile, "-"], input=export(), check=True)
    env = dict(os.environ, TZ="Europe/Warsaw", LC_ALL="C.UTF-8", SYSTEMD_COLORS="0")
    forms = ["short", "short-precise", "short-iso", "short-iso-precise", "short-full",
             "short-monotonic", "short-unix", "cat", "json", "export"]
    for f in forms:
        out = subprocess.run(["journalctl", "--file", jfile, "-k", "-b", "all", "-o", f, "--no-pager"],
                             env=env, check=True, capture_output=True).stdout
        open(os.path.join(OUT, f"v710-two-boots.{f}"), "wb").write(out)
    pl = dict(env, LC_ALL="pl_PL.UTF-8")
    out = subprocess.run(["journalctl", "--file", jfile, "-k", "-b", "all", "-o", "short", "--no-pager"],
                         env=pl, check=True, capture_output=True).stdout
    open(os.path.join(OUT, "v710-two-boots.short.pl_PL"), "wb").write(out)
    # The journal file itself (8 MiB, mostly preallocated zeros) is kept xz-compressed.
    subprocess.run(["xz", "-9", "-k", "-T1", jfile], check=True)
    shutil.copy(jfile + ".xz", os.path.join(OUT, "v710-two-boots.journal.xz"))
    shutil.rmtree(tmp)


main()
